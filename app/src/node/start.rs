//! Wiring a running node from its configuration: the intake over the store, the P2P network,
//! the whitelist sync, the pipeline over a real executor, the GPU pool, and the housekeeping
//! tasks. The `gevulot run` command, the benchmarks and the tests all start a node here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::acl::SyncStatus;
use crate::auth::{Auth, AuthError};
use crate::crypto::SecretKey;
use crate::data_dir::DataDir;
use crate::download::{DownloadError, Downloader};
use crate::gpu::Sysfs;
use crate::p2p::{Network, NetworkError};
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::validate::Limits;
use crate::vm::executor::{Executor, ExecutorConfig};

use super::{AclPolicy, Intake, Node, Outbox, Parts, Resources, SubmitObserver};

/// Everything a node is started from.
#[derive(Debug)]
pub struct Config {
    pub data: DataDir,
    /// Connected and migrated.
    pub store: Store,
    pub key: SecretKey,
    pub limits: Limits,
    pub acl: AclPolicy,
    /// A published whitelist to follow (`GEVULOT_ACL_WHITELIST_URL`).
    pub acl_whitelist_url: Option<String>,
    /// The P2P network; its whitelist settings follow `acl`. `None` only in tests of a lone node.
    pub p2p: Option<crate::p2p::Config>,
    /// This node's download server as clients and peers reach it (`http://host:port`).
    pub file_base_url: String,
    pub resources: Resources,
    /// Where the host's sysfs is (`GEVULOT_SYSFS_ROOT`).
    pub sysfs_root: PathBuf,
    pub max_upload_bytes: u64,
    /// How long a console session lasts (`GEVULOT_SESSION_HOURS`).
    pub session_ttl: Duration,
    /// How many nodes prove each step of a Run (`GEVULOT_PLACEMENT_REDUNDANCY`).
    pub placement_redundancy: usize,
    /// How webhooks are delivered.
    pub webhooks: crate::webhooks::Settings,
    /// How programs run; `None` on a node that never executes.
    pub execution: Option<Execution>,
    pub observer: Option<Arc<dyn SubmitObserver>>,
}

/// How an executing node runs programs.
#[derive(Debug)]
pub struct Execution {
    pub executor: ExecutorConfig,
    pub downloads: crate::download::Limits,
    /// The longest a task's VM may run.
    pub max_run_time: Duration,
    /// Attempts of a task whose failures are retryable.
    pub max_attempts: u32,
    /// The wait before the first retry; each next one waits twice as long.
    pub retry_backoff: Duration,
    /// How long a task waits for its program to be deployed.
    pub program_wait: Duration,
    /// At most this many tasks of one program at a time.
    pub per_program_limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare console authentication")]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("cannot prepare downloads")]
    Downloads(#[from] DownloadError),
}

impl Node {
    /// Starts a node: everything is bound and running when this returns (a taken P2P port is an
    /// error here, not later). Background work runs until [`Node::shutdown`].
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let Config {
            data,
            store,
            key,
            limits,
            acl,
            acl_whitelist_url,
            p2p,
            file_base_url,
            resources,
            sysfs_root,
            max_upload_bytes,
            session_ttl,
            placement_redundancy,
            webhooks,
            execution,
            observer,
        } = config;
        let (outbox, outbox_receiver) = Outbox::with_capacity(
            p2p.as_ref()
                .map_or(crate::intake::OUTBOX_CAPACITY, |p| p.outbox_capacity),
        );
        let mut intake = Intake::new(store.clone(), limits, acl).with_node_author(key.public_key());
        if p2p.is_some() {
            intake = intake.with_gossip(outbox);
        }
        let auth = Auth::new(store.clone())?.with_session_ttl(session_ttl);
        let acl_sync = acl_whitelist_url
            .as_ref()
            .map(|url| (crate::store::redact_url(url), SyncStatus::default()));
        let mut announcing = None;
        let network = match p2p {
            Some(mut p2p) => {
                p2p.whitelist_peers = acl == AclPolicy::Whitelist;
                p2p.whitelist_sync = acl_sync.as_ref().map(|(_, status)| status.clone());
                let (capacity, announced) = tokio::sync::watch::channel(None);
                p2p.capacity = Some(announced);
                announcing = Some((capacity, p2p.announce_every));
                Some(Network::start(p2p, &key, intake.clone(), outbox_receiver).await?)
            }
            None => None,
        };
        let pipeline = match execution {
            Some(execution) => Some(pipeline(
                execution,
                &data,
                &file_base_url,
                &resources,
                intake.clone(),
                key.clone(),
            )?),
            None => None,
        };
        let (network, p2p) = match network {
            Some((network, view)) => (Some(network), Some(view)),
            None => (None, None),
        };
        if let Some(view) = &p2p {
            // A Cancel an operator made through another node of the network counts here too.
            let view = view.clone();
            intake.set_network_nodes(crate::intake::NetworkNodes(Arc::new(move |key| {
                let hex = key.to_hex();
                view.executors()
                    .iter()
                    .any(|e| !e.local && e.public_key.as_deref() == Some(hex.as_str()))
            })));
        }
        let node = Node::from_parts(Parts {
            intake,
            auth,
            key,
            data,
            file_base_url,
            resources,
            sysfs: Sysfs::new(&sysfs_root),
            pipeline: pipeline.clone(),
            p2p,
            acl_sync,
            max_upload_bytes,
            webhooks,
            observer,
        });
        // Before anything that starts or places work: an operator's drain outlives a restart.
        node.restore_drain().await;
        for task in node.webhooks().run(node.events()) {
            node.keep(task);
        }
        // The pipeline hears of everything stored from here on, before the network can store
        // what its peers hold; it starts following once the placement and the GPU pool are set.
        let pipeline_events = pipeline.as_ref().map(|_| node.events().subscribe());
        if let Some(network) = network {
            node.keep(tokio::spawn(network.run()));
        }
        if let (Some(view), Some((capacity, _))) = (node.p2p(), &announcing) {
            let (placer, placement) = crate::placement::Placer::new(
                store.clone(),
                node.events().clone(),
                view.clone(),
                pipeline.clone(),
                capacity.subscribe(),
                placement_redundancy,
            );
            node.set_placement(placement);
            node.keep(tokio::spawn(placer.run()));
        }
        if let Some((capacity, every)) = announcing {
            node.keep(tokio::spawn(super::capacity::keep_current(
                node.clone(),
                capacity,
                every,
            )));
        }
        if let (Some(url), Some((_, status))) = (acl_whitelist_url, &node.parts().acl_sync) {
            node.keep(tokio::spawn(crate::acl::keep_synced(
                store.clone(),
                url,
                crate::acl::SYNC_EVERY,
                status.clone(),
            )));
        }
        if let (Some(pipeline), Some(events)) = (pipeline, pipeline_events) {
            match node.peer_files() {
                Ok(files) => pipeline.set_peer_files(files.clone()),
                Err(e) => {
                    warn!(target: "gevulot", error = %e, "tasks cannot fetch files from peers")
                }
            }
            if let Err(e) = node.refresh_gpu_pool().await {
                warn!(target: "gevulot", error = %e, "cannot read the GPU pool; programs get no GPU until it is changed through the API");
            }
            node.keep(tokio::spawn(pipeline.run_from(events)));
        }
        Ok(node)
    }
}

/// The pipeline over a real executor. VMs a previous run left behind (the node was killed) are
/// ended and their directories removed before anything new starts.
fn pipeline(
    execution: Execution,
    data: &DataDir,
    file_base_url: &str,
    resources: &Resources,
    intake: Intake,
    key: SecretKey,
) -> Result<Pipeline, StartError> {
    let reaped =
        crate::vm::runner::reap_orphans(&execution.executor.vms_dir, std::path::Path::new("/"));
    if !reaped.is_empty() {
        warn!(target: "gevulot", vms = ?reaped, "ended VMs left over by a previous run");
    }
    let downloader = Downloader::new(data, execution.downloads)?;
    Ok(Pipeline::new(
        crate::pipeline::Config {
            data_dir: data.clone(),
            file_base_url: file_base_url.to_string(),
            cpus: resources.cpus,
            mem_mib: resources.mem_mib,
            max_run_time: execution.max_run_time,
            max_attempts: execution.max_attempts,
            retry_backoff: execution.retry_backoff,
            program_wait: execution.program_wait,
            per_program_limit: execution.per_program_limit,
            min_free_bytes: resources.min_free_bytes,
        },
        intake,
        key,
        downloader,
        Executor::new(execution.executor),
    ))
}
