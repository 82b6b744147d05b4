//! `gevulot run`: resolves the configuration, opens the data directory, the node key and the
//! database, builds the core, and runs until SIGINT or SIGTERM. A signal drains the node: no new
//! task starts, and running ones get `GEVULOT_SHUTDOWN_GRACE` to finish before their VMs are
//! stopped (the next start resumes them); a second signal cuts the grace short.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use app::data_dir::DataDir;
use app::node::{AclPolicy, Node};
use app::store::redact_url;
use app::validate::Limits;
use tracing::{info, warn};

use crate::config::{AclMode, RunArgs, WELL_KNOWN_PSK_PASSPHRASE};
use crate::http::{self, AppState};

/// A PCI address in the `DDDD:BB:DD.F` form.
fn check_pci_address(text: &str) -> anyhow::Result<()> {
    let ok = text.len() == 12
        && text.char_indices().all(|(i, c)| match i {
            4 | 7 => c == ':',
            10 => c == '.',
            11 => ('0'..='7').contains(&c),
            _ => c.is_ascii_hexdigit(),
        });
    if !ok {
        bail!(
            "GEVULOT_GPU_DEVICES: {text:?} is not a PCI address like 0000:01:00.0 (see `lspci -D`)"
        );
    }
    Ok(())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::register()?;
    let (db_url, data) = args.db.resolve()?;
    if let Some(reason) = &data.fallback_reason {
        warn!(target: "gevulot", "{reason}; using {} instead (set GEVULOT_DATA_DIRECTORY to choose)", data.path.display());
    }
    info!(target: "gevulot", data_directory = %data.path.display(), "data directory (images, transaction files, database, logs)");
    let data_dir = DataDir::new(&data.path);
    let log_directory = args.log_directory.clone().unwrap_or_else(|| data_dir.log());
    std::fs::create_dir_all(&log_directory).with_context(|| {
        format!(
            "cannot create the log directory {}",
            log_directory.display()
        )
    })?;

    for gpu in &args.gpu_devices {
        check_pci_address(gpu)?;
    }

    let key_file = args
        .node_key_file
        .clone()
        .unwrap_or_else(|| data_dir.node_key());
    let key = crate::setup::load_or_create_key(&key_file)?;

    if let Some(url) = &args.acl_whitelist_url {
        app::acl::check_url(url).map_err(|e| anyhow::anyhow!("GEVULOT_ACL_WHITELIST_URL: {e}"))?;
    }
    for entry in &args.p2p_discovery_addrs {
        app::p2p::check_bootstrap(entry)
            .map_err(|e| anyhow::anyhow!("GEVULOT_P2P_DISCOVERY_ADDR: {e}"))?;
    }
    let passphrase = match args.psk_passphrase()? {
        Some(p) => p.expose().to_string(),
        None => {
            warn!(target: "gevulot", "no GEVULOT_PSK_PASSPHRASE set: using the original's well-known passphrase, so anyone can join this network; set a private passphrase");
            WELL_KNOWN_PSK_PASSPHRASE.to_string()
        }
    };

    let store = crate::setup::connect(&db_url, args.db.db_max_connections).await?;
    let acl = match (args.acl_mode, &args.acl_whitelist_url) {
        (AclMode::Whitelist, _) | (AclMode::Auto, Some(_)) => AclPolicy::Whitelist,
        (AclMode::Open, _) | (AclMode::Auto, None) => AclPolicy::Open,
    };

    // Bind every listener before announcing readiness; a taken port is a clear startup error.
    let main_listener =
        http::bind(args.json_rpc_listen_addr, "GEVULOT_JSON_RPC_LISTEN_ADDR").await?;
    let files_addr = SocketAddr::new(args.p2p_listen_addr.ip(), args.http_port);
    let files_listener =
        http::bind(files_addr, "GEVULOT_HTTP_PORT (or GEVULOT_P2P_LISTEN_ADDR)").await?;
    let health_listener = http::bind(
        args.healthcheck_listen_addr,
        "GEVULOT_HEALTHCHECK_LISTEN_ADDR",
    )
    .await?;
    let metrics_listener = match args.metrics_listen_addr {
        Some(addr) => Some(http::bind(addr, "GEVULOT_METRICS_LISTEN_ADDR").await?),
        None => None,
    };
    let execution = if args.no_execution {
        None
    } else {
        Some(execution(&args, &data_dir, &log_directory).await)
    };
    let main_addr = main_listener.local_addr()?;
    let files_addr = files_listener.local_addr()?;
    let health_addr = health_listener.local_addr()?;
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let file_base_url = file_base_url(args.p2p_advertised_listen_addr, files_addr);
    let metrics = Arc::new(http::metrics::Metrics::default());
    let node = Node::start(app::node::Config {
        data: data_dir.clone(),
        store: store.clone(),
        key: key.clone(),
        limits: Limits {
            max_proof_bytes: args.max_proof_bytes,
            ..Limits::default()
        },
        acl,
        acl_whitelist_url: args.acl_whitelist_url.clone(),
        p2p: Some(app::p2p::Config {
            listen: args.p2p_listen_addr,
            advertised: args.p2p_advertised_listen_addr,
            bootstrap: args.p2p_discovery_addrs.clone(),
            passphrase,
            whitelist_peers: false,
            whitelist_sync: None,
            max_message_bytes: max_request_bytes(&args),
            max_peers: args.doors.p2p_max_peers,
            sync_every: std::time::Duration::from_secs(args.p2p_sync_interval_secs),
            announce_every: std::time::Duration::from_secs(args.p2p_announce_interval_secs),
            outbox_capacity: usize::try_from(args.p2p_outbox_capacity).unwrap_or(usize::MAX),
            capacity: None,
        }),
        file_base_url: file_base_url.clone(),
        resources: app::node::Resources {
            cpus: args.cpus.unwrap_or_else(crate::setup::host_cpus),
            mem_mib: args
                .mem_gb
                .map_or_else(crate::setup::host_mem_mib, |g| g * 1024),
            gpu_devices: args.gpu_devices.clone(),
            execution: !args.no_execution,
            min_free_bytes: args.min_free_mb.saturating_mul(1 << 20),
        },
        sysfs_root: args.sysfs_root.clone(),
        max_upload_bytes: args.max_upload_bytes,
        session_ttl: args.retention.session_ttl(),
        placement_redundancy: args.placement_redundancy as usize,
        webhooks: args.webhooks.settings(),
        execution,
        observer: Some(metrics.clone()),
    })
    .await?;
    metrics.follow_tasks(node.events().subscribe());
    if let Some(keep) = args.retention.audit() {
        node.keep_audit_for(keep);
    }
    node.keep_collecting(args.retention.collector(log_directory.join("vms")));
    first_admin(node.auth(), &args).await?;
    let p2p = node
        .p2p()
        .cloned()
        .context("the P2P network did not start")?;
    let state = AppState::new(http::Inner {
        node: node.clone(),
        secure_cookies: args.secure_cookies,
        metrics,
        max_request_bytes: max_request_bytes(&args),
        doors: http::Doors::new(args.doors.submission(), args.doors.files()),
        settings: args.settings.clone(),
    });
    let (main_router, rpc_handle) = http::main_router(state.clone())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(http::serve(main_listener, main_router, stopped.clone()));
    servers.spawn(http::serve(
        files_listener,
        http::files::FileServer::new(data_dir.clone())
            .fetching_through(node.clone())
            .router(state.doors.files.clone()),
        stopped.clone(),
    ));
    servers.spawn(http::serve(
        health_listener,
        http::health::router(state.clone()),
        stopped.clone(),
    ));
    if let Some(listener) = metrics_listener {
        servers.spawn(http::serve(
            listener,
            http::metrics::router(state.clone()),
            stopped.clone(),
        ));
    }

    info!(
        target: "gevulot",
        version = env!("CARGO_PKG_VERSION"),
        public_key = %key.public_key(),
        database = %redact_url(db_url.expose()),
        backend = store.backend().as_str(),
        acl = ?acl,
        psk_fingerprint = %p2p.psk_fingerprint(),
        peer_id = %p2p.peer_id(),
        json_rpc_listen_addr = %main_addr,
        files_listen_addr = %files_addr,
        file_base_url = %file_base_url,
        healthcheck_listen_addr = %health_addr,
        metrics_listen_addr = %metrics_addr.map_or_else(|| "disabled".to_string(), |a| a.to_string()),
        p2p_listen_addr = %p2p.listen_addr(),
        p2p_bootstrap = %args.p2p_discovery_addrs.join(","),
        execution = node.executes(),
        gpus = args.gpu_devices.len(),
        log_directory = %log_directory.display(),
        "node ready"
    );
    info!(target: "gevulot", "JSON-RPC at http://{main_addr}/, REST at http://{main_addr}/api/v1, API docs at http://{main_addr}/api-docs/ui/");
    if let Some(token) = node.auth().setup_token_if_needed().await? {
        // The one-time link goes to standard output, never into the log stream.
        println!(
            "No console users yet. Open http://{main_addr}/console/setup and create the first admin with this one-time token \
             (valid until used or the next restart):\n  {token}\nor with curl:\n  \
             curl -X POST http://{main_addr}/api/v1/setup -H 'content-type: application/json' \\\n    \
             -d '{{\"token\":\"{token}\",\"username\":\"admin\",\"password\":\"<at least 10 characters>\"}}'\n\
             or run `gevulot user create admin --role admin`."
        );
        info!(target: "gevulot", "no console users yet: a one-time setup token was printed on standard output");
    }

    tokio::select! {
        () = signals.recv() => {}
        Some(result) = servers.join_next() => {
            // A server stopped on its own: that is a failure of the node.
            let _ = stop.send(true);
            match result {
                Ok(Ok(())) => anyhow::bail!("a server stopped unexpectedly"),
                Ok(Err(e)) => return Err(anyhow::Error::new(e).context("a server failed")),
                Err(e) => return Err(anyhow::Error::new(e).context("a server task failed")),
            }
        }
    }
    let grace = Duration::from_secs(args.shutdown_grace);
    let running = node.drain_state().running;
    node.record(
        &app::model::Actor::named("signal"),
        app::model::AuditAction::Drain,
        None,
        Some(&format!(
            "stopping: {running} running tasks get up to {} s",
            grace.as_secs()
        )),
        true,
    )
    .await;
    if running > 0 {
        info!(target: "gevulot", running, grace_s = grace.as_secs(), "stopping: draining; running tasks get up to GEVULOT_SHUTDOWN_GRACE to finish (send the signal again to stop them now)");
    }
    let stopped = tokio::select! {
        stopped = node.stop(grace) => stopped,
        () = signals.recv() => {
            warn!(target: "gevulot", "a second signal: stopping the running tasks now");
            node.stop(Duration::ZERO).await
        }
    };
    if stopped.interrupted > 0 {
        warn!(target: "gevulot", finished = stopped.finished, interrupted = stopped.interrupted, "stopped the tasks still running after the grace period; the next start resumes them");
    } else if stopped.finished > 0 {
        info!(target: "gevulot", finished = stopped.finished, "every running task finished");
    }
    info!(target: "gevulot", "shutting down: finishing requests in flight");
    let _ = stop.send(true);
    let drain = async {
        while let Some(result) = servers.join_next().await {
            if let Ok(Err(e)) = result {
                warn!(target: "gevulot", error = %e, "a server failed while stopping");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        warn!(target: "gevulot", "requests still in flight after 30 s; stopping anyway");
    }
    drop(rpc_handle);
    node.shutdown().await;
    info!(target: "gevulot", "stopped");
    Ok(())
}

/// The largest request body the main server reads, and the largest P2P message: a transaction
/// with the largest proof (JSON numbers take up to four bytes per proof byte) and room for the rest.
fn max_request_bytes(args: &RunArgs) -> usize {
    args.max_proof_bytes
        .saturating_mul(4)
        .saturating_add(1 << 20)
}

/// How this node runs programs, from the directives: the accelerator (decided by a check and a
/// canary boot, never by `/dev/kvm` alone), the vsock transport, downloads and the pipeline's
/// limits.
async fn execution(args: &RunArgs, data: &DataDir, log_directory: &Path) -> app::node::Execution {
    let choice = app::vm::accel::AccelChoice::parse(&args.vm_accel)
        .unwrap_or(app::vm::accel::AccelChoice::Auto);
    let decision =
        app::vm::accel::decide(choice, &args.qemu_path, Path::new("/"), &data.tmp()).await;
    info!(target: "gevulot", accel = decision.accel.as_str(), reason = %decision.reason, "VM accelerator");
    let mut vsock = vsock_mode(args);
    if let app::vm::executor::VsockMode::Unavailable { reason } = &vsock {
        warn!(target: "gevulot", "{reason}");
    }
    let vm_logs = log_directory.join("vms");
    let node_uid = app::doctor::Identity::current(Path::new("/")).map_or(u32::MAX, |i| i.uid);
    let confinement = match app::vm::confine::resolve(
        Path::new("/"),
        node_uid,
        &args.confine.vm_user,
        data.root(),
        &[&data.vms(), &vm_logs],
    ) {
        Ok(c) => {
            info!(target: "gevulot", "{}", c.describe());
            c
        }
        Err(reason) => {
            // No VM starts unconfined: every task fails saying why.
            tracing::error!(target: "gevulot", "{reason}");
            vsock = app::vm::executor::VsockMode::Unavailable { reason };
            app::vm::confine::Confinement::default()
        }
    };
    app::node::Execution {
        executor: app::vm::executor::ExecutorConfig {
            qemu: args.qemu_path.clone(),
            vms_dir: data.vms(),
            log_dir: vm_logs,
            accel: decision.accel,
            vsock,
            port: args.vsock_listen_port,
            timeouts: app::vm::runner::Timeouts::default(),
            max_output_bytes: args.max_file_bytes,
            max_workspace_bytes: args.max_workspace_mb.saturating_mul(1 << 20),
            confinement,
            max_guest_message_bytes: app::vm::executor::guest_message_bytes(args.max_proof_bytes),
        },
        downloads: app::download::Limits {
            max_bytes: args.max_file_bytes,
            concurrency: usize::try_from(args.download_concurrency).unwrap_or(4),
            ..Default::default()
        },
        max_run_time: Duration::from_secs(args.max_vm_run_time),
        max_attempts: args.task_max_attempts,
        retry_backoff: Duration::from_secs(args.task_retry_delay),
        program_wait: Duration::from_secs(args.program_wait),
        per_program_limit: (args.max_tasks_per_program > 0).then_some(args.max_tasks_per_program),
    }
}

/// The vsock transport from `GEVULOT_VSOCK_MODE`, or why there is none.
fn vsock_mode(args: &RunArgs) -> app::vm::executor::VsockMode {
    use app::vm::executor::VsockMode;
    let kernel = std::path::Path::new("/dev/vhost-vsock").exists();
    if args.vsock_mode == "kernel" || (args.vsock_mode == "auto" && kernel) {
        if !kernel {
            return VsockMode::Unavailable {
                reason: "GEVULOT_VSOCK_MODE=kernel, but /dev/vhost-vsock is missing: load the module (`modprobe vhost_vsock`) or set GEVULOT_VSOCK_MODE=hybrid".into(),
            };
        }
        match app::vm::vsock::KernelVsockHub::bind(args.vsock_listen_port) {
            Ok(listener) => {
                let hub = app::vm::vsock::KernelVsockHub::default();
                let serving = hub.clone();
                tokio::spawn(async move { serving.serve(listener).await });
                return VsockMode::Kernel { hub };
            }
            Err(e) if args.vsock_mode == "kernel" => {
                return VsockMode::Unavailable {
                    reason: format!(
                        "cannot listen on vsock port {} ({e}): free the port or set GEVULOT_VSOCK_LISTEN_PORT",
                        args.vsock_listen_port
                    ),
                };
            }
            Err(e) => {
                warn!(target: "gevulot", error = %e, "cannot listen on the kernel's vsock; trying the hybrid vsock");
            }
        }
    }
    match app::doctor::find_program(&args.vsock_daemon) {
        Some(daemon) => VsockMode::Hybrid { daemon },
        None => VsockMode::Unavailable {
            reason: format!(
                "no vsock transport: /dev/vhost-vsock is missing and the hybrid vsock daemon {} was not found; load vhost_vsock, or install it (`cargo install vhost-device-vsock`) and set GEVULOT_VSOCK_DAEMON",
                args.vsock_daemon.display()
            ),
        },
    }
}

/// On a node without users, creates the first admin from GEVULOT_ADMIN_PASSWORD when set.
async fn first_admin(auth: &app::auth::Auth, args: &RunArgs) -> anyhow::Result<()> {
    let Some(password) = args.admin_password()? else {
        return Ok(());
    };
    if !auth.list_users().await?.is_empty() {
        return Ok(());
    }
    let user = auth
        .create_user(
            &args.admin_username,
            password.expose(),
            app::auth::Role::Admin,
        )
        .await
        .context("cannot create the first admin from GEVULOT_ADMIN_PASSWORD")?;
    info!(target: "gevulot", user = %user.username, "created the first admin from GEVULOT_ADMIN_PASSWORD");
    Ok(())
}

/// The base URL of this node's download server, as handed to clients and peers: the advertised
/// P2P address's IP when set, else the address the file server listens on.
fn file_base_url(advertised: Option<SocketAddr>, files: SocketAddr) -> String {
    let ip = advertised.map_or(files.ip(), |a| a.ip());
    let host = SocketAddr::new(ip, files.port());
    if ip.is_unspecified() {
        warn!(target: "gevulot", "the file server listens on {files}; set GEVULOT_P2P_ADVERTISED_LISTEN_ADDR so download URLs name a reachable address");
    }
    format!("http://{host}")
}

/// SIGINT (Ctrl-C) and SIGTERM (systemd, Podman), registered when created so that a signal
/// arriving during startup is not lost to the default action.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(check_pci_address("0000:01:00.0").is_ok());
        assert!(check_pci_address("0000:af:1f.7").is_ok());
        for bad in [
            "01:00.0",
            "0000:01:00.8",
            "0000-01-00.0",
            "0000:01:00.0 ",
            "",
        ] {
            assert!(check_pci_address(bad).is_err(), "{bad}");
        }
    }
}
