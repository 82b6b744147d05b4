//! A test prover: reads its input files and writes `/workspace/proof.dat`, a proof derived from
//! them: `proof:<BLAKE3 of the inputs, in order>:<args joined by spaces>`. With the arguments
//! `--sleep-ms N` it works for N milliseconds first (a long-running prover, for cancellation and
//! recovery tests); with `--output-mib N` it also writes `/workspace/big.bin`, N MiB, as a second
//! output (for tests of a disk that fills); with `--proof-mib N` the proof it returns (the
//! Proof transaction's `proof`, sent inline over the guest protocol) is padded to N MiB.

fn main() {
    let outcome = guest::sdk::run(|task| {
        if let Some(ms) = task
            .args
            .windows(2)
            .find(|w| w[0] == "--sleep-ms")
            .and_then(|w| w[1].parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let mut hasher = blake3::Hasher::new();
        for file in &task.files {
            let bytes = std::fs::read(file).map_err(|e| format!("input {file}: {e}"))?;
            hasher.update(&bytes);
        }
        let proof = format!(
            "proof:{}:{}",
            hasher.finalize().to_hex(),
            task.args.join(" ")
        );
        let path = "/workspace/proof.dat";
        std::fs::write(path, &proof).map_err(|e| format!("{path}: {e}"))?;
        let mut files = vec![path.to_string()];
        if let Some(mib) = task
            .args
            .windows(2)
            .find(|w| w[0] == "--output-mib")
            .and_then(|w| w[1].parse::<usize>().ok())
        {
            let big = "/workspace/big.bin";
            let content: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
            std::fs::write(big, content).map_err(|e| format!("{big}: {e}"))?;
            files.push(big.to_string());
        }
        let mut data = proof.into_bytes();
        if let Some(mib) = task
            .args
            .windows(2)
            .find(|w| w[0] == "--proof-mib")
            .and_then(|w| w[1].parse::<usize>().ok())
        {
            data.resize(mib << 20, b'.');
        }
        Ok(guest::sdk::Output { data, files })
    });
    if let Err(e) = outcome {
        eprintln!("test-prover: {e}");
        std::process::exit(1);
    }
}
