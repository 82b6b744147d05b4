//! Transactions over gossipsub: publishing (with a backlog while nobody listens) and
//! validating what peers send through the intake before it is forwarded.
//!
//! A message is a transaction's JSON input form, or, for a transaction over [`BIG_TX_BYTES`],
//! an [`Announcement`] of its hash: whoever has not stored it yet fetches it by request-response
//! from the peer the announcement came from (which stored it before forwarding), so gossip
//! messages stay small however large proofs grow. Either way the message id is the
//! transaction's hash, so a transaction and its announcement are one message to gossipsub.

use libp2p::{PeerId, gossipsub};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::sync::{MAX_GET, SyncRequest, SyncResponse};
use super::{
    BACKLOG_CAPACITY, BACKLOG_MAX_BYTES, MAX_VALIDATING, MAX_WAITING, MAX_WAITING_BYTES, Network,
};
use crate::intake::SubmitError;
use crate::model::Source;
use crate::tx::{Hash, Transaction};

/// Transactions larger than this (their JSON) are gossiped as an [`Announcement`].
pub const BIG_TX_BYTES: usize = 64 * 1024;
/// The largest gossip message an honest node sends: a transaction up to [`BIG_TX_BYTES`], with
/// room for gossipsub's envelope. A larger one counts against its forwarder.
pub const MAX_MESSAGE_BYTES: usize = BIG_TX_BYTES + 64 * 1024;
/// The largest frame gossipsub reads, above [`MAX_MESSAGE_BYTES`] so that an oversized message
/// reaches the node's judgement; a frame over it is dropped by gossipsub with the stream it came
/// on (the peer must open another), unjudged. It bounds what one connection can make the node
/// buffer.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;
/// Announced transactions being fetched at once; beyond it announcements are ignored (the
/// catch-up brings the transaction later).
const MAX_FETCHING: usize = 16;

/// Forged or unreadable messages a peer may forward before it is penalised.
const MAX_STRIKES: u32 = 3;

/// A peer's transaction, judged by the intake.
pub(super) struct Validated {
    pub id: gossipsub::MessageId,
    pub source: PeerId,
    pub acceptance: gossipsub::MessageAcceptance,
    /// Refused for a forged hash or signature.
    pub forged: bool,
}

/// A large transaction, announced by its hash.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Announcement {
    pub announce: Hash,
    /// The transaction's size in bytes (JSON).
    pub bytes: usize,
}

/// An announced transaction being fetched: the gossip message waits for it to be judged.
#[derive(Debug)]
pub(super) struct Fetch {
    message: gossipsub::MessageId,
    source: PeerId,
    hash: Hash,
}

/// What gossip carries for `tx`: its JSON, or an announcement when it is large.
pub(super) fn gossip_message(tx: &Transaction) -> Vec<u8> {
    let json = tx.to_json();
    if json.len() <= BIG_TX_BYTES {
        return json.into_bytes();
    }
    let announcement = Announcement {
        announce: tx.hash,
        bytes: json.len(),
    };
    serde_json::to_vec(&announcement).unwrap_or_else(|_| json.into_bytes())
}

/// The message id: the hash of the transaction a message carries or announces (the BLAKE3 of
/// the bytes for a message that is neither, which is refused anyway).
pub(super) fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    #[derive(Deserialize)]
    struct Named {
        hash: Option<Hash>,
        announce: Option<Hash>,
    }
    match serde_json::from_slice::<Named>(&message.data) {
        Ok(Named { hash: Some(h), .. })
        | Ok(Named {
            announce: Some(h), ..
        }) => gossipsub::MessageId::from(h.0.to_vec()),
        _ => gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec()),
    }
}

impl Network {
    pub(super) fn publish(&mut self, data: Vec<u8>) {
        let topic = self.topic.hash();
        let subscribed = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&topic));
        if !subscribed {
            return self.keep_for_later(data);
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), data)
        {
            Ok(_) => self.count(|c| c.published += 1),
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => {
                self.count(|c| c.dropped += 1);
                warn!(target: "gevulot::p2p", error = %e, "cannot gossip a transaction");
            }
        }
    }

    /// Keeps a transaction published while no peer listens, within the backlog's bounds.
    pub(super) fn keep_for_later(&mut self, data: Vec<u8>) {
        self.backlog_bytes += data.len();
        self.backlog.push_back(data);
        while self.backlog.len() > BACKLOG_CAPACITY || self.backlog_bytes > BACKLOG_MAX_BYTES {
            let Some(oldest) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= oldest.len();
            self.count(|c| c.dropped += 1);
            // Once until a peer listens again, not for every transaction of a lone node.
            if !self.backlog_overflowed {
                self.backlog_overflowed = true;
                warn!(target: "gevulot::p2p", "no peer has listened for a while; the oldest transactions waiting to be gossiped are dropped from now on (they stay stored here; gevulot_p2p_transactions_total{{outcome=\"dropped\"}} counts them)");
            }
        }
    }

    /// Takes a peer's transaction through the intake; gossipsub forwards it only once accepted.
    pub(super) fn validate(&mut self, id: gossipsub::MessageId, source: PeerId, tx: Transaction) {
        let intake = self.intake.clone();
        let shared = self.shared.clone();
        self.validating.spawn(async move {
            let mut forged = false;
            let acceptance = match intake.submit(&tx, Source::P2p).await {
                Ok(submitted) => {
                    if submitted.new {
                        debug!(target: "gevulot::p2p", tx = %tx.hash, kind = tx.kind().as_str(), peer = %source, "stored a transaction from a peer");
                    }
                    gossipsub::MessageAcceptance::Accept
                }
                Err(SubmitError::Invalid(e)) => {
                    info!(target: "gevulot::p2p", tx = %tx.hash, peer = %source, reason = %e, "refused a transaction from a peer");
                    forged = super::sync::forged(&e);
                    gossipsub::MessageAcceptance::Reject
                }
                Err(e) => {
                    warn!(target: "gevulot::p2p", tx = %tx.hash, error = %e, "cannot take a transaction from a peer");
                    gossipsub::MessageAcceptance::Ignore
                }
            };
            if let Ok(mut c) = shared.counters.write() {
                c.record(&acceptance);
            }
            Validated {
                id,
                source,
                acceptance,
                forged,
            }
        });
    }

    /// Counts a forged or unreadable message against the peer that forwarded it: peers forward
    /// only what they accepted, so a peer that does it [`MAX_STRIKES`] times is penalised.
    pub(super) fn strike(&mut self, peer: PeerId, what: &str) {
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes >= MAX_STRIKES {
            self.strikes.remove(&peer);
            self.penalise(
                peer,
                &format!(
                    "forwarded {MAX_STRIKES} messages no honest node sends (the last: {what})"
                ),
            );
        }
    }

    /// Counts a message judged without the intake and tells gossipsub.
    pub(super) fn judged(
        &mut self,
        id: &gossipsub::MessageId,
        source: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.count(|c| c.record(&acceptance));
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if message.topic == self.capacity_topic.hash() {
                    return self.on_capacity(&message_id, &propagation_source, &message);
                }
                let bytes = message.data.len();
                if bytes > MAX_MESSAGE_BYTES {
                    warn!(target: "gevulot::p2p", peer = %propagation_source, bytes, "a peer sent a gossip message larger than any node sends");
                    self.judged(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Reject,
                    );
                    return self.strike(propagation_source, "oversized messages");
                }
                let busy = self.validating.len() >= MAX_VALIDATING;
                if busy
                    && (self.waiting.len() >= MAX_WAITING
                        || self.waiting_bytes + bytes > MAX_WAITING_BYTES)
                {
                    debug!(target: "gevulot::p2p", peer = %propagation_source, "ignored a message: too many transactions waiting to be validated");
                    return self.judged(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                }
                let tx: Transaction = match serde_json::from_slice(&message.data) {
                    Ok(tx) => tx,
                    Err(_) if let Ok(a) = serde_json::from_slice::<Announcement>(&message.data) => {
                        return self.on_announcement(message_id, propagation_source, a);
                    }
                    Err(e) => {
                        warn!(target: "gevulot::p2p", peer = %propagation_source, error = %e, "a peer sent a message that is not a transaction");
                        self.judged(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Reject,
                        );
                        return self.strike(propagation_source, "not transactions");
                    }
                };
                if busy {
                    self.waiting_bytes += bytes;
                    self.waiting
                        .push_back((message_id, propagation_source, tx, bytes));
                } else {
                    self.validate(message_id, propagation_source, tx);
                }
            }
            gossipsub::Event::Subscribed { topic, .. } if topic == self.capacity_topic.hash() => {
                // A newcomer hears what this node offers now, not an interval later.
                self.announce_capacity();
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                debug!(target: "gevulot::p2p", peer = %peer_id, "a peer subscribed to transactions");
                let backlog = std::mem::take(&mut self.backlog);
                self.backlog_bytes = 0;
                self.backlog_overflowed = false;
                if !backlog.is_empty() {
                    info!(target: "gevulot::p2p", transactions = backlog.len(), "gossiping transactions stored while no peer listened");
                }
                for data in backlog {
                    self.publish(data);
                }
            }
            _ => {}
        }
    }
}

impl Network {
    /// A large transaction was announced: fetched from the peer that forwarded the announcement
    /// (it stored the transaction before forwarding), then validated like any other.
    fn on_announcement(&mut self, message: gossipsub::MessageId, source: PeerId, a: Announcement) {
        if a.bytes > self.max_message_bytes {
            debug!(target: "gevulot::p2p", peer = %source, tx = %a.announce, bytes = a.bytes, "refused an announcement of a transaction over the size limit");
            return self.judged(&message, &source, gossipsub::MessageAcceptance::Reject);
        }
        if self.fetches.len() >= MAX_FETCHING {
            debug!(target: "gevulot::p2p", peer = %source, tx = %a.announce, "ignored an announcement: fetching as many as allowed (the catch-up brings it)");
            return self.judged(&message, &source, gossipsub::MessageAcceptance::Ignore);
        }
        let request = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&source, SyncRequest::Get(vec![a.announce]));
        self.fetches.insert(
            request,
            Fetch {
                message,
                source,
                hash: a.announce,
            },
        );
    }

    /// The answer to a fetch: the transaction goes through the intake and decides the message.
    pub(super) fn fetched(&mut self, fetch: Fetch, response: SyncResponse) {
        let found = match response {
            SyncResponse::Transactions(txs) => {
                txs.into_iter().take(MAX_GET).find(|t| t.hash == fetch.hash)
            }
            _ => None,
        };
        match found {
            Some(tx) => {
                self.count(|c| c.fetched += 1);
                self.validate(fetch.message, fetch.source, tx);
            }
            None => self.fetch_failed(fetch, "the peer did not send it"),
        }
    }

    pub(super) fn fetch_failed(&mut self, fetch: Fetch, why: &str) {
        debug!(target: "gevulot::p2p", peer = %fetch.source, tx = %fetch.hash, reason = why, "cannot fetch an announced transaction (the catch-up brings it)");
        self.judged(
            &fetch.message,
            &fetch.source,
            gossipsub::MessageAcceptance::Ignore,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::tx::Payload;

    fn message(data: Vec<u8>) -> gossipsub::Message {
        gossipsub::Message {
            source: None,
            data,
            sequence_number: None,
            topic: gossipsub::IdentTopic::new(super::super::TOPIC).hash(),
        }
    }

    #[test]
    fn a_transaction_and_its_announcement_are_one_message() {
        let key = SecretKey::from_bytes(&[3; 32]).expect("key");
        let small = Transaction::new_signed(Payload::Empty, 1, &key);
        let data = gossip_message(&small);
        assert_eq!(
            data,
            small.to_json().into_bytes(),
            "small ones travel whole"
        );
        assert_eq!(message_id(&message(data)).0, small.hash.0.to_vec());

        let big = Transaction::new_signed(
            Payload::ProofKey {
                parent: small.hash,
                key: vec![1; BIG_TX_BYTES],
            },
            2,
            &key,
        );
        let data = gossip_message(&big);
        assert!(data.len() < 200, "announced: {}", data.len());
        let a: Announcement = serde_json::from_slice(&data).expect("an announcement");
        assert_eq!(a.announce, big.hash);
        assert_eq!(a.bytes, big.to_json().len());
        let id = message_id(&message(data)).0;
        assert_eq!(id, big.hash.0.to_vec());
        assert_eq!(message_id(&message(big.to_json().into_bytes())).0, id);
        // Neither: named by its bytes.
        assert_eq!(
            message_id(&message(b"garbage".to_vec())).0,
            blake3::hash(b"garbage").as_bytes().to_vec()
        );
    }
}
