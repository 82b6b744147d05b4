//! The network: this node in it, who may join, the connected peers and their catch-up, every
//! node's announced capacity and load, and the peers refused for misbehaving.

use super::*;

#[derive(Clone, Debug)]
pub struct NetworkPageView {
    pub summary: NetworkSummary,
    /// In a sentence: the catch-up's interval and what it did since start.
    pub sync: String,
    pub announce_interval_seconds: u64,
    /// How Runs are placed, in a sentence (absent without a network).
    pub placement: Option<String>,
    /// Open Runs (hex hash) and where each is placed, in a sentence.
    pub runs: Vec<(String, String)>,
    /// Every node heard from, as it last announced itself.
    pub nodes: Vec<app::p2p::Executor>,
    /// Peer ids and when each may connect again (ms since the epoch).
    pub penalised: Vec<(String, i64)>,
}

fn node_row(e: app::p2p::Executor) -> impl IntoView {
    let c = e.capacity;
    let who = e.public_key.unwrap_or_else(|| e.peer_id.clone());
    let gpus = if c.gpus.is_empty() {
        "none".to_string()
    } else {
        format!(
            "{} free of {}: {}",
            c.free_gpus,
            c.gpus.len(),
            c.gpus.join(", ")
        )
    };
    let heard = e
        .announced_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let id = e.peer_id.clone();
    view! {
        <tr data-node=id>
            <td class="hash" title=e.peer_id>{who}{e.local.then_some(" (this node)")}</td>
            <td>{c.state()}</td>
            <td>{format!("{} free of {}", c.free_cpus, c.cpus)}</td>
            <td>{format!("{} free of {} MiB", c.free_mem_mib, c.mem_mib)}</td>
            <td>{gpus}</td>
            <td>{format!("{} running, {} waiting", c.running, c.waiting)}</td>
            <td>{c.holds.iter().filter(|h| h.ended.is_none()).count()}</td>
            <td class="mono">{c.download_url}</td>
            <td>{c.version}</td>
            <td>{time(heard)}</td>
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
                    <th scope="col">"Memory"</th><th scope="col">"GPUs"</th><th scope="col">"Tasks"</th><th scope="col">"Runs held"</th>
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
        {v.placement.map(|p| {
            let runs = v.runs;
            view! {
                <section class="panel" aria-labelledby="placement-h">
                    <h2 id="placement-h">"Placement"</h2>
                    <p id="placement">{p}</p>
                    {(!runs.is_empty()).then(|| view! {
                        <table id="open-runs">
                            <thead><tr><th scope="col">"Open Run"</th><th scope="col">"Placement"</th></tr></thead>
                            <tbody>
                                {runs.into_iter().map(|(run, where_)| view! {
                                    <tr><td>{tx_link(&run)}</td><td>{where_}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                </section>
            }
        })}
        <section class="panel" aria-labelledby="nodes-h">
            <h2 id="nodes-h">"Nodes"</h2>
            <p class="muted">{format!("What every node announced, signed by its node key, every {} s; a node silent for three intervals is left out.", v.announce_interval_seconds)}</p>
            {nodes}
        </section>
        {penalised}
    }
}
