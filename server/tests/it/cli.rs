//! `gevulot-cli` against a running node: its node commands go through the client generated from
//! `api::rpc::Gevulot`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{Running, api_token};

/// The `gevulot-cli` binary of this build (a workspace test run builds it beside `gevulot`; a
/// run of this package alone builds it here).
fn cli_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_gevulot")).with_file_name("gevulot-cli");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "-p", "cli", "--bin", "gevulot-cli"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building gevulot-cli failed");
    }
    path
}

/// Runs the CLI with `args` against `url`: (success, stdout, stderr).
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(cli_binary());
    cmd.env_remove("GEVULOT_CLI_TOKEN")
        .env_remove("GEVULOT_CLI_URL")
        .env_remove("GEVULOT_CLI_KEYFILE")
        .arg("-j")
        .arg(url)
        .args(args);
    if let Some(token) = token {
        cmd.env("GEVULOT_CLI_TOKEN", token);
    }
    let out = cmd.output().expect("gevulot-cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn the_node_commands() {
    crate::support::install_tls_provider();
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let c = reqwest::Client::new();
    for name in ["deploy", "run"] {
        let v = testkit::vector(name);
        let r = c
            .post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(v["input_json"].as_str().expect("json").to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201);
    }
    let run = testkit::vector("run")["hash_hex"]
        .as_str()
        .expect("hash")
        .to_string();
    let url = format!("{}/rpc", node.base);
    let url = url.as_str();

    let (ok, out, err) = cli(url, None, &["info", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["transactions"], 2, "{out}");
    let (ok, out, err) = cli(url, None, &["info"]);
    assert!(ok && out.contains("transactions  2"), "{out}{err}");

    crate::support::wait_planned(&node.base, &run).await;
    let (ok, out, err) = cli(url, None, &["status", &run, "--json"]);
    assert!(ok, "{err}");
    let status = json(&out);
    assert_eq!(status["kind"], "run");
    assert_eq!(status["tasks"].as_array().map(Vec::len), Some(2), "{out}");
    let (ok, out, err) = cli(url, None, &["status", &run]);
    assert!(ok && out.starts_with(&format!("run {run}")), "{out}{err}");
    assert!(out.contains("step 1 verification"), "{out}");

    let (ok, out, err) = cli(url, None, &["list", "--kind", "run", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["items"][0]["hash"], run.as_str(), "{out}");
    let (ok, out, err) = cli(url, None, &["list", "--limit", "1"]);
    assert!(ok && out.contains("more: --cursor "), "{out}{err}");

    // The node's own words and code on refusals; a clear message when it cannot be reached.
    let (ok, _, err) = cli(url, None, &["status", "nope"]);
    assert!(!ok && err.contains("(invalid_parameter)"), "{err}");
    let (ok, _, err) = cli(url, None, &["list", "--kind", "nope"]);
    assert!(!ok && err.contains("kind: \"nope\" is not one of"), "{err}");
    let (ok, _, err) = cli(url, None, &["peers"]);
    assert!(!ok && err.contains("(unauthorized)"), "{err}");
    let token = api_token(&c, &node.base, "admin", "admin-password-1").await;
    let (ok, out, err) = cli(url, Some(&token), &["peers", "--json"]);
    assert!(ok, "{err}");
    assert!(json(&out)["peer_id"].is_string(), "{out}");
    assert!(!out.contains(&token) && !err.contains(&token));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!("http://{}/rpc", closed.local_addr().expect("addr"));
    drop(closed);
    let (ok, _, err) = cli(&nowhere, None, &["info"]);
    assert!(!ok && err.contains("cannot reach the node at"), "{err}");
}

/// The original client's flow against a real node with VMs: `deploy` of local images (served by
/// the CLI until the node has them, then it exits), `exec` with a local input in the original
/// task JSON, then `get-tx` and `print-tx-tree` in the original's output forms.
#[tokio::test]
async fn the_original_commands_deploy_exec_get_tx_and_print_tx_tree() {
    use crate::support::{Lab, all_end, phases, rpc};

    let Some(lab) = Lab::new().await else { return };
    lab.program_image("prover.img", "/bin/test-prover");
    lab.program_image("verifier.img", "/bin/test-verifier");
    // One CPU: a Run that sleeps keeps the next one waiting in the queue.
    let node = lab.start(&[("GEVULOT_CPUS", "1")]);
    let dir = testkit::tempdir();
    let key = dir.path().join("client.pki");
    let key = key.to_str().expect("path");
    let (ok, public, err) = cli(&node.base, None, &["-k", key, "generate-key"]);
    assert!(ok, "{err}");
    let public = public.trim().to_string();
    let images = lab.dir.path();
    let (prover_img, verifier_img) = (images.join("prover.img"), images.join("verifier.img"));

    let (ok, out, err) = cli(
        &node.base,
        None,
        &[
            "-k",
            key,
            "deploy",
            "-n",
            "from-the-cli",
            "-p",
            prover_img.to_str().expect("path"),
            "-v",
            verifier_img.to_str().expect("path"),
            "--provername",
            "cli-prover",
            "--provercpus",
            "1",
            "--provermem",
            "256",
            "--verifiercpus",
            "1",
            "--verifiermem",
            "256",
            "-l",
            "127.0.0.1:0",
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        !err.contains("did not download"),
        "the node fetched both images: {err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Start prover / verifier deployment", "{out}");
    assert_eq!(lines[1], "Prover / Verifier deployed correctly.", "{out}");
    let prover = lines[2]
        .strip_prefix("Prover hash:")
        .expect("prover hash")
        .to_string();
    let verifier = lines[3]
        .strip_prefix("Verifier hash:")
        .and_then(|v| v.strip_suffix('.'))
        .expect("verifier hash")
        .to_string();
    let deploy = lines[4]
        .strip_prefix("Tx Hash:")
        .expect("tx hash")
        .to_string();
    // The CLI left after delivering every byte; the node checks and keeps the image.
    let start = std::time::Instant::now();
    let program = loop {
        let program = crate::support::get(&format!("{}/api/v1/programs/{prover}", node.base)).await;
        if program["image"]["state"] == "ready" {
            break program;
        }
        assert!(
            program["image"]["state"] == "fetching"
                && start.elapsed() < std::time::Duration::from_secs(30),
            "the node had the whole image when the CLI left: {program}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(program["name"], "cli-prover", "{program}");
    let deploy = app::tx::Hash::from_hex(&deploy).expect("hash");
    let stored = rpc(&node.base, "getTransaction", serde_json::json!([deploy.0])).await;
    assert_eq!(stored["result"]["Ok"]["author"], public, "{stored}");

    // The queue is busy: a Run holds the node's only CPU for a while.
    let busy = serde_json::json!([
        {"program": prover, "cmd_args": [{"name": "--sleep-ms", "value": "15000"}], "inputs": []}
    ])
    .to_string();
    let (ok, out, err) = cli(&node.base, None, &["-k", key, "exec", "-t", &busy]);
    assert!(ok, "{out}\n{err}");
    let busy = out.trim().rsplit(':').next().expect("hash").to_string();
    let busy = app::tx::Hash::from_hex(&busy).expect("hash");
    crate::support::wait_tasks(
        &node.base,
        &busy,
        std::time::Duration::from_secs(120),
        "the busy Run running",
        |t| t.iter().any(|t| t["phase"] == "running"),
    )
    .await;

    // exec: a local input, an argument pair dropped for being empty, the prover's output.
    let witness = dir.path().join("witness.txt");
    std::fs::write(&witness, b"a witness served by the CLI").expect("witness");
    let tasks = serde_json::json!([
        {"program": prover, "cmd_args": [{"name": "--nonce", "value": "7"}, {"name": "", "value": ""}],
         "inputs": [{"Input": {"local_path": witness, "vm_path": "/workspace/witness.txt"}}]},
        {"program": verifier, "cmd_args": [],
         "inputs": [{"Output": {"source_program": prover, "file_name": "/workspace/proof.dat"}}]}
    ])
    .to_string();
    let (ok, out, err) = cli(
        &node.base,
        None,
        &["-k", key, "exec", "-t", &tasks, "-l", "127.0.0.1:0"],
    );
    assert!(ok, "{out}\n{err}");
    assert!(!err.contains("did not download"), "{err}");
    let run = out
        .trim()
        .strip_prefix("Programs send to execution correctly. Tx hash:")
        .expect("the original's line")
        .to_string();
    let hash = app::tx::Hash::from_hex(&run).expect("hash");
    // The CLI served the input only until the node had it, while this Run still waits.
    let waiting = crate::support::tasks(&node.base, &hash).await;
    assert!(
        waiting
            .iter()
            .all(|t| t["phase"] != "running" && t["phase"] != "succeeded"),
        "the Run waits behind the busy one: {waiting:?}"
    );
    let ended = all_end(&node.base, &hash, 240).await;
    assert_eq!(phases(&ended), ["succeeded", "succeeded"], "{ended:?}");
    let stored = rpc(&node.base, "getTransaction", serde_json::json!([hash.0])).await;
    let step = &stored["result"]["Ok"]["payload"]["Run"]["workflow"]["steps"][0];
    assert_eq!(
        step["args"],
        serde_json::json!(["--nonce", "7"]),
        "{stored}"
    );

    // get-tx prints getTransaction's transaction; print-tx-tree the tree, tab-indented.
    let (ok, out, err) = cli(&node.base, None, &["get-tx", &run]);
    assert!(ok, "{err}");
    assert_eq!(json(&out), stored["result"]["Ok"], "{out}");
    let start = std::time::Instant::now();
    let tree = loop {
        let (ok, out, err) = cli(&node.base, None, &["print-tx-tree", &run]);
        assert!(ok, "{err}");
        if out.lines().count() >= 3 {
            break out;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], format!("Root: {run}"), "{tree}");
    let nodes = lines.iter().filter(|l| l.starts_with("\tNode: ")).count();
    let leaves = lines.iter().filter(|l| l.starts_with("\t\tLeaf: ")).count();
    assert_eq!(
        (lines.len(), nodes, leaves),
        (3, 1, 1),
        "the prover's Proof and the verifier's Verification of it:\n{tree}"
    );

    // Failures say why, on standard error, with a failing exit status.
    let unknown = "ab".repeat(32);
    let (ok, out, err) = cli(&node.base, None, &["get-tx", &unknown]);
    assert!(!ok && out.is_empty() && !err.is_empty(), "{out}\n{err}");
    let (ok, _, err) = cli(
        &node.base,
        None,
        &[
            "-k", key, "deploy", "-n", "x", "-p", &unknown, "-v", &unknown,
        ],
    );
    assert!(!ok && err.contains("--proverimgurl"), "{err}");
    let (ok, _, err) = cli(
        &node.base,
        None,
        &["-k", key, "exec", "-t", "[{\"program\": 1}]"],
    );
    assert!(!ok && err.contains("task JSON"), "{err}");
}

/// Runs the CLI with `args` and environment `env`: (exit status, stdout, stderr). It waits on
/// a blocking thread, so the test's own servers (the lab's files) keep answering meanwhile.
async fn cli_env(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || cli_env_blocking(&env, &args))
        .await
        .expect("the CLI's waiting thread")
}

fn cli_env_blocking(env: &[(String, String)], args: &[String]) -> (i32, String, String) {
    let mut cmd = Command::new(cli_binary());
    for name in [
        "GEVULOT_CLI_TOKEN",
        "GEVULOT_CLI_URL",
        "GEVULOT_CLI_KEYFILE",
    ] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("gevulot-cli runs");
    // A bound on every command, so that a hang fails here with what it said so far.
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(180) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "gevulot-cli {args:?} did not end:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The integrator's commands: `deploy --upload` and `exec --upload` through an operator's
/// token, `follow` until the Run succeeds, `download` with checksums and resume, `--json`,
/// `GEVULOT_CLI_*` settings, and exit statuses that tell a failed Run, a usage error and an
/// unreachable node apart.
#[tokio::test]
async fn the_integrators_commands_upload_follow_download() {
    use crate::support::Lab;

    let Some(lab) = Lab::new().await else { return };
    lab.program_image("prover.img", "/bin/test-prover");
    lab.program_image("verifier.img", "/bin/test-verifier");
    let node = lab.start(&[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let token = api_token(
        &reqwest::Client::new(),
        &node.base,
        "admin",
        "admin-password-1",
    )
    .await;
    let dir = testkit::tempdir();
    let key = dir.path().join("client.pki");
    let env = [
        ("GEVULOT_CLI_URL", node.base.as_str()),
        ("GEVULOT_CLI_KEYFILE", key.to_str().expect("path")),
        ("GEVULOT_CLI_TOKEN", token.as_str()),
    ];
    let (code, out, err) = cli_env(&env, &["--json", "generate-key"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&out)["public_key"].as_str().map(str::len),
        Some(130),
        "{out}"
    );

    // deploy --upload: the images go through the REST upload; nothing is served.
    let images = lab.dir.path();
    let (code, out, err) = cli_env(
        &env,
        &[
            "--json",
            "deploy",
            "--upload",
            "-n",
            "uploaded",
            "-p",
            images.join("prover.img").to_str().expect("path"),
            "-v",
            images.join("verifier.img").to_str().expect("path"),
            "--provermem",
            "256",
            "--provercpus",
            "1",
            "--verifiermem",
            "256",
            "--verifiercpus",
            "1",
            "-l",
            "127.0.0.1:1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let deployed = json(&out);
    let prover = deployed["prover"].as_str().expect("prover").to_string();
    let verifier = deployed["verifier"].as_str().expect("verifier").to_string();
    let (code, out, err) = cli_env(&env, &["get-tx", deployed["tx"].as_str().expect("tx")]).await;
    assert_eq!(code, 0, "{err}");
    let url = json(&out)["payload"]["Deploy"]["prover"]["image_file_url"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(
        url.contains("/txfiles/"),
        "the node's own upload URL: {url}"
    );
    // follow on a Deploy: both images fetched.
    let (code, out, err) = cli_env(&env, &["follow", deployed["tx"].as_str().expect("tx")]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.lines().last().is_some_and(|l| l.ends_with("succeeded")),
        "{out}"
    );

    // exec --upload with a local input; follow until it succeeds.
    let witness = dir.path().join("witness.txt");
    std::fs::write(&witness, b"an uploaded witness").expect("witness");
    let tasks = serde_json::json!([
        {"program": prover, "cmd_args": [{"name": "--nonce", "value": "11"}],
         "inputs": [{"Input": {"local_path": witness, "vm_path": "/workspace/witness.txt"}}]},
        {"program": verifier, "cmd_args": [],
         "inputs": [{"Output": {"source_program": prover, "file_name": "/workspace/proof.dat"}}]}
    ])
    .to_string();
    let (code, out, err) = cli_env(
        &env,
        &[
            "--json",
            "exec",
            "--upload",
            "-t",
            &tasks,
            "-l",
            "127.0.0.1:1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let run = json(&out)["tx"].as_str().expect("tx").to_string();
    let (code, out, err) = cli_env(&env, &["follow", &run]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("step 1 proof"))
            && lines.iter().any(|l| l.starts_with("step 2 verification")),
        "each step's phases: {out}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("run {run} succeeded").as_str()),
        "{out}"
    );

    // download: every output file, checked; again: already here; a partial file is resumed.
    let into = dir.path().join("outputs");
    let into_arg = into.to_str().expect("path");
    let (code, out, err) = cli_env(&env, &["--json", "download", &run, "-o", into_arg]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let files = json(&out);
    let files = files.as_array().expect("files");
    assert!(!files.is_empty(), "the Proof names proof.dat");
    for f in files {
        let path = std::path::Path::new(f["path"].as_str().expect("path"));
        let body = std::fs::read(path).expect("downloaded");
        assert_eq!(
            blake3::hash(&body).to_hex().as_str(),
            f["checksum"].as_str().expect("sum")
        );
        assert!(
            path.starts_with(into.join(f["transaction"].as_str().expect("tx"))),
            "{f}"
        );
    }
    let first = std::path::PathBuf::from(files[0]["path"].as_str().expect("path"));
    let whole = std::fs::read(&first).expect("file");
    let (code, out, _) = cli_env(&env, &["download", &run, "-o", into_arg]).await;
    assert_eq!(code, 0);
    assert!(out.contains("(already here)"), "{out}");
    std::fs::remove_file(&first).expect("remove");
    let mut part = first.clone().into_os_string();
    part.push(".part");
    std::fs::write(&part, &whole[..whole.len() / 2]).expect("partial");
    let (code, out, err) = cli_env(&env, &["download", &run, "-o", into_arg]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        std::fs::read(&first).expect("resumed"),
        whole,
        "resumed to the whole file"
    );

    // Exit statuses: a failed Deploy (a dead URL) is 4 with the reason; usage 2; no node 3.
    let dead = format!("{}/never-served.img", lab.base);
    let dead_too = format!("{}/never-served-either.img", lab.base);
    let (code, out, err) = cli_env(
        &env,
        &[
            "--json",
            "deploy",
            "-n",
            "dead",
            "-p",
            &"ab".repeat(32),
            "--proverimgurl",
            &dead,
            "-v",
            &"cd".repeat(32),
            "--verifierimgurl",
            &dead_too,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let tx = json(&out)["tx"].as_str().expect("tx").to_string();
    let (code, _, err) = cli_env(&env, &["follow", &tx]).await;
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("could not be fetched") && err.contains("404"),
        "{err}"
    );
    let (code, _, _) = cli_env(&env, &["follow"]).await;
    assert_eq!(code, 2, "usage");
    let (code, _, err) = cli_env(&[("GEVULOT_CLI_URL", "http://127.0.0.1:1")], &["info"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the node"), "{err}");
    // --upload without a token says which setting is missing, and sends nothing.
    let (code, _, err) = cli_env(
        &[
            ("GEVULOT_CLI_URL", node.base.as_str()),
            ("GEVULOT_CLI_KEYFILE", key.to_str().expect("path")),
        ],
        &["exec", "--upload", "-t", &tasks],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("GEVULOT_CLI_TOKEN"), "{err}");
}
