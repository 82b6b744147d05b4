//! A test verifier: checks that `/workspace/proof.dat` is a proof the test prover made, and
//! answers `valid` or fails the task.

fn main() {
    let outcome = guest::sdk::run(|task| {
        let path = task
            .files
            .iter()
            .find(|f| f.ends_with("/proof.dat"))
            .cloned()
            .unwrap_or_else(|| "/workspace/proof.dat".to_string());
        let proof = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut parts = proof.splitn(3, ':');
        let valid = parts.next() == Some("proof")
            && parts
                .next()
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Err(format!("{path} is not a proof of the test prover"));
        }
        Ok(guest::sdk::Output {
            data: b"valid".to_vec(),
            files: vec![],
        })
    });
    if let Err(e) = outcome {
        eprintln!("test-verifier: {e}");
        std::process::exit(1);
    }
}
