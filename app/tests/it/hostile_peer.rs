//! A hostile peer on the gossip topic: it has the pre-shared key, connects, and forwards garbage
//! and a forged transaction. The node refuses each message (nothing is stored or forwarded),
//! penalises the peer after a few, disconnects it and lists it as penalised.

use std::time::Duration;

use libp2p::core::upgrade;
use libp2p::futures::StreamExt;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, Transport, gossipsub, noise, tcp, yamux};

use app::node::AclPolicy;
use app::tx::{Payload, Transaction};

use crate::p2p::{WAIT, eventually, node};
use crate::support::key;

/// A bare gossipsub peer with the network's pre-shared key, subscribed to transactions.
fn hostile(passphrase: &str) -> Swarm<gossipsub::Behaviour> {
    let keypair = app::p2p::identity(&key(90)).expect("identity");
    let psk = PreSharedKey::new(app::p2p::psk(passphrase));
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::new().nodelay(true))
                    .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                    .upgrade(upgrade::Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default()),
            )
        })
        .expect("transport")
        .with_behaviour(|key| {
            gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .expect("gossipsub")
        })
        .expect("behaviour")
        .build();
    swarm
        .behaviour_mut()
        .subscribe(&gossipsub::IdentTopic::new(app::p2p::TOPIC))
        .expect("subscribe");
    swarm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_forwarding_garbage_is_penalised() {
    let a = node(91, "net", &[], AclPolicy::Open).await;
    let mut swarm = hostile("net");
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", a.p2p.listen_addr().port())
        .parse()
        .expect("addr");
    swarm.dial(addr).expect("dial");
    let topic = gossipsub::IdentTopic::new(app::p2p::TOPIC);

    // Three messages no honest peer forwards: two that are not transactions, one forged.
    let mut forged = Transaction::new_signed(Payload::Empty, 1, &key(92));
    forged.author = key(93).public_key();
    let mut messages = vec![
        b"not json at all".to_vec(),
        br#"{"neither": "a transaction nor an announcement"}"#.to_vec(),
        forged.to_json().into_bytes(),
    ];
    let disconnected = tokio::time::timeout(WAIT, async {
        loop {
            let ready = swarm
                .behaviour()
                .all_peers()
                .any(|(_, topics)| topics.contains(&&topic.hash()));
            if ready && let Some(data) = messages.pop() {
                swarm
                    .behaviour_mut()
                    .publish(topic.clone(), data)
                    .expect("publish");
            }
            let next = tokio::time::timeout(Duration::from_millis(100), swarm.select_next_some());
            if let Ok(SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            }) = next.await
                && messages.is_empty()
            {
                return;
            }
        }
    })
    .await;
    assert!(disconnected.is_ok(), "the node did not disconnect the peer");
    eventually(WAIT, "a counts the peer as penalised", || {
        let c = a.p2p.counters();
        async move { c.peers_penalised == 1 && c.rejected == 3 }
    })
    .await;
    let penalised = a.p2p.penalised();
    assert_eq!(penalised.len(), 1, "{penalised:?}");
    assert_eq!(penalised[0].0, swarm.local_peer_id().to_string());
    assert_eq!(a.store().count_transactions().await.expect("count"), 0);
    assert!(!a.has(&forged.hash).await);
    // Refused when it dials again.
    swarm
        .dial(
            format!("/ip4/127.0.0.1/tcp/{}", a.p2p.listen_addr().port())
                .parse::<Multiaddr>()
                .expect("addr"),
        )
        .expect("dial");
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => {
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "a penalised peer is refused");
    assert!(a.p2p.peers().is_empty(), "{:?}", a.p2p.peers());
}
