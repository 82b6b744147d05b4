//! QEMU confined, as it runs when the node is root (CI runs as root): as `gevulot-vm`, without
//! capabilities, with `no_new_privs`, its seccomp filter and resource limits. A guest may do what
//! it likes to its own copies of its inputs (programs may overwrite them, as under the original
//! node) while the node's stored input stays as it was, and the output it marks setuid is stored
//! and served as a plain file of the node's.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;

use crate::support::*;

/// The QEMU process whose VM name starts with `gevulot-` (there is one VM at a time here).
async fn qemu_process() -> PathBuf {
    let start = Instant::now();
    loop {
        for entry in std::fs::read_dir("/proc")
            .expect("proc")
            .map_while(Result::ok)
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_qemu = args
                .first()
                .is_some_and(|a| a.ends_with(b"qemu-system-x86_64"));
            if is_qemu && args.iter().any(|a| a.starts_with(b"gevulot-")) {
                return entry.path();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no QEMU process appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map_or("", str::trim)
}

#[tokio::test]
async fn qemu_runs_unprivileged_under_limits_and_the_nodes_files_stay_its_own() {
    let Some(lab) = Lab::new().await else { return };
    assert!(
        is_root(),
        "this test shows what a root node does (CI runs as root)"
    );
    let vm_user = app::doctor::Identity::lookup(std::path::Path::new("/"), "gevulot-vm")
        .expect("scripts/test-all creates the user gevulot-vm");
    let hostile_img = lab.program_image("hostile.img", "/bin/test-hostile");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let witness = lab.serve("in.txt", b"the witness".to_vec());
    let node = lab.start(&[("GEVULOT_TASK_MAX_ATTEMPTS", "1")]);
    let user = SecretKey::generate().expect("key");
    let hostile = program("hostile", &hostile_img, 256, 1);
    let verifier = program("verifier", &verifier_img, 256, 1);
    accepted(&node.base, &deploy(&user, "h", hostile.clone(), verifier)).await;
    let r = run(
        &user,
        vec![step(
            &hostile,
            &["tamper", "3000"],
            vec![input("/workspace/in.txt", &witness)],
        )],
    );
    accepted(&node.base, &r).await;

    // QEMU while the program runs, once it has installed its seccomp filter.
    let qemu = qemu_process().await;
    let start = Instant::now();
    let status = loop {
        let status = std::fs::read_to_string(qemu.join("status")).expect("QEMU is running");
        if field(&status, "Seccomp:") == "2" {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no seccomp filter: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let uids: Vec<&str> = field(&status, "Uid:").split_whitespace().collect();
    assert!(
        uids.iter().all(|u| *u == vm_user.uid.to_string()),
        "QEMU runs as gevulot-vm: {uids:?}"
    );
    for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(&status, caps), "0000000000000000", "{caps}\n{status}");
    }
    assert_eq!(field(&status, "NoNewPrivs:"), "1", "{status}");
    assert_eq!(field(&status, "Seccomp:"), "2", "{status}");
    let limits = std::fs::read_to_string(qemu.join("limits")).expect("limits");
    let limit = |name: &str| -> Vec<String> {
        field(&limits, name)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(limit("Max core file size")[..2], ["0", "0"], "{limits}");
    assert_eq!(limit("Max processes")[..2], ["4096", "4096"], "{limits}");
    assert_ne!(limit("Max address space")[0], "unlimited", "{limits}");
    assert_ne!(limit("Max cpu time")[0], "unlimited", "{limits}");

    // What the guest could do to its input and with a setuid output.
    let done = all_end(&node.base, &r.hash, 300).await;
    assert_eq!(phases(&done), ["succeeded"], "{done:?}");
    let tree = get(&format!(
        "{}/api/v1/transactions/{}/tree",
        node.base, r.hash
    ))
    .await;
    let proof_hash = tree["children"][0]["hash"]
        .as_str()
        .expect("a Proof")
        .to_string();
    let proof = get(&format!("{}/api/v1/transactions/{proof_hash}", node.base)).await;
    let payload = &proof["output_form"]["payload"]["Proof"];
    let said =
        String::from_utf8(base64_decode(payload["proof"].as_str().expect("proof"))).expect("text");
    assert_eq!(
        said,
        "write:done truncate:done rename:done chmod:done remove:done setuid:done"
    );
    let files = format!("http://{}", node.files);
    assert_eq!(
        blake3_of(&format!("{files}/txfiles/{}/workspace/in.txt", r.hash)).await,
        witness.checksum,
        "the node's input is as it was stored"
    );
    let out = &payload["files"][0];
    assert_eq!(out["vm_path"], "/workspace/setuid.bin");
    let stored = node
        .data
        .path()
        .join("txfiles")
        .join(&proof_hash)
        .join(out["checksum"].as_str().expect("checksum"))
        .join("setuid.bin");
    let meta = std::fs::metadata(&stored).expect("the stored output");
    assert_eq!(meta.mode() & 0o7777, 0o644, "{}", stored.display());
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}
