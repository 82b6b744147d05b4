//! A hostile peer on the gossip topic: it has the pre-shared key, connects, and forwards a valid
//! transaction twice, then an oversized message, garbage and a forged transaction. The node
//! stores and relays the valid one once, refuses the rest (nothing of it is stored or relayed),
//! penalises the peer after three, disconnects it and lists it as penalised. Garbage instead of
//! the handshake is closed, and a peer holds at most two connections.

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
    hostile_with(passphrase, 90)
}

/// [`hostile`] with the identity of `key(seed)`.
fn hostile_with(passphrase: &str, seed: u8) -> Swarm<gossipsub::Behaviour> {
    let keypair = app::p2p::identity(&key(seed)).expect("identity");
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
            // It may send frames larger than the node accepts.
            let config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(1 << 20)
                .build()
                .expect("config");
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
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
    // An honest peer of a's: it must get what a accepted, once, and nothing else.
    let b = node(94, "net", &[a.addr()], AclPolicy::Open).await;
    eventually(WAIT, "b is connected to a", || {
        let connected = !b.p2p.peers().is_empty();
        async move { connected }
    })
    .await;
    let mut swarm = hostile("net");
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", a.p2p.listen_addr().port())
        .parse()
        .expect("addr");
    swarm.dial(addr).expect("dial");
    let topic = gossipsub::IdentTopic::new(app::p2p::TOPIC);

    // Sent in this order: a valid transaction and its replay, then messages no honest peer
    // forwards: one over the gossip message limit, one that is not JSON, one that is neither a
    // transaction nor an announcement, one forged (the peer is cut off before this one, after
    // three).
    let valid = Transaction::new_signed(Payload::Empty, 1, &key(95));
    let mut forged = Transaction::new_signed(Payload::Empty, 1, &key(92));
    forged.author = key(93).public_key();
    let mut messages = vec![
        forged.to_json().into_bytes(),
        br#"{"neither": "a transaction nor an announcement"}"#.to_vec(),
        b"not json at all".to_vec(),
        vec![b'x'; app::p2p::MAX_GOSSIP_MESSAGE_BYTES + 1],
        valid.to_json().into_bytes(),
        valid.to_json().into_bytes(),
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
                && messages.len() <= 1
            {
                return;
            }
        }
    })
    .await;
    assert!(disconnected.is_ok(), "the node did not disconnect the peer");
    eventually(WAIT, "a counts the peer as penalised", || {
        let c = a.p2p.counters();
        // The forged one may have arrived before the disconnection.
        async move { c.peers_penalised == 1 && c.rejected >= 3 && c.accepted == 1 }
    })
    .await;
    let penalised = a.p2p.penalised();
    assert_eq!(penalised.len(), 1, "{penalised:?}");
    assert_eq!(penalised[0].0, swarm.local_peer_id().to_string());
    // The valid transaction is stored once and relayed; nothing else is stored or relayed.
    eventually(WAIT, "b has the valid transaction", || b.has(&valid.hash)).await;
    for (name, n) in [("a", &a), ("b", &b)] {
        assert_eq!(
            n.store().count_transactions().await.expect("count"),
            1,
            "{name} stores the valid transaction alone"
        );
        assert!(!n.has(&forged.hash).await, "{name} has the forged one");
    }
    assert_eq!(b.p2p.counters().rejected, 0, "b was sent nothing invalid");
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
    let hostile_id = swarm.local_peer_id().to_string();
    let peers = a.p2p.peers();
    assert!(peers.iter().all(|p| p.peer_id != hostile_id), "{peers:?}");
    assert_eq!(peers.len(), 1, "b stays connected: {peers:?}");
}

/// Garbage on the wire instead of the network's handshake: the node closes the connection and
/// goes on serving its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_closed_and_the_network_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = node(88, "net", &[], AclPolicy::Open).await;
    let b = node(89, "net", &[a.addr()], AclPolicy::Open).await;
    for garbage in [
        vec![0u8; 64 * 1024],
        b"/multistream/1.0.0\n\xff\xff\xff\xff garbage".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
    ] {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", a.p2p.listen_addr().port()))
            .await
            .expect("connect");
        let _ = socket.write_all(&garbage).await;
        let mut sink = Vec::new();
        // A short one waits out the handshake's timeout (5 s); the others are reset at once.
        let closed = tokio::time::timeout(WAIT, socket.read_to_end(&mut sink)).await;
        assert!(
            closed.is_ok(),
            "the node kept a connection that sent garbage"
        );
    }
    // The network still works: a transaction on b reaches a.
    let tx = Transaction::new_signed(Payload::Empty, 1, &key(87));
    b.core
        .submit(&tx, app::model::Source::Rpc)
        .await
        .expect("stored");
    eventually(WAIT, "a has b's transaction", || a.has(&tx.hash)).await;
}

/// A peer that opens connection after connection: the node holds two per peer (two nodes that
/// dial each other at once briefly hold two) and closes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holds_at_most_two_connections() {
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

    let a = node(86, "net", &[], AclPolicy::Open).await;
    let mut swarm = hostile_with("net", 85);
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", a.p2p.listen_addr().port())
        .parse()
        .expect("addr");
    let a_id: libp2p::PeerId = a.p2p.peer_id().parse().expect("peer id");
    for _ in 0..4 {
        swarm
            .dial(
                DialOpts::peer_id(a_id)
                    .condition(PeerCondition::Always)
                    .addresses(vec![addr.clone()])
                    .build(),
            )
            .expect("dial");
    }
    // Every dial is established, and the node closes those beyond two.
    let (mut established, mut closed) = (0u32, 0u32);
    let done = tokio::time::timeout(WAIT, async {
        while established < 4 || closed < 2 {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => established += 1,
                SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => closed += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "established {established}, closed {closed}");
    assert_eq!(closed, 2);
    assert_eq!(
        swarm.network_info().connection_counters().num_established(),
        2
    );
    assert!(swarm.is_connected(&a_id), "the first connections stay");
}
