//! A hostile test program: it attacks the node from inside its VM in the way its first argument
//! says, so that tests can show the node stays healthy and ends the task with a precise reason.
//!
//! - `symlink`: reports `/workspace/proof.dat`, a symbolic link to `/proc/version` (a host file
//!   when the node follows it), as its output.
//! - `fill MIB`: writes to `/workspace` until it has written MIB MiB or the write fails.
//! - `fork-bomb`: forks children that each allocate and touch memory without end.
//! - `flood`: sends the node's guest service thousands of requests over many connections.
//! - `tamper MS`: overwrites, truncates, renames, re-modes and removes each of its inputs, writes
//!   `/workspace/setuid.bin` with the setuid bit and reports it as its output, with what each
//!   attempt did as its proof (`write:denied …`); it waits MS milliseconds first (so a test can
//!   look at its QEMU process).
//! - `malformed`: sends a result far larger than any message the service accepts, then one that
//!   names another transaction, then bytes that are not the protocol at all.

use guest::proto::{File, TaskResult, TaskResultRequest, task_result_request};

fn main() {
    let mode: Vec<String> = std::env::args().skip(1).collect();
    if mode.first().map(String::as_str) == Some("hog") {
        hog();
    }
    let outcome = guest::sdk::run(|task| {
        let args = if mode.is_empty() {
            task.args.clone()
        } else {
            mode.clone()
        };
        match args.first().map(String::as_str) {
            Some("symlink") => {
                let path = "/workspace/proof.dat";
                let _ = std::fs::remove_file(path);
                std::os::unix::fs::symlink("/proc/version", path).map_err(|e| e.to_string())?;
                Ok(guest::sdk::Output {
                    data: b"proof".to_vec(),
                    files: vec![path.to_string()],
                })
            }
            Some("tamper") => {
                let ms: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(tamper(&task.files))
            }
            Some("fill") => {
                let limit: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
                let mut file =
                    std::fs::File::create("/workspace/fill.bin").map_err(|e| e.to_string())?;
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..limit {
                    let written = std::io::Write::write_all(&mut file, &chunk)
                        .and_then(|()| std::io::Write::flush(&mut file));
                    if written.is_err() {
                        break;
                    }
                }
                // Give the node time to notice before reporting.
                std::thread::sleep(std::time::Duration::from_secs(30));
                Err("wrote the workspace full".into())
            }
            Some("fork-bomb") => {
                for _ in 0..16 {
                    let _ = std::process::Command::new("/proc/self/exe")
                        .arg("hog")
                        .spawn();
                }
                hog()
            }
            Some("flood") => flood(),
            Some("malformed") => malformed(&task.id),
            other => Err(format!("unknown mode {other:?}")),
        }
    });
    if let Err(e) = outcome {
        eprintln!("test-hostile: {e}");
        std::process::exit(1);
    }
}

/// Allocates and touches memory until the kernel stops it.
fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 4 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Runs `work` on a runtime of its own thread (the SDK's callback runs inside the SDK's).
fn on_own_runtime<F>(work: impl FnOnce() -> F + Send + 'static) -> Result<(), String>
where
    F: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(work()))
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the attack thread panicked".to_string())?
}

async fn client() -> Result<guest::proto::Client, String> {
    let channel = tonic::transport::Endpoint::from_static("http://node.invalid")
        .connect_with_connector(tower::service_fn(|_| async {
            let stream = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(
                guest::proto::HOST_CID,
                guest::proto::DEFAULT_PORT,
            ))
            .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await
        .map_err(|e| e.to_string())?;
    Ok(guest::proto::Client::new(channel))
}

/// Thousands of requests over many connections at once.
fn flood() -> Result<guest::sdk::Output, String> {
    on_own_runtime(|| async {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            calls.spawn(async {
                if let Ok(mut c) = client().await {
                    for _ in 0..200 {
                        if c.get_task().await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        while calls.join_next().await.is_some() {}
    })?;
    Err("flooded the node".into())
}

/// An oversized result, a result for another transaction, then garbage bytes.
fn malformed(id: &str) -> Result<guest::sdk::Output, String> {
    let id = id.to_string();
    on_own_runtime(move || async move {
        if let Ok(mut c) = client().await {
            let huge = TaskResultRequest {
                tx_hash: id.clone(),
                result: Some(task_result_request::Result::Task(TaskResult {
                    data: vec![0u8; 64 << 20],
                    files: vec![],
                })),
            };
            let _ = c.submit_result(huge).await;
            let other = TaskResultRequest {
                tx_hash: "00".repeat(32),
                result: Some(task_result_request::Result::Task(TaskResult {
                    data: vec![1],
                    files: vec![File {
                        path: "/etc/shadow".into(),
                        checksum: vec![0; 32],
                    }],
                })),
            };
            let _ = c.submit_result(other).await;
        }
        if let Ok(mut raw) = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(
            guest::proto::HOST_CID,
            guest::proto::DEFAULT_PORT,
        ))
        .await
        {
            use tokio::io::AsyncWriteExt;
            let _ = raw.write_all(&[0xff; 4096]).await;
        }
    })?;
    Err("sent malformed messages".into())
}

/// Attacks the inputs the node staged; the proof says what each attempt did.
fn tamper(inputs: &[String]) -> guest::sdk::Output {
    use std::os::unix::fs::PermissionsExt as _;
    let said = |r: std::io::Result<()>| if r.is_ok() { "done" } else { "denied" };
    let mut report = Vec::new();
    for input in inputs {
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open(input)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"tampered"));
        let truncate = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(input)
            .map(drop);
        let renamed = format!("{input}.moved");
        let rename = std::fs::rename(input, &renamed);
        if rename.is_ok() {
            let _ = std::fs::rename(&renamed, input);
        }
        let chmod = std::fs::set_permissions(input, std::fs::Permissions::from_mode(0o666));
        report.push(format!(
            "write:{} truncate:{} rename:{} chmod:{}",
            said(write),
            said(truncate),
            said(rename.map(drop)),
            said(chmod)
        ));
        report.push(format!("remove:{}", said(std::fs::remove_file(input))));
    }
    let out = "/workspace/setuid.bin";
    let made = std::fs::write(out, b"#!/bin/sh\nid\n")
        .and_then(|()| std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o4755)));
    report.push(format!("setuid:{}", said(made)));
    guest::sdk::Output {
        data: report.join(" ").into_bytes(),
        files: vec![out.to_string()],
    }
}
