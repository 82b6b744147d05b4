//! `follow <hash>`: a Run's steps and phases live (the node's status subscription over
//! WebSocket) until it ends; a Deploy's images until both are fetched (or known not to be needed
//! on this node). The exit status says how it ended.

use std::collections::HashMap;

use anyhow::Context;
use api::dto::TransactionStatus;
use api::rpc::GevulotClient as _;

use crate::node::Connection;

/// How a followed transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every step succeeded (a Deploy: both images are here).
    Succeeded,
    /// A step (or an image fetch) did not; why.
    Failed(String),
}

const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

/// Whether `s` is over, and how.
pub fn ended(s: &TransactionStatus) -> Option<Ended> {
    if s.kind == "deploy" {
        if let Some(f) = s.files.iter().find(|f| f.state == "failed") {
            return Some(Ended::Failed(format!(
                "{} could not be fetched: {}",
                f.name,
                f.error.as_deref().unwrap_or("no reason given")
            )));
        }
        // An image this node never fetches (it can never run the program) is as done here as
        // one it holds.
        return (!s.files.is_empty()
            && s.files
                .iter()
                .all(|f| f.state == "ready" || f.state == "not_needed"))
        .then_some(Ended::Succeeded);
    }
    if s.tasks.is_empty() || !s.tasks.iter().all(|t| TERMINAL.contains(&t.phase.as_str())) {
        return None;
    }
    Some(match s.tasks.iter().find(|t| t.phase != "succeeded") {
        None => Ended::Succeeded,
        Some(t) => Ended::Failed(format!(
            "step {} {}: {}",
            t.step_index + 1,
            t.phase.replace('_', " "),
            t.error.as_deref().unwrap_or("no reason given")
        )),
    })
}

/// What changed since `seen`, one line each.
fn changes(s: &TransactionStatus, seen: &mut HashMap<String, String>) -> Vec<String> {
    let mut lines = Vec::new();
    for t in &s.tasks {
        let mut line = format!(
            "step {} {:<12} {}",
            t.step_index + 1,
            t.kind,
            t.phase.replace('_', " ")
        );
        if t.attempt > 1 {
            line.push_str(&format!(" (attempt {})", t.attempt));
        }
        if let Some(p) = &t.progress {
            let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
            match p.total_bytes {
                Some(total) => line.push_str(&format!(
                    " {:.1}/{:.1} MiB",
                    mib(p.received_bytes),
                    mib(total)
                )),
                None => line.push_str(&format!(" {:.1} MiB", mib(p.received_bytes))),
            }
        }
        if let Some(e) = t.error.as_deref().filter(|_| t.phase != "succeeded") {
            line.push_str(&format!(": {e}"));
        }
        if seen.insert(format!("task {}", t.id), line.clone()).as_ref() != Some(&line) {
            lines.push(line);
        }
    }
    for f in &s.files {
        let mut line = format!("{} {}", f.name, f.state);
        if let Some(e) = f.error.as_ref().or(f.reason.as_ref()) {
            line.push_str(&format!(": {e}"));
        }
        if seen
            .insert(format!("file {}", f.name), line.clone())
            .as_ref()
            != Some(&line)
        {
            lines.push(line);
        }
    }
    lines
}

/// How often the status is read besides the subscription's pushes (a file fetch's progress is
/// not an event).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Follows `hash` until it ends; prints each change (or, with `json`, each status as a line).
pub async fn follow(
    c: &Connection,
    hash: &str,
    json: bool,
) -> anyhow::Result<(Ended, TransactionStatus)> {
    let client = c.ws_client().await?;
    let mut updates = client
        .subscribe_transaction_status(hash.to_string())
        .await
        .map_err(|e| crate::node::failed(&c.url, e))?;
    let mut seen = HashMap::new();
    loop {
        let status = tokio::select! {
            next = updates.next() => match next {
                Some(Ok(status)) => status,
                Some(Err(e)) => return Err(e).context("the node's status updates could not be read"),
                None => anyhow::bail!(crate::node::Unreachable(format!(
                    "the node at {} closed the status subscription before {hash} ended; follow again",
                    c.url
                ))),
            },
            _ = tokio::time::sleep(POLL) => crate::node::status(c, hash.to_string()).await?,
        };
        let lines = changes(&status, &mut seen);
        if json {
            if !lines.is_empty() {
                println!("{}", serde_json::to_string(&status)?);
            }
        } else {
            for line in lines {
                println!("{line}");
            }
        }
        if let Some(end) = ended(&status) {
            return Ok((end, status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::dto::FileFetchInfo;

    fn deploy(states: &[&str]) -> TransactionStatus {
        TransactionStatus {
            hash: "ab".repeat(32),
            kind: "deploy".into(),
            tasks: Vec::new(),
            files: states
                .iter()
                .enumerate()
                .map(|(i, state)| FileFetchInfo {
                    name: format!("image-{i}.img"),
                    checksum: "cd".repeat(32),
                    state: (*state).into(),
                    progress: None,
                    error: (*state == "failed").then(|| "404 Not Found".into()),
                    reason: (*state == "not_needed")
                        .then(|| "this node can never run the program".into()),
                })
                .collect(),
            placement: None,
        }
    }

    #[test]
    fn a_deploy_ends_when_each_image_is_here_or_not_needed_here() {
        assert_eq!(ended(&deploy(&["ready", "fetching"])), None);
        assert_eq!(ended(&deploy(&["ready", "ready"])), Some(Ended::Succeeded));
        assert_eq!(
            ended(&deploy(&["not_needed", "ready"])),
            Some(Ended::Succeeded)
        );
        assert_eq!(ended(&deploy(&["absent", "not_needed"])), None);
        assert!(matches!(
            ended(&deploy(&["not_needed", "failed"])),
            Some(Ended::Failed(why)) if why.contains("image-1.img") && why.contains("404")
        ));
        // Its line says why it is not fetched.
        let lines = changes(&deploy(&["not_needed"]), &mut HashMap::new());
        assert_eq!(
            lines,
            ["image-0.img not_needed: this node can never run the program"]
        );
    }
}
