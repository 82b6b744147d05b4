//! The core API: [`Node`] is what every front door calls (JSON-RPC, REST, the console, the CLI's
//! methods, and the P2P network through the intake). It returns domain read models
//! ([`crate::model`], [`crate::gpu`], [`crate::p2p`]) and [`NodeError`]s with stable codes, and
//! knows nothing of HTTP: a handler extracts its input, authorises the caller, calls a method
//! here and maps the result.
//!
//! One file per area: `transactions`, `programs` (deploy and run, signed by the node),
//! `uploads`, `files`, `gpus`, `network`, `info`; `start` wires a running node from its
//! configuration. Transactions enter the database only through [`crate::intake`].

mod audit;
mod cache;
mod capacity;
mod drain;
mod error;
mod files;
mod gpus;
mod info;
mod network;
mod peer_files;
mod programs;
mod retention;
mod start;
mod transactions;
mod trees;
mod uploads;
mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use crate::intake::{
    AclPolicy, Intake, Outbox, OutboxReceiver, SubmitError, Submitted, UnknownOutcomes,
};
pub use crate::peer_files::PEER_FETCH_HEADER;
pub use drain::{DrainState, Stopped};
pub use error::NodeError;
pub use files::FileView;
pub use info::{NodeInfo, Resources};
pub use network::{AclView, NetworkView, PlacementSummary};
pub use peer_files::KnownFile;
pub use programs::{Deployed, ImageSource, InputSource, InputSpec, ProgramSpec, StepSpec};
pub use start::{Config, Execution, StartError};
pub use transactions::{FileFetch, TaskView, TxStatus};
pub use uploads::Uploaded;

use crate::acl::SyncStatus;
use crate::auth::Auth;
use crate::crypto::{PublicKey, SecretKey};
use crate::data_dir::DataDir;
use crate::events::Events;
use crate::gpu::Sysfs;
use crate::p2p::P2p;
use crate::pipeline::Pipeline;

/// Told the outcome of every submission made through [`Node::submit`] (clients' transactions and
/// what the node signs for its operators): `accepted`, `duplicate`, or the refusal's code.
pub trait SubmitObserver: Send + Sync + std::fmt::Debug {
    fn submitted(&self, kind: &str, outcome: &str);
}

/// The parts a node is made of. [`Node::start`] builds them from a configuration; tests that
/// need a node without a network or a pipeline assemble them with [`Node::from_parts`].
#[derive(Debug)]
pub struct Parts {
    pub intake: Intake,
    pub auth: Auth,
    pub key: SecretKey,
    pub data: DataDir,
    /// This node's download server as clients and peers reach it (`http://host:port`).
    pub file_base_url: String,
    pub resources: Resources,
    pub sysfs: Sysfs,
    /// Absent on a node that does not execute (`GEVULOT_NODE_NO_EXECUTION`).
    pub pipeline: Option<Pipeline>,
    /// Absent only where a test builds a node without its network.
    pub p2p: Option<P2p>,
    /// The published whitelist (`GEVULOT_ACL_WHITELIST_URL`, any password redacted) and how
    /// its latest sync went.
    pub acl_sync: Option<(String, SyncStatus)>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// How webhooks are delivered (the sender runs once [`Node::start`] starts it).
    pub webhooks: crate::webhooks::Settings,
    pub observer: Option<Arc<dyn SubmitObserver>>,
}

/// The node's core API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parts: Parts,
    started_at: SystemTime,
    /// Stored transactions recently read (REST, the console), weighed by their output form.
    stored: cache::Bounded<Arc<crate::model::StoredTransaction>>,
    /// `getTransaction`'s answers, serialised once.
    outputs: cache::Bounded<Box<serde_json::value::RawValue>>,
    trees: trees::TreeCache,
    /// What [`Node::start`] spawned, ended by [`Node::shutdown`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Since when the node drains (`None`: it takes work).
    draining: Mutex<Option<SystemTime>>,
    /// The data directory's use per area, and when it was walked.
    data_use: DataUseCache,
    /// Fetches files the network knows from their producers and peers (built on first use, or
    /// by `Node::start` to share it with the pipeline).
    peer_files: std::sync::OnceLock<Arc<crate::peer_files::PeerFiles>>,
    /// Where Runs are placed in the network (set by [`Node::start`] when the node has one).
    placement: std::sync::OnceLock<crate::placement::PlacementView>,
    webhooks: crate::webhooks::Webhooks,
}

type DataUseCache =
    tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<crate::data_dir::AreaUse>>)>>;

impl Node {
    pub fn from_parts(parts: Parts) -> Self {
        let webhooks = crate::webhooks::Webhooks::new(
            parts.intake.store().clone(),
            parts.webhooks.clone(),
            crate::webhooks::Seal::from_node_key(&parts.key),
        );
        Self {
            inner: Arc::new(Inner {
                webhooks,
                parts,
                started_at: SystemTime::now(),
                stored: cache::Bounded::new(cache::Bounds {
                    entries: 16_384,
                    bytes: 64 << 20,
                    entry_bytes: 1 << 20,
                }),
                outputs: cache::Bounded::new(cache::Bounds {
                    entries: 16_384,
                    bytes: 64 << 20,
                    entry_bytes: 1 << 20,
                }),
                trees: trees::TreeCache::default(),
                tasks: Mutex::default(),
                draining: Mutex::default(),
                data_use: DataUseCache::default(),
                peer_files: std::sync::OnceLock::new(),
                placement: std::sync::OnceLock::new(),
            }),
        }
    }

    fn parts(&self) -> &Parts {
        &self.inner.parts
    }

    fn store(&self) -> &crate::store::Store {
        self.inner.parts.intake.store()
    }

    /// Console users, sessions and API tokens.
    pub fn auth(&self) -> &Auth {
        &self.parts().auth
    }

    /// The event bus: stored transactions and task changes.
    pub fn events(&self) -> &Events {
        self.parts().intake.events()
    }

    pub fn public_key(&self) -> PublicKey {
        self.parts().key.public_key()
    }

    /// This node's download server (`http://host:port`, no trailing slash).
    pub fn file_base_url(&self) -> &str {
        &self.parts().file_base_url
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.parts().data
    }

    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// Who may author transactions and connect as a peer.
    pub fn acl_policy(&self) -> AclPolicy {
        self.parts().intake.acl()
    }

    /// Largest upload, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.parts().max_upload_bytes
    }

    /// The P2P network's read-only view, when the node runs one.
    pub fn p2p(&self) -> Option<&P2p> {
        self.parts().p2p.as_ref()
    }

    /// Whether the node executes programs.
    /// Where Runs are placed in the network; `None` without a network.
    pub fn placement(&self) -> Option<&crate::placement::PlacementView> {
        self.inner.placement.get()
    }

    pub(crate) fn set_placement(&self, view: crate::placement::PlacementView) {
        let _ = self.inner.placement.set(view);
    }

    pub fn executes(&self) -> bool {
        self.parts().pipeline.is_some()
    }

    /// Stops what [`Node::start`] spawned and closes the database.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        self.store().close().await;
    }

    fn keep(&self, task: tokio::task::JoinHandle<()>) {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }
}
