//! The dashboard: the node, its resources, GPUs, queue, recent failures and peers.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use frontend::Nav;
use frontend::pages::{self};

use super::*;

/// Milliseconds since the epoch, as the pages show times.
pub(super) fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The dashboard's peer panel: the network's peers and the whitelist's state.
async fn network_summary(state: &AppState) -> Result<Option<pages::NetworkSummary>, ApiError> {
    match state.node.network().await {
        Ok(n) => Ok(Some(summary_of(n))),
        Err(app::node::NodeError::P2pUnavailable) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The peer panel of `network`.
pub(super) fn summary_of(network: app::node::NetworkView) -> pages::NetworkSummary {
    let acl = match network.acl.policy {
        app::node::AclPolicy::Open => {
            "Open: any node with the pre-shared key may join, and any valid signature may submit."
                .to_string()
        }
        app::node::AclPolicy::Whitelist => format!(
            "Whitelist: only the {} whitelisted keys (and this node) may join and submit.",
            network.acl.whitelisted_keys
        ),
    };
    let acl_sync = network
        .acl
        .url
        .as_ref()
        .map(|url| match &network.acl.last_sync {
            None => format!("Follows {url}; the first sync has not ended yet."),
            Some(app::acl::LastSync { at, outcome: Ok(s) }) => format!(
                "Follows {url}; synced {} UTC: {} added, {} removed{}.",
                frontend::time(epoch_ms(*at)),
                s.added,
                s.removed,
                if s.bad_lines.is_empty() {
                    String::new()
                } else {
                    format!(", lines {:?} skipped (not keys)", s.bad_lines)
                }
            ),
            Some(app::acl::LastSync {
                at,
                outcome: Err(e),
            }) => format!(
                "Follows {url}; the sync at {} UTC failed: {e}",
                frontend::time(epoch_ms(*at))
            ),
        });
    pages::NetworkSummary {
        peer_id: network.peer_id,
        listen_addr: network.listen_addr.to_string(),
        psk_fingerprint: network.psk_fingerprint,
        acl,
        acl_sync,
        peers: network
            .peers
            .into_iter()
            .map(|p| pages::PeerRow {
                peer_id: p.peer_id,
                public_key: p.public_key,
                address: p.address,
                direction: p.direction.as_str().to_string(),
                connected_at_ms: epoch_ms(p.connected_at),
                agent_version: p.agent_version,
                sync: sync_line(&p.sync),
            })
            .collect(),
    }
}

/// The catch-up with a peer in a few words.
fn sync_line(s: &app::p2p::PeerSync) -> String {
    match (&s.error, s.last_round) {
        (_, None) => "pulling".to_string(),
        (Some(e), Some(_)) => format!("last round failed: {e}"),
        (None, Some(at)) if s.lag() == 0 => {
            format!("caught up at {} UTC", frontend::time(epoch_ms(at)))
        }
        (None, Some(_)) => format!("{} behind", s.lag()),
    }
}

async fn dashboard_view(
    state: &AppState,
    session: &Session,
) -> Result<pages::DashboardView, ApiError> {
    let node = &state.node;
    let drain = node.drain_state();
    let mut queue = node.task_counts().await?;
    queue.sort_by_key(|(p, _)| Phase::ALL.iter().position(|x| x == p));
    Ok(pages::DashboardView {
        node: pages::NodeSummary {
            public_key: node.public_key().to_hex(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            database: node.database().to_string(),
            started_at_ms: epoch_ms(node.started_at()),
            transactions: node.count_transactions().await?,
            execution: node.resources().execution,
            file_base_url: node.file_base_url().to_string(),
            disk: node.data_dir().space().ok().map(|space| {
                let floor = node.resources().min_free_bytes;
                pages::DiskSummary {
                    size_bytes: space.size_bytes,
                    free_bytes: space.free_bytes,
                    floor_bytes: floor,
                    under_floor: node.data_dir().under_floor(&space, floor),
                }
            }),
            drain: pages::DrainSummary {
                since_ms: drain.since.map(epoch_ms),
                running: drain.running,
                waiting: drain.waiting,
                csrf: session
                    .user
                    .role
                    .allows(Role::Operator)
                    .then(|| session.csrf.clone()),
            },
        },
        resources: node.usage().map(|u| {
            let r = node.resources();
            pages::ResourceSummary {
                cpus: r.cpus,
                mem_mib: r.mem_mib,
                free_cpus: u.free_cpus,
                free_mem_mib: u.free_mem_mib,
                running: u.running,
                waiting: u.waiting,
            }
        }),
        gpus: node.gpus().await.unwrap_or_default(),
        queue,
        failures: node.recent_failures(10).await?,
        network: network_summary(state).await?,
    })
}

pub(super) async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    let view = match dashboard_view(&state, &s).await {
        Ok(v) => v,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let live = headers.contains_key(FRAGMENT_HEADER);
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Dashboard", Nav::Dashboard),
        move || {
            if live {
                pages::dashboard_live(view).into_any()
            } else {
                pages::dashboard(view).into_any()
            }
        },
    )
    .await
}

/// The drain switch: no new task starts until resumed (an operator's).
pub(super) async fn drain(
    State(state): State<AppState>,
    Posted {
        session: s,
        form: _,
    }: Posted<DrainForm>,
) -> Response {
    crate::http::drain::drain(&state, &s.actor()).await;
    see_other_with(
        "/console",
        Flash::Ok("Draining: no new task starts; running tasks finish. Resume when done.".into()),
    )
}

/// Takes work again (an operator's).
pub(super) async fn resume(
    State(state): State<AppState>,
    Posted {
        session: s,
        form: _,
    }: Posted<DrainForm>,
) -> Response {
    crate::http::drain::resume(&state, &s.actor()).await;
    see_other_with(
        "/console",
        Flash::Ok("Resumed: waiting tasks start as resources allow.".into()),
    )
}

/// The drain and resume buttons' form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct DrainForm {
    pub(super) csrf: String,
}
