//! Catch-up and anti-entropy: a request-response protocol on the swarm through which a node
//! pulls, page by page, the transactions each peer stored after a cursor (the peer's own
//! sequence number, kept per peer in the database), and stores them through the one intake.
//!
//! A round with a peer starts when it connects (so a late joiner and a restarted node catch up
//! at once) and every sync interval after (so a transaction whose gossip was lost, to a full
//! outbox or a dropped connection, still arrives). At most [`MAX_PULLING`] peers are pulled from
//! at once, one page in flight each; at most [`MAX_SERVING`] pages are read for peers at once,
//! and a peer asking for more is told the node is busy.
//!
//! The cursor never skips a transaction: the serving node marks as settled only the leading
//! transactions of a page stored more than [`SETTLE`] ago, so a transaction whose database
//! commit ended after a later one's (PostgreSQL hands out sequence numbers before commit) is
//! still ahead of the cursor. What is unsettled is sent again next round and skipped as known.
//!
//! A peer whose page is not made of transactions, or carries a transaction whose hash or
//! signature is forged, is penalised: disconnected and refused for [`PENALTY`]. A transaction
//! that is well-formed but not acceptable here (an author off this node's whitelist) is only
//! skipped and counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use libp2p::request_response::{self, OutboundFailure, ResponseChannel};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::Network;
use crate::intake::{Intake, MAX_BATCH, SubmitError};
use crate::model::Source;
use crate::store::{Store, StoreError, now_ms};
use crate::tx::{Hash, Transaction};
use crate::validate::ValidationError;

pub(super) const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/gevulot/sync/1.0.0");
/// Transactions per page at most.
pub(super) const PAGE: u32 = 256;
/// A page stops growing past this many bytes of transactions (it always holds at least one).
const PAGE_BYTES: usize = 4 << 20;
/// Transactions stored this recently are sent but not yet settled (see the module docs).
const SETTLE: Duration = Duration::from_secs(5);
/// Peers pulled from at once.
pub(super) const MAX_PULLING: usize = 4;
/// Pages read for peers at once.
pub(super) const MAX_SERVING: usize = 8;
/// How long a penalised peer is refused.
pub(super) const PENALTY: Duration = Duration::from_secs(600);
/// How long a peer has to answer one page.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest page in bytes: [`PAGE_BYTES`] and one more transaction of the largest size
/// accepted, with room for the JSON around them.
pub(super) fn response_max(max_message_bytes: usize) -> u64 {
    let bytes = max_message_bytes
        .saturating_add(PAGE_BYTES)
        .saturating_add(1 << 20);
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum SyncRequest {
    /// The transactions the peer stored after its sequence number `after`.
    After { after: i64, limit: u32 },
    /// These transactions (a large one announced by hash over gossip), at most [`MAX_GET`].
    Get(Vec<Hash>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum SyncResponse {
    Page(Page),
    /// The asked-for transactions the peer holds.
    Transactions(Vec<Transaction>),
    /// The node serves as many requests as it may; ask again later.
    Busy,
}

/// Transactions asked for by hash in one request at most.
pub(super) const MAX_GET: usize = 16;

/// A page of transactions, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Page {
    pub transactions: Vec<Transaction>,
    /// The sequence number of the page's last transaction (`after` when empty): where the next
    /// page starts.
    pub last: i64,
    /// Up to where the page is settled: a cursor that may be stored.
    pub settled: i64,
    /// The serving node's newest sequence number.
    pub head: i64,
    /// Whether more transactions follow.
    pub more: bool,
}

/// What the catch-up has done since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Transactions stored from peers' pages (new here).
    pub pulled: u64,
    /// Rounds that went through to the peer's newest transaction.
    pub rounds: u64,
    /// Rounds that ended early (the peer was busy, gone, or answered wrongly, or storing failed).
    pub failed_rounds: u64,
    /// Transactions in peers' pages that this node does not accept (skipped, not stored).
    pub skipped: u64,
}

/// The catch-up with one peer, as the APIs show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSync {
    /// The peer's sequence number up to which this node holds everything.
    pub cursor: i64,
    /// The peer's newest sequence number when it last answered.
    pub head: i64,
    /// Transactions stored from this peer's pages, in total.
    pub pulled: i64,
    /// When the last round with the peer ended.
    pub last_round: Option<SystemTime>,
    /// Why the last round ended early.
    pub error: Option<String>,
}

impl PeerSync {
    /// How many of the peer's sequence numbers are not yet pulled (an upper bound on the
    /// transactions this node may miss from it).
    pub fn lag(&self) -> i64 {
        (self.head - self.cursor).max(0)
    }
}

/// A round in progress with one peer.
#[derive(Debug)]
pub(super) struct Round {
    /// Where the next page starts.
    position: i64,
    /// The cursor to store: stops moving at the first unsettled page.
    cursor: i64,
    settled: bool,
    /// Whether the round already started over because the peer's sequence was behind the
    /// stored cursor (its database was replaced).
    restarted: bool,
}

/// What a spawned step of a round reports back to the event loop.
#[derive(Debug)]
pub(super) enum Step {
    /// The stored cursor was read.
    Cursor(Result<i64, StoreError>),
    /// A page was stored (or why not).
    Stored {
        page: Page,
        outcome: Result<Stored, PageError>,
    },
}

#[derive(Debug, Default)]
pub(super) struct Stored {
    new: u64,
    skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    #[error("the peer sent a forged transaction {tx}: {reason}")]
    Forged { tx: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The catch-up's state in the event loop.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// Peers waiting for a round (no duplicates).
    due: VecDeque<PeerId>,
    queued: HashSet<PeerId>,
    rounds: HashMap<PeerId, Round>,
    /// Rounds' spawned steps.
    pub(super) steps: JoinSet<(PeerId, Step)>,
    /// Pages being read for peers.
    pub(super) serving: JoinSet<(ResponseChannel<SyncResponse>, SyncResponse)>,
}

/// Reads the page after `after` for a peer.
async fn read_page(store: Store, after: i64, limit: u32) -> SyncResponse {
    let limit = limit.clamp(1, PAGE);
    let (rows, head) = match tokio::try_join!(
        store.transactions_after(after, limit),
        store.head_seq()
    ) {
        Ok(read) => read,
        Err(e) => {
            warn!(target: "gevulot::p2p", error = %e, "cannot read transactions for a peer's catch-up");
            return SyncResponse::Busy;
        }
    };
    let full = rows.len() == limit as usize;
    let read = rows.len();
    let mut bytes = 0;
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        if bytes >= PAGE_BYTES {
            break;
        }
        bytes += row.tx.to_json().len();
        kept.push(row);
    }
    // Cut short by its size: the rest follows in the next page.
    let cut = kept.len() < read;
    let marks: Vec<(i64, i64)> = kept.iter().map(|r| (r.seq, r.received_at_ms)).collect();
    let (last, settled) = settle(after, &marks, now_ms());
    SyncResponse::Page(Page {
        transactions: kept.into_iter().map(|r| r.tx).collect(),
        last,
        settled,
        head,
        more: full || cut,
    })
}

/// Where a page of rows `(seq, received_at_ms)`, oldest first, read after `after` at `now_ms`,
/// ends, and up to where it is settled: the leading rows stored more than [`SETTLE`] ago. A
/// younger row, and every row after it, may still be passed by a row with a lower sequence
/// number whose commit ends later.
fn settle(after: i64, rows: &[(i64, i64)], now_ms: i64) -> (i64, i64) {
    let before = now_ms - i64::try_from(SETTLE.as_millis()).unwrap_or(i64::MAX);
    let last = rows.last().map_or(after, |r| r.0);
    let settled = rows
        .iter()
        .take_while(|r| r.1 <= before)
        .last()
        .map_or(after, |r| r.0);
    (last, settled)
}

/// Whether a validation error means the sender forged the transaction (rather than this node
/// not accepting a genuine one).
pub(super) fn forged(e: &ValidationError) -> bool {
    matches!(
        e,
        ValidationError::HashMismatch { .. } | ValidationError::Signature(_)
    )
}

/// Stores a peer's page through the intake: what is already here is skipped without a second
/// look, the rest is validated and stored in batches.
async fn store_page(intake: Intake, transactions: &[Transaction]) -> Result<Stored, PageError> {
    let hashes: Vec<_> = transactions.iter().map(|t| t.hash).collect();
    let known = intake.store().known_transactions(&hashes).await?;
    let mut stored = Stored::default();
    let mut valid = Vec::new();
    for tx in transactions.iter().filter(|t| !known.contains(&t.hash)) {
        match intake.check(tx, Source::P2p).await {
            Ok(()) => valid.push(tx.clone()),
            Err(SubmitError::Invalid(e)) if forged(&e) => {
                return Err(PageError::Forged {
                    tx: tx.hash.to_hex(),
                    reason: e.to_string(),
                });
            }
            Err(SubmitError::Invalid(e)) => {
                debug!(target: "gevulot::p2p", tx = %tx.hash, reason = %e, "skipped a peer's transaction this node does not accept");
                stored.skipped += 1;
            }
            Err(SubmitError::Store(e)) => return Err(e.into()),
        }
    }
    for chunk in valid.chunks(MAX_BATCH) {
        match intake.submit_batch(chunk, Source::P2p).await {
            Ok(done) => stored.new += done.iter().filter(|s| s.new).count() as u64,
            Err(SubmitError::Store(e)) => return Err(e.into()),
            // Checked just above; only a change meanwhile (the whitelist) gets here: one by one.
            Err(SubmitError::Invalid(_)) => {
                for tx in chunk {
                    match intake.submit(tx, Source::P2p).await {
                        Ok(s) => stored.new += u64::from(s.new),
                        Err(SubmitError::Store(e)) => return Err(e.into()),
                        Err(SubmitError::Invalid(_)) => stored.skipped += 1,
                    }
                }
            }
        }
    }
    Ok(stored)
}

impl Network {
    /// Queues a round with `peer` unless one runs or waits already, and starts what may start.
    pub(super) fn sync_with(&mut self, peer: PeerId) {
        if !self.sync.rounds.contains_key(&peer) && self.sync.queued.insert(peer) {
            self.sync.due.push_back(peer);
        }
        self.start_rounds();
    }

    /// Queues a round with every connected peer (the periodic anti-entropy).
    pub(super) fn sync_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.sync_with(peer);
        }
    }

    fn start_rounds(&mut self) {
        while self.sync.rounds.len() < MAX_PULLING {
            let Some(peer) = self.sync.due.pop_front() else {
                return;
            };
            self.sync.queued.remove(&peer);
            if !self.swarm.is_connected(&peer) {
                continue;
            }
            self.sync.rounds.insert(
                peer,
                Round {
                    position: 0,
                    cursor: 0,
                    settled: true,
                    restarted: false,
                },
            );
            let store = self.intake.store().clone();
            self.sync.steps.spawn(async move {
                let cursor = store
                    .peer_cursor(&peer.to_string())
                    .await
                    .map(|c| c.map_or(0, |c| c.cursor));
                (peer, Step::Cursor(cursor))
            });
        }
    }

    fn request_page(&mut self, peer: PeerId, after: i64) {
        self.swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, SyncRequest::After { after, limit: PAGE });
    }

    /// Ends the round with `peer`: records how it went and starts the next waiting one.
    fn end_round(&mut self, peer: PeerId, error: Option<String>) {
        if self.sync.rounds.remove(&peer).is_none() {
            return;
        }
        self.count(|c| match error {
            None => c.sync.rounds += 1,
            Some(_) => c.sync.failed_rounds += 1,
        });
        if let Some(e) = &error {
            debug!(target: "gevulot::p2p", %peer, error = %e, "a catch-up round ended early; the next one starts within the sync interval");
        }
        self.update_peer(&peer, |s| {
            s.last_round = Some(SystemTime::now());
            s.error = error;
        });
        self.start_rounds();
    }

    fn update_peer(&self, peer: &PeerId, change: impl FnOnce(&mut PeerSync)) {
        if let Ok(mut peers) = self.shared.peers.write()
            && let Some(p) = peers.get_mut(peer)
        {
            change(&mut p.sync);
        }
    }

    /// A step of a round came back from its task.
    pub(super) fn on_step(&mut self, peer: PeerId, step: Step) {
        if !self.sync.rounds.contains_key(&peer) {
            return;
        }
        match step {
            Step::Cursor(Ok(cursor)) => {
                if let Some(round) = self.sync.rounds.get_mut(&peer) {
                    round.position = cursor;
                    round.cursor = cursor;
                }
                self.update_peer(&peer, |s| s.cursor = cursor);
                self.request_page(peer, cursor);
            }
            Step::Cursor(Err(e)) => self.end_round(peer, Some(e.to_string())),
            Step::Stored { page, outcome } => match outcome {
                Ok(stored) => {
                    self.count(|c| {
                        c.sync.pulled += stored.new;
                        c.sync.skipped += stored.skipped;
                    });
                    let Some(round) = self.sync.rounds.get_mut(&peer) else {
                        return;
                    };
                    round.position = page.last;
                    let cursor = round.cursor;
                    self.update_peer(&peer, |s| {
                        s.cursor = cursor;
                        s.head = page.head;
                        s.pulled += i64::try_from(stored.new).unwrap_or(i64::MAX);
                    });
                    if page.more {
                        self.request_page(peer, page.last);
                    } else {
                        self.end_round(peer, None);
                    }
                }
                Err(PageError::Forged { tx, reason }) => {
                    self.penalise(peer, &format!("sent a forged transaction {tx} ({reason})"));
                    self.end_round(peer, Some(format!("forged transaction {tx}")));
                }
                Err(PageError::Store(e)) => {
                    warn!(target: "gevulot::p2p", %peer, error = %e, "cannot store a peer's transactions; the catch-up tries again within the sync interval");
                    self.end_round(peer, Some(e.to_string()));
                }
            },
        }
    }

    /// A page arrived: stores it off the event loop, together with the cursor it settles.
    fn on_page(&mut self, peer: PeerId, page: Page) {
        let Some(round) = self.sync.rounds.get_mut(&peer) else {
            return;
        };
        if page.head < round.position && !round.restarted {
            // The peer holds fewer than this node has pulled from it: its database was
            // replaced. Everything it holds is pulled again (what is known here is skipped).
            info!(target: "gevulot::p2p", %peer, cursor = round.position, head = page.head, "a peer's transactions start over (its database was replaced); pulling them from the start");
            round.restarted = true;
            round.position = 0;
            round.cursor = 0;
            return self.request_page(peer, 0);
        }
        if round.settled {
            round.cursor = page.settled.max(round.cursor);
            round.settled = page.settled == page.last;
        }
        let cursor = round.cursor;
        let intake = self.intake.clone();
        self.sync.steps.spawn(async move {
            let mut outcome = store_page(intake.clone(), &page.transactions).await;
            if let Ok(stored) = &outcome {
                let saved = intake
                    .store()
                    .advance_peer_cursor(
                        &peer.to_string(),
                        cursor,
                        page.head,
                        i64::try_from(stored.new).unwrap_or(i64::MAX),
                    )
                    .await;
                if let Err(e) = saved {
                    outcome = Err(e.into());
                }
            }
            (peer, Step::Stored { page, outcome })
        });
    }

    /// Disconnects `peer` and refuses it for [`PENALTY`].
    pub(super) fn penalise(&mut self, peer: PeerId, why: &str) {
        warn!(target: "gevulot::p2p", %peer, reason = why, penalty_s = PENALTY.as_secs(), "penalised a peer: disconnected and refused for a while");
        self.count(|c| c.peers_penalised += 1);
        if let Ok(mut penalised) = self.shared.penalised.write() {
            penalised.insert(peer, SystemTime::now() + PENALTY);
        }
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    /// Lets penalised peers whose penalty ended connect again.
    pub(super) fn forgive(&mut self) {
        let now = SystemTime::now();
        let mut ended = Vec::new();
        if let Ok(mut penalised) = self.shared.penalised.write() {
            penalised.retain(|peer, until| {
                let keep = *until > now;
                if !keep {
                    ended.push(*peer);
                }
                keep
            });
        }
        for peer in ended {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }

    /// A page was read for a peer: sends it (a peer gone meanwhile gets nothing).
    pub(super) fn respond(&mut self, channel: ResponseChannel<SyncResponse>, page: SyncResponse) {
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, page);
    }

    pub(super) fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if self.sync.serving.len() >= MAX_SERVING {
                    debug!(target: "gevulot::p2p", %peer, "a peer waits: serving as many requests as allowed");
                    return self.respond(channel, SyncResponse::Busy);
                }
                let store = self.intake.store().clone();
                self.sync.serving.spawn(async move {
                    let answer = match request {
                        SyncRequest::After { after, limit } => read_page(store, after, limit).await,
                        SyncRequest::Get(hashes) => read_transactions(store, &hashes).await,
                    };
                    (channel, answer)
                });
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(fetch) = self.fetches.remove(&request_id) {
                    return self.fetched(fetch, response);
                }
                match response {
                    SyncResponse::Page(page) => self.on_page(peer, page),
                    SyncResponse::Busy => self.end_round(peer, Some("the peer was busy".into())),
                    SyncResponse::Transactions(_) => {
                        self.penalise(peer, "answered a page request with something else");
                        self.end_round(peer, Some("not a page".into()));
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.penalise(peer, &format!("answered a request with garbage ({e})"));
                }
                if let Some(fetch) = self.fetches.remove(&request_id) {
                    return self.fetch_failed(fetch, &error.to_string());
                }
                if matches!(error, OutboundFailure::UnsupportedProtocols) {
                    debug!(target: "gevulot::p2p", %peer, "a peer without the catch-up protocol");
                }
                self.end_round(peer, Some(error.to_string()));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(target: "gevulot::p2p", %peer, error = %error, "a peer's request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// Reads the transactions among `hashes` that this node holds, for a peer.
async fn read_transactions(store: Store, hashes: &[Hash]) -> SyncResponse {
    let mut found = Vec::new();
    let mut bytes = 0;
    for hash in hashes.iter().take(MAX_GET) {
        if bytes >= PAGE_BYTES {
            break;
        }
        match store.get_transaction(hash).await {
            Ok(Some(stored)) => {
                bytes += stored.tx.to_json().len();
                found.push(stored.tx);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(target: "gevulot::p2p", error = %e, "cannot read a transaction a peer asked for");
                return SyncResponse::Busy;
            }
        }
    }
    SyncResponse::Transactions(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leading_old_rows_settle() {
        let now = 1_000_000;
        let old = now - 6_000;
        let young = now - 1_000;
        // Empty: nothing moves.
        assert_eq!(settle(7, &[], now), (7, 7));
        // All old: settled to the end.
        assert_eq!(settle(0, &[(1, old), (2, old), (4, old)], now), (4, 4));
        // A young row stops the settled part, even when older rows follow it.
        assert_eq!(settle(0, &[(1, old), (2, young), (3, old)], now), (3, 1));
        // A young first row: nothing settles.
        assert_eq!(settle(5, &[(6, young), (7, old)], now), (7, 5));
    }

    proptest::proptest! {
        /// Whatever the rows' ages, the settled cursor never passes a young row, and never goes
        /// back before `after` or past the page's end.
        #[test]
        fn the_settled_cursor_never_passes_a_young_row(
            after in 0i64..1000,
            ages in proptest::collection::vec(0i64..10_000, 0..40),
        ) {
            let now = 1_000_000;
            let rows: Vec<(i64, i64)> = ages
                .iter()
                .enumerate()
                .map(|(i, age)| (after + 1 + i as i64, now - age))
                .collect();
            let (last, settled) = settle(after, &rows, now);
            proptest::prop_assert!(after <= settled && settled <= last);
            let settle_ms = i64::try_from(SETTLE.as_millis()).unwrap_or(i64::MAX);
            for (seq, at) in &rows {
                if *seq <= settled {
                    proptest::prop_assert!(now - at >= settle_ms);
                }
            }
        }
    }

    #[test]
    fn a_page_fits_its_largest_transaction() {
        assert!(response_max(1 << 20) > (PAGE_BYTES + (1 << 20)) as u64);
        assert_eq!(
            response_max(usize::MAX),
            u64::try_from(usize::MAX).unwrap_or(u64::MAX)
        );
    }
}
