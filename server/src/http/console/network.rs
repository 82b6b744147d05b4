//! The network page: peers and their catch-up, every node's capacity, penalised peers.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use frontend::Nav;
use frontend::pages;

use super::dashboard::{epoch_ms, summary_of};
use super::*;

pub(super) async fn network_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    let network = match state.node.network().await {
        Ok(n) => n,
        Err(e) => return problem(&state, Some(&s), &headers, e.into()).await,
    };
    let c = network.counters.sync;
    let sync = format!(
        "Every {} s each peer is asked for what it stored since the last round (a peer that connects is asked at once). Since start: {} transactions pulled, {} rounds, {} ended early, {} transactions skipped; largest lag now {}.",
        network.sync_every.as_secs(),
        c.pulled,
        c.rounds,
        c.failed_rounds,
        c.skipped,
        network.sync_lag,
    );
    let penalised = network
        .penalised
        .iter()
        .map(|(peer, until)| (peer.clone(), epoch_ms(*until)))
        .collect();
    let nodes = network.executors.clone();
    let placement = network.placement.as_ref().map(|p| {
        let c = p.counters;
        format!(
            "Each Run is executed by {} that can fit it, wherever it arrived, and taken over when that node goes. Open Runs: {} placed, {} waiting. Since start this node took {} Runs, took {} over from nodes that went, let {} go to nodes that held them first, stopped {} steps another node proved first; {} Runs no node could fit.",
            if p.redundancy == 1 { "one node".to_string() } else { format!("{} nodes", p.redundancy) },
            p.placed,
            p.waiting,
            c.placed,
            c.taken_over,
            c.released,
            c.duplicates_stopped,
            c.unplaceable,
        )
    });
    let runs = state
        .node
        .placement()
        .map(|v| {
            v.open_runs(50)
                .into_iter()
                .map(|(run, p)| (run.to_hex(), frontend::placement_sentence(&p)))
                .collect()
        })
        .unwrap_or_default();
    let view = pages::NetworkPageView {
        placement,
        runs,
        announce_interval_seconds: network.announce_every.as_secs(),
        summary: summary_of(network),
        sync,
        nodes,
        penalised,
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Network", Nav::Network),
        move || pages::network_page(view),
    )
    .await
}
