//! `gevulot-cli` as a user runs it.

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gevulot-cli"))
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("gevulot-cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_and_checksums() {
    let dir = testkit::tempdir();
    let key = dir.path().join("localkey.pki");
    let (ok, public, err) = run(cli().arg("-k").arg(&key).arg("generate-key"));
    assert!(ok, "{err}");
    assert_eq!(public.len(), 130);
    let (ok, _, err) = run(cli().arg("-k").arg(&key).arg("generate-key"));
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, shown, _) = run(cli().arg("-k").arg(&key).arg("show-public-key"));
    assert!(ok);
    assert_eq!(shown, public);

    // The checksum of the fixture's input file content, as the original computed it.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "input file contents").expect("write");
    let (ok, sum, err) = run(cli().arg("calculate-hash").arg("-f").arg(&input));
    assert!(ok, "{err}");
    assert_eq!(
        sum,
        "01b089f96aa80410b771e873888a4259d461dbf272b59191e6a116e69892d29e"
    );
    let (ok, _, err) = run(cli()
        .arg("calculate-hash")
        .arg("-f")
        .arg(dir.path().join("missing")));
    assert!(!ok && err.contains("cannot read"), "{err}");
}
