//! The network: this node in it, who may join, the connected peers and their catch-up, every
//! node's announced capacity and load, and the peers refused for misbehaving.

use super::*;

#[derive(Clone, Debug)]
pub struct NetworkPageView {
    pub summary: NetworkSummary,
    /// In a sentence: the catch-up's interval and what it did since start.
    pub sync: String,
    pub announce_interval_seconds: u64,
    pub nodes: Vec<NodeRow>,
    /// Peer ids and when each may connect again (ms since the epoch).
    pub penalised: Vec<(String, i64)>,
}

/// A node of the network as it last announced itself.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub peer_id: String,
    pub public_key: Option<String>,
    pub local: bool,
    /// `executing`, `draining` or `relaying` (never executes).
    pub state: &'static str,
    pub cpus: u64,
    pub mem_mib: u64,
    pub gpus: Vec<String>,
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub free_gpus: u64,
    pub running: u64,
    pub waiting: u64,
    pub download_url: String,
    pub version: String,
    pub announced_at_ms: i64,
}

fn node_row(n: NodeRow) -> impl IntoView {
    let who = n.public_key.clone().unwrap_or_else(|| n.peer_id.clone());
    let gpus = if n.gpus.is_empty() {
        "none".to_string()
    } else {
        format!(
            "{} free of {}: {}",
            n.free_gpus,
            n.gpus.len(),
            n.gpus.join(", ")
        )
    };
    let id = n.peer_id.clone();
    view! {
        <tr data-node=id>
            <td class="hash" title=n.peer_id>{who}{n.local.then_some(" (this node)")}</td>
            <td>{n.state}</td>
            <td>{format!("{} free of {}", n.free_cpus, n.cpus)}</td>
            <td>{format!("{} free of {} MiB", n.free_mem_mib, n.mem_mib)}</td>
            <td>{gpus}</td>
            <td>{format!("{} running, {} waiting", n.running, n.waiting)}</td>
            <td class="mono">{n.download_url}</td>
            <td>{n.version}</td>
            <td>{time(n.announced_at_ms)}</td>
        </tr>
    }
}

pub fn network_page(v: NetworkPageView) -> impl IntoView {
    let nodes = if v.nodes.is_empty() {
        empty("No announcement heard yet: nodes announce what they offer every few seconds.")
            .into_any()
    } else {
        view! {
            <table id="nodes">
                <thead><tr>
                    <th scope="col">"Node key"</th><th scope="col">"State"</th><th scope="col">"CPUs"</th>
                    <th scope="col">"Memory"</th><th scope="col">"GPUs"</th><th scope="col">"Tasks"</th>
                    <th scope="col">"Downloads from"</th><th scope="col">"Version"</th><th scope="col">"Heard"</th>
                </tr></thead>
                <tbody>{v.nodes.into_iter().map(node_row).collect_view()}</tbody>
            </table>
        }
        .into_any()
    };
    let penalised = (!v.penalised.is_empty()).then(|| {
        view! {
            <section class="panel" aria-labelledby="penalised-h">
                <h2 id="penalised-h">"Penalised peers"</h2>
                <p class="muted">"Refused for sending forged transactions or garbage; each may connect again after the time shown."</p>
                <table id="penalised">
                    <thead><tr><th scope="col">"Peer"</th><th scope="col">"Until"</th></tr></thead>
                    <tbody>
                        {v.penalised.into_iter().map(|(peer, until)| view! {
                            <tr><td class="hash">{peer}</td><td>{time(until)}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        }
    });
    view! {
        <h1>"Network"</h1>
        {super::dashboard::network(v.summary)}
        <section class="panel" aria-labelledby="sync-h">
            <h2 id="sync-h">"Catch-up"</h2>
            <p id="sync">{v.sync}</p>
        </section>
        <section class="panel" aria-labelledby="nodes-h">
            <h2 id="nodes-h">"Nodes"</h2>
            <p class="muted">{format!("What every node announced, signed by its node key, every {} s; a node silent for three intervals is left out.", v.announce_interval_seconds)}</p>
            {nodes}
        </section>
        {penalised}
    }
}
