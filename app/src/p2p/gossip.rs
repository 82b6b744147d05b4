//! Transactions over gossipsub: publishing (with a backlog while nobody listens) and
//! validating what peers send through the intake before it is forwarded.

use libp2p::{PeerId, gossipsub};
use tracing::{debug, info, warn};

use super::{
    BACKLOG_CAPACITY, BACKLOG_MAX_BYTES, MAX_VALIDATING, MAX_WAITING, MAX_WAITING_BYTES, Network,
};
use crate::intake::SubmitError;
use crate::model::Source;
use crate::tx::Transaction;

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
            let acceptance = match intake.submit(&tx, Source::P2p).await {
                Ok(submitted) => {
                    if submitted.new {
                        debug!(target: "gevulot::p2p", tx = %tx.hash, kind = tx.kind().as_str(), peer = %source, "stored a transaction from a peer");
                    }
                    gossipsub::MessageAcceptance::Accept
                }
                Err(SubmitError::Invalid(e)) => {
                    info!(target: "gevulot::p2p", tx = %tx.hash, peer = %source, reason = %e, "refused a transaction from a peer");
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
            (id, source, acceptance)
        });
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
                let bytes = message.data.len();
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
                    Err(e) => {
                        warn!(target: "gevulot::p2p", peer = %propagation_source, error = %e, "a peer sent a message that is not a transaction");
                        return self.judged(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Reject,
                        );
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
