//! The dashboard: the node, its resources, GPUs, queue, failures and peers.

use super::*;

#[derive(Clone, Debug)]
pub struct NodeSummary {
    pub public_key: String,
    pub version: String,
    pub database: String,
    pub started_at_ms: i64,
    pub transactions: i64,
    pub execution: bool,
    pub file_base_url: String,
    /// The data filesystem; `None` when it cannot be read.
    pub disk: Option<DiskSummary>,
    pub drain: DrainSummary,
}

/// The data directory's filesystem and the node's floor on it.
#[derive(Clone, Debug)]
pub struct DiskSummary {
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// `GEVULOT_MIN_FREE_MB`, in bytes (0: none).
    pub floor_bytes: u64,
    /// Why the node starts nothing new, when it is under the floor.
    pub under_floor: Option<String>,
}

/// Whether the node drains, and the switch for operators.
#[derive(Clone, Debug)]
pub struct DrainSummary {
    /// When draining began; `None` while the node takes work.
    pub since_ms: Option<i64>,
    pub running: usize,
    pub waiting: usize,
    /// The session's CSRF token when the viewer may flip the switch (an operator).
    pub csrf: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ResourceSummary {
    pub cpus: u64,
    pub mem_mib: u64,
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Clone, Debug)]
pub struct DashboardView {
    pub node: NodeSummary,
    /// `None` when the node does not execute programs.
    pub resources: Option<ResourceSummary>,
    pub gpus: Vec<GpuStatus>,
    /// Tasks per phase.
    pub queue: Vec<(Phase, i64)>,
    /// The most recent failed or timed-out tasks.
    pub failures: Vec<Task>,
    /// The peer network; `None` only where the node runs without one.
    pub network: Option<NetworkSummary>,
}

/// This node in the peer network.
#[derive(Clone, Debug)]
pub struct NetworkSummary {
    pub peer_id: String,
    pub listen_addr: String,
    pub psk_fingerprint: String,
    /// Who may join and author, in a sentence.
    pub acl: String,
    /// The latest whitelist sync's outcome in a sentence, when the whitelist follows a URL.
    pub acl_sync: Option<String>,
    pub peers: Vec<PeerRow>,
}

/// A connected peer.
#[derive(Clone, Debug)]
pub struct PeerRow {
    pub peer_id: String,
    /// The peer's node key (hex), when its id names one.
    pub public_key: Option<String>,
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub connected_at_ms: i64,
    pub agent_version: Option<String>,
    /// The catch-up with the peer: "caught up", "N behind", or why the last round failed.
    pub sync: String,
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 30))
}

pub fn dashboard(v: DashboardView) -> impl IntoView {
    let n = v.node.clone();
    view! {
        <h1>"Dashboard"</h1>
        <div class="grid">
            <section class="panel" aria-labelledby="node-h">
                <h2 id="node-h">"This node"</h2>
                <p class="hash" title="public key">{n.public_key}</p>
                <p>"Version " {n.version} " · " {n.database} " · since " {time(n.started_at_ms)} " UTC"</p>
                <p>"Downloads served at " <code>{n.file_base_url}</code></p>
                <p>{if n.execution { "Executes programs." } else { "Relays only (GEVULOT_NODE_NO_EXECUTION)." }}</p>
                {n.disk.map(|d| view! {
                    <p>"Data filesystem: " {gib(d.free_bytes)} " GiB free of " {gib(d.size_bytes)} " GiB (floor " {gib(d.floor_bytes)} " GiB)"</p>
                    {d.under_floor.map(|why| view! { <p class="flash error" role="alert">{why}</p> })}
                })}
                {drain(n.drain)}
            </section>
            {v.network.clone().map(network)}
        </div>
        {dashboard_live(v)}
    }
}

/// Whether the node takes work, with the drain switch for operators.
fn drain(d: DrainSummary) -> impl IntoView {
    let state = match d.since_ms {
        Some(since) => view! {
            <p class="flash error" id="drain-state" role="status">
                "Draining since " {time(since)} " UTC: no new task starts. "
                {d.running} " running, " {d.waiting} " waiting."
            </p>
        }
        .into_any(),
        None => view! { <p id="drain-state">"Takes work."</p> }.into_any(),
    };
    let switch = d.csrf.map(|csrf| {
        if d.since_ms.is_some() {
            view! {
                <form method="post" action="/console/drain/resume" class="inline">
                    {csrf_field(&csrf)}
                    <button type="submit" id="resume">"Resume"</button>
                </form>
            }
            .into_any()
        } else {
            view! {
                <form method="post" action="/console/drain" class="inline">
                    {csrf_field(&csrf)}
                    <button type="submit" class="danger" id="drain" data-confirm="Drain this node? No new task starts until it is resumed; running tasks finish.">"Drain"</button>
                </form>
            }
            .into_any()
        }
    });
    view! { {state} {switch} }
}

/// The dashboard's peer panel: identity in the network, who may join, who is connected.
pub(crate) fn network(n: NetworkSummary) -> impl IntoView {
    let count = n.peers.len();
    let peers = if n.peers.is_empty() {
        empty("No peer connected. Peers join with the same GEVULOT_PSK_PASSPHRASE and this node's address in their GEVULOT_P2P_DISCOVERY_ADDR.").into_any()
    } else {
        view! {
            <table id="peers">
                <thead><tr><th scope="col">"Node key"</th><th scope="col">"Address"</th><th scope="col">"Since"</th><th scope="col">"Software"</th><th scope="col">"Catch-up"</th></tr></thead>
                <tbody>
                    {n.peers.into_iter().map(|p| {
                        let key = p.public_key.unwrap_or_else(|| p.peer_id.clone());
                        let id = p.peer_id.clone();
                        view! {
                            <tr data-peer=id>
                                <td class="hash" title=p.peer_id>{key}</td>
                                <td><span class="mono">{p.address}</span>" " <span class="muted">{p.direction}</span></td>
                                <td>{time(p.connected_at_ms)}</td>
                                <td>{p.agent_version.unwrap_or_default()}</td>
                                <td class="sync">{p.sync}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section class="panel" aria-labelledby="peers-h">
            <h2 id="peers-h">"Peers"</h2>
            <p><span class="stat" id="peer-count">{count}</span>" connected"</p>
            <p>"Listening on " <code>{n.listen_addr}</code> " · key fingerprint " <code title="the pre-shared key's fingerprint: equal on every node of this network">{n.psk_fingerprint}</code></p>
            <p class="hash" title="this node's peer id">{n.peer_id}</p>
            <p id="acl">{n.acl}</p>
            {n.acl_sync.map(|line| view! { <p class="muted" id="acl-sync">{line}</p> })}
            {peers}
        </section>
    }
}

/// The parts of the dashboard that change as tasks run (refreshed in place).
pub fn dashboard_live(v: DashboardView) -> impl IntoView {
    let resources = v.resources.map(|r| {
        view! {
            <section class="panel" aria-labelledby="res-h">
                <h2 id="res-h">"Resources"</h2>
                <p><span class="stat" id="free-cpus">{r.free_cpus}</span>" of " {r.cpus} " CPUs free"</p>
                <p><span class="stat" id="free-mem">{r.free_mem_mib}</span>" of " {r.mem_mib} " MiB free"</p>
                <p><span id="running-tasks">{r.running}</span>" running, "<span id="waiting-tasks">{r.waiting}</span>" waiting for resources"</p>
            </section>
        }
    });
    let queue = if v.queue.is_empty() {
        empty("No tasks yet. Start one from New run.").into_any()
    } else {
        view! {
            <table>
                <thead><tr><th scope="col">"Phase"</th><th scope="col">"Tasks"</th></tr></thead>
                <tbody>
                    {v.queue.into_iter().map(|(p, count)| view! {
                        <tr data-queue=p.as_str()>
                            <td><a href=format!("/console/transactions?phase={}", p.as_str())>{phase_badge(p.as_str())}</a></td>
                            <td>{count}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let gpus = if v.gpus.is_empty() {
        empty("No GPUs on this host (or none visible under GEVULOT_SYSFS_ROOT).").into_any()
    } else {
        view! {
            <ul>
                {v.gpus.into_iter().map(|g| {
                    let model = g.gpu.as_ref().map(|x| x.model()).unwrap_or_else(|| "no GPU at this address".into());
                    let task = match g.state { PoolState::Busy(t) => Some(format!(" (task {t})")), _ => None };
                    view! { <li><span class="mono">{g.address.clone()}</span>" " {model} " " {phase_badge(g.state.as_str())} {task}</li> }
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let failures = if v.failures.is_empty() {
        empty("No failures.").into_any()
    } else {
        view! {
            <table>
                <thead><tr><th scope="col">"When"</th><th scope="col">"Transaction"</th><th scope="col">"Step"</th><th scope="col">"Reason"</th></tr></thead>
                <tbody>
                    {v.failures.into_iter().map(|t| view! {
                        <tr>
                            <td>{time(t.updated_at_ms)}</td>
                            <td>{tx_link(&t.tx.to_hex())}</td>
                            <td>{t.step_index} " " {phase_badge(t.phase.as_str())}</td>
                            <td>{t.error.unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <div id="dashboard-live" data-live="true">
            <div class="grid">
                {resources}
                <section class="panel" aria-labelledby="gpu-h">
                    <h2 id="gpu-h">"GPUs"</h2>
                    {gpus}
                </section>
            </div>
            <section class="panel" aria-labelledby="queue-h">
                <h2 id="queue-h">"Tasks by phase"</h2>
                {queue}
            </section>
            <section class="panel" aria-labelledby="fail-h">
                <h2 id="fail-h">"Recent failures"</h2>
                {failures}
            </section>
        </div>
    }
}
