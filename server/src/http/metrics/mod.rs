//! Prometheus metrics on `GEVULOT_METRICS_LISTEN_ADDR` (`GET /metrics`).
//!
//! Series (all prefixed `gevulot_`): HTTP requests and latency per server/route/method/status,
//! JSON-RPC calls and latency per method, submitted transactions per kind and outcome, tasks per
//! phase and the queue depth (read from the database at scrape time), and gauges for VMs
//! running, GPUs, CPUs and memory in use and downloads in progress (read from the pipeline at
//! scrape time), connected peers and P2P transaction messages by outcome (read from the network
//! at scrape time), the commits of the intake and of task phase changes, and requests refused at
//! each front door (`limits.rs`); and the standard unprefixed `process_*` series of the node
//! process (`process.rs`).

use std::fmt;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

mod process;
mod tasks;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TxLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AreaLabels {
    area: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuLabels {
    address: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    door: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct P2pLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    state: &'static str,
}

/// The node's metrics. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    transactions: Family<TxLabels, Counter>,
    tasks: Family<PhaseLabels, Gauge>,
    queue_depth: Gauge,
    pub vms_running: Gauge,
    pub gpus_in_use: Gauge,
    pub cpus_in_use: Gauge,
    pub memory_in_use_bytes: Gauge,
    pub downloads_in_progress: Gauge,
    pub peers_connected: Gauge,
    p2p_messages: Family<P2pLabels, Counter>,
    p2p_refused: Family<RefusedLabels, Counter>,
    sync_pulled: Counter,
    sync_rounds: Family<P2pLabels, Counter>,
    sync_lag: Gauge,
    peers_penalised: Counter,
    network_nodes: Family<NetworkLabels, Gauge>,
    file_fetches: Family<P2pLabels, Counter>,
    webhook_deliveries: Family<P2pLabels, Counter>,
    placement: Family<EventLabels, Counter>,
    placement_runs: Family<NetworkLabels, Gauge>,
    intake_commits: Counter,
    intake_committed: Counter,
    intake_unknown: Family<P2pLabels, Counter>,
    phase_commits: Counter,
    phase_changes: Counter,
    refused: Family<DoorLabels, Counter>,
    ready: Gauge,
    draining: Gauge,
    task_metrics: tasks::TaskMetrics,
    gpus: Family<GpuLabels, Gauge>,
    data_size_bytes: Gauge,
    data_free_bytes: Gauge,
    data_min_free_bytes: Gauge,
    data_area_bytes: Family<AreaLabels, Gauge>,
    process: process::ProcessMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gevulot");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        let http_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method (JSON-RPC calls: route \"jsonrpc\", method = the RPC method)",
            http_seconds.clone(),
        );
        let transactions = Family::<TxLabels, Counter>::default();
        registry.register(
            "transactions_submitted",
            "Transactions submitted, by kind and outcome (accepted, duplicate, or the refusal code)",
            transactions.clone(),
        );
        let tasks = Family::<PhaseLabels, Gauge>::default();
        registry.register("tasks", "Tasks by phase", tasks.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let queue_depth = gauge(&mut registry, "queue_depth", "Tasks waiting to run");
        let vms_running = gauge(&mut registry, "vms_running", "Virtual machines running");
        let gpus_in_use = gauge(&mut registry, "gpus_in_use", "GPUs assigned to running VMs");
        let cpus_in_use = gauge(&mut registry, "cpus_in_use", "CPUs assigned to running VMs");
        let memory_in_use_bytes = gauge(
            &mut registry,
            "memory_in_use_bytes",
            "Memory assigned to running VMs, in bytes",
        );
        let downloads_in_progress = gauge(
            &mut registry,
            "downloads_in_progress",
            "File downloads in progress",
        );
        let peers_connected = gauge(&mut registry, "peers_connected", "Connected P2P peers");
        let p2p_messages = Family::<P2pLabels, Counter>::default();
        registry.register(
            "p2p_transactions",
            "P2P transaction messages: published by this node, or from peers accepted, rejected (invalid; not forwarded) or ignored; dropped when they could not be sent; fetched: large transactions announced by hash and fetched from the announcing peer",
            p2p_messages.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let sync_pulled = counter(
            &mut registry,
            "p2p_sync_pulled_transactions",
            "Transactions stored from peers' catch-up pages (what gossip did not bring)",
        );
        let sync_rounds = Family::<P2pLabels, Counter>::default();
        registry.register(
            "p2p_sync_rounds",
            "Catch-up rounds with a peer: ok (reached its newest transaction) or failed (ended early)",
            sync_rounds.clone(),
        );
        let sync_lag = gauge(
            &mut registry,
            "p2p_sync_lag",
            "The largest catch-up lag over the connected peers: how many of a peer's stored transactions may not be here yet",
        );
        let peers_penalised = counter(
            &mut registry,
            "p2p_peers_penalised",
            "Peers disconnected and refused for a while for sending forged transactions or garbage",
        );
        let network_nodes = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "network_nodes",
            "Nodes whose capacity announcements keep coming (this one included): executing (ready to run programs), draining, or relaying (never execute)",
            network_nodes.clone(),
        );
        let file_fetches = Family::<P2pLabels, Counter>::default();
        registry.register(
            "file_fetches",
            "Files the network knows that this node did not hold, fetched from their producer or a peer (fetched), or that no source had (failed)",
            file_fetches.clone(),
        );
        let webhook_deliveries = Family::<P2pLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts: delivered (the receiver answered 2xx), retried (failed, sent again later), gave_up (failed for the last time)",
            webhook_deliveries.clone(),
        );
        let placement = Family::<EventLabels, Counter>::default();
        registry.register(
            "placement",
            "What placement did on this node: Runs it took when first placed (placed), took over from a node that went or drains (taken_over), let go because another node held them first or this node drains (released), steps it stopped because another node proved them first (duplicate_stopped), and Runs no node could fit (unplaceable)",
            placement.clone(),
        );
        let placement_runs = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "placement_runs",
            "Open Runs by placement state: waiting (no node holds them yet) or placed",
            placement_runs.clone(),
        );
        let intake_commits = counter(
            &mut registry,
            "intake_commits",
            "Database commits of the intake's group commit (each stores one batch of submissions)",
        );
        let intake_committed = counter(
            &mut registry,
            "intake_committed_transactions",
            "Transactions in those commits (their ratio is the mean batch size)",
        );
        let intake_unknown = Family::<P2pLabels, Counter>::default();
        registry.register(
            "intake_unknown_outcomes",
            "Transactions whose commit went unanswered (the database connection failed during it), by what the node found once the database answered: stored (then announced), not_stored (the submitter was told to retry), dropped (too many were waiting; stored ones among them are not announced)",
            intake_unknown.clone(),
        );
        let phase_commits = counter(
            &mut registry,
            "task_phase_commits",
            "Database commits of task phase changes (many changes share one under load)",
        );
        let phase_changes = counter(
            &mut registry,
            "task_phase_changes",
            "Task phase changes written in those commits",
        );
        let refused = Family::<DoorLabels, Counter>::default();
        registry.register(
            "requests_refused",
            "Requests refused at a front door for their client address's rate or in-flight limit (429)",
            refused.clone(),
        );
        let p2p_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "p2p_connections_refused",
            "P2P connections refused: the peer's key is not whitelisted (whitelist), or the node holds GEVULOT_P2P_MAX_PEERS (limit)",
            p2p_refused.clone(),
        );
        let ready = gauge(
            &mut registry,
            "ready",
            "1 when the node is ready (what /readyz says: the database answers, the P2P network runs, the disk is above its floor, the node is not draining)",
        );
        let draining = gauge(
            &mut registry,
            "draining",
            "1 while the node drains (an operator's switch, or a stop under way): no new task starts",
        );
        let task_metrics = tasks::TaskMetrics::register(&mut registry);
        let gpus = Family::<GpuLabels, Gauge>::default();
        registry.register(
            "gpu",
            "The host's GPUs, each 1 under its pool state (free, busy, reserved, maintenance, not_ready, not_in_pool)",
            gpus.clone(),
        );
        let data_size_bytes = gauge(
            &mut registry,
            "data_size_bytes",
            "Size of the data directory's filesystem, in bytes",
        );
        let data_free_bytes = gauge(
            &mut registry,
            "data_free_bytes",
            "Free space on the data directory's filesystem, in bytes",
        );
        let data_min_free_bytes = gauge(
            &mut registry,
            "data_min_free_bytes",
            "The floor of free space (GEVULOT_MIN_FREE_MB): below it no download or VM starts and the node is not ready",
        );
        let data_area_bytes = Family::<AreaLabels, Gauge>::default();
        registry.register(
            "data_area_bytes",
            "Bytes each area of the data directory holds (content, images, txfiles, tmp, vms, log, database), walked at most once a minute",
            data_area_bytes.clone(),
        );
        Self {
            registry,
            http_requests,
            http_seconds,
            transactions,
            tasks,
            queue_depth,
            vms_running,
            gpus_in_use,
            cpus_in_use,
            memory_in_use_bytes,
            downloads_in_progress,
            peers_connected,
            p2p_messages,
            p2p_refused,
            sync_pulled,
            sync_rounds,
            sync_lag,
            peers_penalised,
            network_nodes,
            file_fetches,
            placement,
            placement_runs,
            webhook_deliveries,
            intake_commits,
            intake_committed,
            intake_unknown,
            phase_commits,
            phase_changes,
            refused,
            ready,
            draining,
            task_metrics,
            gpus,
            data_size_bytes,
            data_free_bytes,
            data_min_free_bytes,
            data_area_bytes,
            process: process::ProcessMetrics::default(),
        }
    }
}

/// The node reports each submission's outcome here.
impl app::node::SubmitObserver for Metrics {
    fn submitted(&self, kind: &str, outcome: &str) {
        Metrics::submitted(self, kind, outcome);
    }
}

impl Metrics {
    /// Counts a submitted transaction by kind and outcome.
    pub fn submitted(&self, kind: &str, outcome: &str) {
        self.transactions
            .get_or_create(&TxLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records one JSON-RPC call's latency.
    pub fn rpc_call(&self, method: &str, seconds: f64) {
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: "jsonrpc".into(),
                method: method.to_string(),
            })
            .observe(seconds);
    }

    fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(seconds);
    }

    /// Counts task endings and times VMs from the node's events (see `tasks.rs`).
    pub fn follow_tasks(&self, events: tokio::sync::broadcast::Receiver<app::events::Event>) {
        self.task_metrics.follow(events);
    }

    /// The text exposition, after refreshing the gauges read from the node.
    pub async fn render(&self, state: &AppState) -> String {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.ready
            .set(i64::from(super::health::readiness(state).await.0));
        self.draining
            .set(i64::from(state.node.drain_state().draining()));
        match state.node.data_dir().space() {
            Ok(space) => {
                self.data_size_bytes.set(int(space.size_bytes));
                self.data_free_bytes.set(int(space.free_bytes));
                self.data_min_free_bytes
                    .set(int(state.node.resources().min_free_bytes));
            }
            Err(e) => {
                tracing::warn!(target: "gevulot", error = %e, "metrics: cannot read the data filesystem's free space");
            }
        }
        for area in state.node.data_use().await.iter() {
            self.data_area_bytes
                .get_or_create(&AreaLabels { area: area.area })
                .set(int(area.bytes));
        }
        match state.node.gpus().await {
            Ok(gpus) => {
                // A GPU changes state: only its current state is a series.
                self.gpus.clear();
                for g in gpus {
                    self.gpus
                        .get_or_create(&GpuLabels {
                            address: g.address,
                            state: g.state.as_str(),
                        })
                        .set(1);
                }
            }
            Err(e) => {
                tracing::debug!(target: "gevulot", error = %e, "metrics: cannot read the GPU inventory");
            }
        }
        match state.node.task_counts().await {
            Ok(counts) => {
                let mut waiting = 0;
                for phase in app::model::Phase::ALL {
                    let n = counts
                        .iter()
                        .find(|(p, _)| *p == phase)
                        .map_or(0, |(_, n)| *n);
                    self.tasks
                        .get_or_create(&PhaseLabels {
                            phase: phase.as_str().to_string(),
                        })
                        .set(n);
                    if matches!(
                        phase,
                        app::model::Phase::Queued
                            | app::model::Phase::WaitingForProgram
                            | app::model::Phase::WaitingForResources
                    ) {
                        waiting += n;
                    }
                }
                self.queue_depth.set(waiting);
            }
            Err(e) => {
                tracing::warn!(target: "gevulot", error = %e, "metrics: cannot read task counts");
            }
        }
        if let Some(u) = state.node.usage() {
            let r = state.node.resources();
            self.vms_running.set(int(u.running as u64));
            self.cpus_in_use
                .set(int(r.cpus.saturating_sub(u.free_cpus)));
            self.memory_in_use_bytes.set(int(r
                .mem_mib
                .saturating_sub(u.free_mem_mib)
                .saturating_mul(1 << 20)));
            self.gpus_in_use.set(int(u.busy_gpus as u64));
            self.downloads_in_progress.set(int(u.downloads as u64));
        }
        if let Some(p2p) = state.node.p2p() {
            self.peers_connected
                .set(i64::try_from(p2p.peer_count()).unwrap_or(i64::MAX));
            let c = p2p.counters();
            for (outcome, total) in [
                ("published", c.published),
                ("accepted", c.accepted),
                ("rejected", c.rejected),
                ("ignored", c.ignored),
                ("dropped", c.dropped),
                ("fetched", c.fetched),
            ] {
                // The network keeps running totals; the counter follows them.
                let counter = self.p2p_messages.get_or_create(&P2pLabels { outcome });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            for (reason, total) in [
                ("whitelist", c.peers_refused),
                ("limit", c.connections_over_limit),
            ] {
                let counter = self.p2p_refused.get_or_create(&RefusedLabels { reason });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            for (outcome, total) in [("ok", c.sync.rounds), ("failed", c.sync.failed_rounds)] {
                let counter = self.sync_rounds.get_or_create(&P2pLabels { outcome });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            for (counter, total) in [
                (&self.sync_pulled, c.sync.pulled),
                (&self.peers_penalised, c.peers_penalised),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            self.sync_lag.set(p2p.sync_lag());
            let mut nodes = [("executing", 0), ("draining", 0), ("relaying", 0)];
            for e in p2p.executors() {
                if let Some(n) = nodes.iter_mut().find(|(s, _)| *s == e.capacity.state()) {
                    n.1 += 1;
                }
            }
            for (state, n) in nodes {
                self.network_nodes
                    .get_or_create(&NetworkLabels { state })
                    .set(n);
            }
        }
        let (fetched, failed) = state.node.peer_fetches();
        for (outcome, total) in [("fetched", fetched), ("failed", failed)] {
            let counter = self.file_fetches.get_or_create(&P2pLabels { outcome });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        if let Some(view) = state.node.placement() {
            let c = view.counters();
            for (event, total) in [
                ("placed", c.placed),
                ("taken_over", c.taken_over),
                ("released", c.released),
                ("duplicate_stopped", c.duplicates_stopped),
                ("unplaceable", c.unplaceable),
            ] {
                let counter = self.placement.get_or_create(&EventLabels { event });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            let (waiting, placed) = view.open_counts();
            for (state, n) in [("waiting", waiting), ("placed", placed)] {
                self.placement_runs
                    .get_or_create(&NetworkLabels { state })
                    .set(n as i64);
            }
        }
        let hooks = state.node.webhook_counts();
        follow_totals(
            &self.webhook_deliveries,
            [
                ("delivered", hooks.delivered),
                ("retried", hooks.retried),
                ("gave_up", hooks.gave_up),
            ],
        );
        // The intake keeps running totals; the counters follow them.
        let commits = state.node.commit_stats();
        let phases = state.node.phase_commit_stats();
        for (counter, total) in [
            (&self.intake_commits, commits.commits),
            (&self.intake_committed, commits.items),
            (&self.phase_commits, phases.commits),
            (&self.phase_changes, phases.items),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let unknown = state.node.unknown_outcomes();
        follow_totals(
            &self.intake_unknown,
            [
                ("stored", unknown.stored),
                ("not_stored", unknown.not_stored),
                ("dropped", unknown.dropped),
            ],
        );
        for door in [&state.doors.submission, &state.doors.files] {
            let counter = self
                .refused
                .get_or_create(&DoorLabels { door: door.name() });
            counter.inc_by(door.refused().saturating_sub(counter.get()));
        }
        self.process.refresh();
        let mut out = String::new();
        let encoded = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| {
                prometheus_client::encoding::text::encode_registry(&mut out, &self.process.registry)
            })
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        if let Err(e) = encoded {
            tracing::error!(target: "gevulot", error = %e, "metrics encoding failed");
        }
        out
    }
}

/// Moves each counter of `family` (by its outcome) up to the running total kept elsewhere.
fn follow_totals<const N: usize>(
    family: &Family<P2pLabels, Counter>,
    totals: [(&'static str, u64); N],
) {
    for (outcome, total) in totals {
        let counter = family.get_or_create(&P2pLabels { outcome });
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    state.metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state).await;
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

pub fn router(state: AppState) -> axum::Router {
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    super::common_layers(router)
}
