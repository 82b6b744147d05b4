//! Commands and configuration directives. Every directive has a `--flag` (the original's name
//! where it had one) and a `GEVULOT_*` environment variable, and shows in `gevulot run -h`.
//! Secrets (the P2P passphrase, the database URL with its password) can also come from a file
//! (`*_FILE`), and never appear in logs or error messages.

mod backup;
mod confine;
mod doors;
mod effective;
mod retention;
mod secret;
mod webhooks;

pub use backup::{BackupArgs, RestoreArgs};
pub use confine::ConfineArgs;
pub use doors::DoorArgs;
pub use effective::Setting;
pub use retention::RetentionArgs;
pub use secret::{Secret, secret};
pub use webhooks::WebhookArgs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default data directory of a system installation.
pub const SYSTEM_DATA_DIRECTORY: &str = "/var/lib/gevulot";

/// The passphrase the original used when none was configured. Anyone can join a network that
/// uses it; the node warns loudly.
pub const WELL_KNOWN_PSK_PASSPHRASE: &str = "Pack my box with five dozen liquor jugs.";

#[derive(Debug, Parser)]
#[command(
    name = "gevulot",
    version,
    about = "Gevulot prover node: accepts signed transactions, runs provers in VMs, records proofs.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to standard error: `text` (key=value, for people and
    /// journald) or `json` (one object per line, with the request id, transaction hash and task
    /// id where they apply, for log collectors).
    #[arg(long, global = true, env = "GEVULOT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Cli {
    /// The command line and `GEVULOT_*` environment, where a variable set to the empty string
    /// counts as unset (as systemd and Podman env files write an unset value: `GEVULOT_DB_URL=`).
    pub fn from_env() -> Self {
        let command = without_empty_env(<Self as clap::CommandFactory>::command());
        let matches = command.clone().get_matches();
        let mut cli =
            <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let Command::Run(args) = &mut cli.command {
            args.settings = effective::of_run(&command, &matches);
        }
        cli
    }
}

/// `command` (and its subcommands) reading no environment variable that is set but empty.
fn without_empty_env(command: clap::Command) -> clap::Command {
    let names: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.is_empty())
        })
        .map(|a| a.get_id().clone())
        .collect();
    let mut command = command;
    for name in names {
        command = command.mut_arg(name, |a| a.env(None));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, without_empty_env);
    }
    command
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node.
    Run(Box<RunArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
    /// Write a consistent copy of the node (database, node key, files) with a manifest of
    /// checksums to a directory; the node may keep running.
    Backup(BackupArgs),
    /// Bring back a backup into an empty data directory (and database), verifying every file.
    Restore(RestoreArgs),
    /// Generate things (the node key).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Show things (the node's public key).
    #[command(subcommand)]
    Show(ShowCommand),
    /// Whitelist or deny a transaction author (hex public key) in the ACL whitelist.
    Peer(PeerArgs),
    /// Probe a running node's readiness (for container health checks): exit 0 when ready.
    Healthcheck(HealthcheckArgs),
    /// Manage console users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the host's GPUs, their IOMMU groups and drivers, and what blocks passthrough (JSON).
    Gpus(GpusArgs),
    /// Check that this host is ready to run programs (KVM, vsock, VFIO binding of every GPU
    /// function, device permissions, memlock, QEMU, disk space, database). Exit 1 on a failure.
    Doctor(Box<DoctorArgs>),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check for this user (the one the node runs as) instead of the current one.
    #[arg(long)]
    pub as_user: Option<String>,
    /// Where the host's /sys, /dev, /proc and /etc are (`/`, or a mount point in a container).
    #[arg(long, env = "GEVULOT_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    #[arg(long, env = "GEVULOT_QEMU_PATH", default_value = "qemu-system-x86_64")]
    pub qemu_path: PathBuf,
    /// The hybrid vsock daemon (used when /dev/vhost-vsock is missing).
    #[arg(
        long,
        env = "GEVULOT_VSOCK_DAEMON",
        default_value = "vhost-device-vsock"
    )]
    pub vsock_daemon: PathBuf,
    #[arg(long, env = "GEVULOT_GPU_DEVICES", value_delimiter = ',')]
    pub gpu_devices: Vec<String>,
    /// Memory offered to programs, in GiB [default: all memory of the host]
    #[arg(long, env = "GEVULOT_MEM_GB")]
    pub mem_gb: Option<u64>,
    #[command(flatten)]
    pub confine: ConfineArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Where the host's sysfs is mounted.
    #[arg(long, env = "GEVULOT_SYSFS_ROOT", default_value = "/")]
    pub sysfs_root: PathBuf,
    /// GPUs configured for programs (comma-separated PCI addresses).
    #[arg(long, env = "GEVULOT_GPU_DEVICES", value_delimiter = ',')]
    pub gpu_devices: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a console user. The password is read from GEVULOT_USER_PASSWORD, from
    /// --password-file, or else from the first line of standard input.
    Create(UserCreateArgs),
    /// List console users.
    List(DbArgs),
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    pub username: String,
    /// viewer, operator or admin.
    #[arg(long, value_parser = ["viewer", "operator", "admin"], default_value = "viewer")]
    pub role: String,
    #[arg(long, env = "GEVULOT_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long, conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only once).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The user the token acts as.
    #[arg(long)]
    pub user: String,
    /// What the token is for, e.g. `ci`.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The node's health endpoint address.
    #[arg(
        long = "http-healthcheck-listen-addr",
        env = "GEVULOT_HEALTHCHECK_LISTEN_ADDR",
        default_value = "127.0.0.1:8888"
    )]
    pub healthcheck_listen_addr: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Create the node's secp256k1 keypair file (32 raw bytes, mode 0600). Refuses to overwrite.
    Key(KeyFileArgs),
}

#[derive(Debug, Subcommand)]
pub enum ShowCommand {
    /// Print the public key (130 hex characters) of a key file.
    PublicKey(KeyFileArgs),
}

#[derive(Debug, Args)]
pub struct KeyFileArgs {
    /// Key file [default: <data directory>/node.key]
    #[arg(long, env = "GEVULOT_NODE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerAction {
    /// Add the key to the whitelist.
    Whitelist,
    /// Remove the key from the whitelist.
    Deny,
}

#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The author's public key: 130 hex characters (65-byte uncompressed form).
    pub key: String,
    pub action: PeerAction,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Where images, transaction files and logs live [default: /var/lib/gevulot, or
    /// $XDG_DATA_HOME/gevulot (~/.local/share/gevulot) when that cannot be used by this user]
    #[arg(long, env = "GEVULOT_DATA_DIRECTORY")]
    pub data_directory: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Database URL: postgres://user:password@host/db (production) or sqlite:///path/file.db
    /// [default: SQLite in the data directory]
    #[arg(long, env = "GEVULOT_DB_URL", hide_env_values = true)]
    pub db_url: Option<String>,
    /// Read the database URL from this file instead (keeps the password out of the environment).
    #[arg(long, env = "GEVULOT_DB_URL_FILE", conflicts_with = "db_url")]
    pub db_url_file: Option<PathBuf>,
    /// Maximum pooled database connections; the batch writers keep theirs besides (two on
    /// PostgreSQL, one on SQLite).
    #[arg(long, env = "GEVULOT_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AclMode {
    /// Whitelist when a whitelist URL is configured, open otherwise.
    Auto,
    /// Accept transactions from any author with a valid signature.
    Open,
    /// Accept only authors on the whitelist (see `gevulot peer`).
    Whitelist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// QEMU/KVM virtual machines.
    Qemu,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Main HTTP server: JSON-RPC, REST, OpenAPI, console.
    #[arg(
        long,
        env = "GEVULOT_JSON_RPC_LISTEN_ADDR",
        default_value = "127.0.0.1:9944"
    )]
    pub json_rpc_listen_addr: SocketAddr,

    /// File download port, bound on the P2P listen address's IP.
    #[arg(
        long = "http-download-port",
        env = "GEVULOT_HTTP_PORT",
        default_value_t = 9995
    )]
    pub http_port: u16,

    /// P2P listen address.
    #[arg(
        long,
        env = "GEVULOT_P2P_LISTEN_ADDR",
        default_value = "127.0.0.1:9999"
    )]
    pub p2p_listen_addr: SocketAddr,

    /// Public P2P address behind NAT; also the host of download URLs this node hands out.
    #[arg(long, env = "GEVULOT_P2P_ADVERTISED_LISTEN_ADDR")]
    pub p2p_advertised_listen_addr: Option<SocketAddr>,

    /// Comma-separated bootstrap peers (host:port).
    #[arg(
        long = "p2p-discovery-addrs",
        env = "GEVULOT_P2P_DISCOVERY_ADDR",
        value_delimiter = ','
    )]
    pub p2p_discovery_addrs: Vec<String>,

    /// Seconds between catch-up rounds: every connected peer is asked for what it stored since
    /// the last round (gossip that was missed arrives this way; a peer that connects is asked at
    /// once).
    #[arg(long, env = "GEVULOT_P2P_SYNC_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub p2p_sync_interval_secs: u64,

    /// Seconds between this node's capacity announcements (resources, GPUs, what is free, its
    /// queue); a node silent for three intervals counts as gone.
    #[arg(long, env = "GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub p2p_announce_interval_secs: u64,

    /// Newly stored transactions waiting to be gossiped at most; in a burst beyond it they are
    /// not gossiped (counted as dropped) and reach peers through the catch-up instead.
    #[arg(long, env = "GEVULOT_P2P_OUTBOX_CAPACITY", default_value_t = app::intake::OUTBOX_CAPACITY as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub p2p_outbox_capacity: u64,

    /// How many different nodes prove each step of a Run (1: each Run is executed once in the
    /// network; 2 or more: independent proofs). Every node of a network should say the same.
    #[arg(long, env = "GEVULOT_PLACEMENT_REDUNDANCY", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub placement_redundancy: u64,

    /// Private network passphrase (never logged) [default: the original's well-known
    /// passphrase, with a warning].
    #[arg(
        long = "p2p-psk-passphrase",
        env = "GEVULOT_PSK_PASSPHRASE",
        hide_env_values = true
    )]
    pub psk_passphrase: Option<String>,

    /// Read the private network passphrase from this file instead.
    #[arg(
        long = "p2p-psk-passphrase-file",
        env = "GEVULOT_PSK_PASSPHRASE_FILE",
        conflicts_with = "psk_passphrase"
    )]
    pub psk_passphrase_file: Option<PathBuf>,

    /// URL of the whitelist of authors and peers (one hex public key per line), fetched on start
    /// and every 10 minutes; the published list replaces the stored one.
    #[arg(long, env = "GEVULOT_ACL_WHITELIST_URL")]
    pub acl_whitelist_url: Option<String>,

    /// Who may author transactions and connect as a peer.
    #[arg(long, env = "GEVULOT_ACL_MODE", value_enum, default_value_t = AclMode::Auto)]
    pub acl_mode: AclMode,

    /// Node keypair file, created on first run when missing [default: <data directory>/node.key]
    #[arg(long, env = "GEVULOT_NODE_KEY_FILE")]
    pub node_key_file: Option<PathBuf>,

    /// Accept and relay transactions, but never execute programs.
    #[arg(long, env = "GEVULOT_NODE_NO_EXECUTION")]
    pub no_execution: bool,

    /// Execution backend.
    #[arg(long, env = "GEVULOT_PROVIDER", value_enum, default_value_t = Provider::Qemu)]
    pub provider: Provider,

    /// QEMU binary.
    #[arg(long, env = "GEVULOT_QEMU_PATH", default_value = "qemu-system-x86_64")]
    pub qemu_path: PathBuf,

    /// How VMs execute: `kvm`, `tcg` (software emulation), or `auto` (KVM when a capability
    /// check and a canary boot pass, else TCG, with the reason in the log).
    #[arg(long, env = "GEVULOT_VM_ACCEL", value_parser = ["auto", "kvm", "tcg"], default_value = "auto")]
    pub vm_accel: String,

    /// vsock port of the node's guest service.
    #[arg(long, env = "GEVULOT_VSOCK_LISTEN_PORT", default_value_t = 8080)]
    pub vsock_listen_port: u32,

    /// How the node reaches its guests: `kernel` (/dev/vhost-vsock), `hybrid` (one
    /// `vhost-device-vsock` per VM, over Unix sockets), or `auto` (kernel when /dev/vhost-vsock
    /// exists, else hybrid).
    #[arg(long, env = "GEVULOT_VSOCK_MODE", value_parser = ["auto", "kernel", "hybrid"], default_value = "auto")]
    pub vsock_mode: String,

    /// The hybrid vsock daemon (`vhost-device-vsock`, from crates.io).
    #[arg(
        long,
        env = "GEVULOT_VSOCK_DAEMON",
        default_value = "vhost-device-vsock"
    )]
    pub vsock_daemon: PathBuf,

    /// The longest a program's VM may run, in seconds; it is stopped then and its task ends
    /// `timed_out`.
    #[arg(long, env = "GEVULOT_MAX_VM_RUN_TIME", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_vm_run_time: u64,

    /// Attempts of a task whose failures are retryable (a VM crash, a boot or download failure).
    #[arg(long, env = "GEVULOT_TASK_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub task_max_attempts: u32,

    /// Seconds before a failed task's first retry; each next retry waits twice as long.
    #[arg(long, env = "GEVULOT_TASK_RETRY_DELAY", default_value_t = 5)]
    pub task_retry_delay: u64,

    /// How long, in seconds, a Run waits for a program that is not deployed yet.
    #[arg(long, env = "GEVULOT_PROGRAM_WAIT", default_value_t = 3600)]
    pub program_wait: u64,

    /// At most this many tasks of one program run at a time (0: no limit).
    #[arg(long, env = "GEVULOT_MAX_TASKS_PER_PROGRAM", default_value_t = 0)]
    pub max_tasks_per_program: usize,

    /// Largest file the node takes in: a downloaded image or input, or a program's output.
    #[arg(long, env = "GEVULOT_MAX_FILE_BYTES", default_value_t = 32 * 1024 * 1024 * 1024)]
    pub max_file_bytes: u64,

    /// The most a program may write to its VM's /workspace, in MiB; past it the VM is stopped
    /// and the task fails.
    #[arg(long, env = "GEVULOT_MAX_WORKSPACE_MB", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_workspace_mb: u64,

    /// Free space to keep on the data filesystem, in MiB: below it no download or VM starts
    /// (tasks wait) and the node is not ready; 0 = no floor.
    #[arg(long, env = "GEVULOT_MIN_FREE_MB", default_value_t = 2048)]
    pub min_free_mb: u64,

    /// Downloads at the same time.
    #[arg(long, env = "GEVULOT_DOWNLOAD_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub download_concurrency: u64,

    /// CPUs offered to programs [default: all CPUs of the host]
    #[arg(long = "num-cpus", env = "GEVULOT_CPUS")]
    pub cpus: Option<u64>,

    /// Memory offered to programs, in GiB [default: all memory of the host]
    #[arg(long, env = "GEVULOT_MEM_GB")]
    pub mem_gb: Option<u64>,

    /// Comma-separated PCI addresses of GPUs for programs (e.g. 0000:01:00.0).
    #[arg(long, env = "GEVULOT_GPU_DEVICES", value_delimiter = ',')]
    pub gpu_devices: Vec<String>,

    /// Where the host's sysfs is mounted (GPU inventory and checks); `/` on the host, or the
    /// mount point of the host's /sys parent inside a container.
    #[arg(long, env = "GEVULOT_SYSFS_ROOT", default_value = "/")]
    pub sysfs_root: PathBuf,

    /// Liveness and readiness endpoints.
    #[arg(
        long = "http-healthcheck-listen-addr",
        env = "GEVULOT_HEALTHCHECK_LISTEN_ADDR",
        default_value = "127.0.0.1:8888"
    )]
    pub healthcheck_listen_addr: SocketAddr,

    /// Prometheus metrics endpoint [default: disabled]
    #[arg(long = "http-metrics-listen-addr", env = "GEVULOT_METRICS_LISTEN_ADDR")]
    pub metrics_listen_addr: Option<SocketAddr>,

    /// Per-VM logs [default: <data directory>/log]
    #[arg(long, env = "GEVULOT_LOG_DIRECTORY")]
    pub log_directory: Option<PathBuf>,

    /// Mark the console session cookie `Secure`: set when the node is reached over HTTPS.
    #[arg(long, env = "GEVULOT_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Username of the first admin created from GEVULOT_ADMIN_PASSWORD.
    #[arg(long, env = "GEVULOT_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,

    /// On a node without users, create the first admin with this password (never logged);
    /// without it, the node prints a one-time setup link instead.
    #[arg(long, env = "GEVULOT_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Read the first admin's password from this file instead.
    #[arg(
        long,
        env = "GEVULOT_ADMIN_PASSWORD_FILE",
        conflicts_with = "admin_password"
    )]
    pub admin_password_file: Option<PathBuf>,

    /// Largest file an operator may upload, in bytes.
    #[arg(long, env = "GEVULOT_MAX_UPLOAD_BYTES", default_value_t = 32 * 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Largest proof, verification or proof key accepted in a transaction, in bytes.
    #[arg(long, env = "GEVULOT_MAX_PROOF_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_proof_bytes: usize,

    /// Seconds running tasks get to finish when the node stops (`SIGTERM`, `SIGINT`): it drains
    /// (no new task starts), waits up to this long, then stops the VMs left, whose tasks the
    /// next start resumes. Give the container manager's stop timeout more than this.
    #[arg(long, env = "GEVULOT_SHUTDOWN_GRACE", default_value_t = 120)]
    pub shutdown_grace: u64,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub doors: DoorArgs,

    #[command(flatten)]
    pub confine: ConfineArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    /// Every directive above with its value and source, for the settings page (filled by
    /// [`Cli::from_env`]).
    #[arg(skip)]
    pub settings: Vec<Setting>,
}

/// Where the data directory is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    pub path: PathBuf,
    /// Set when the system default could not be used; says why.
    pub fallback_reason: Option<String>,
}

/// Resolves the data directory: the configured one, else `/var/lib/gevulot` when it exists and is
/// writable or can be created, else the user's data directory. Creates the directory.
pub fn resolve_data_dir(args: &DataDirArgs) -> anyhow::Result<DataDir> {
    resolve_data_dir_with(args, Path::new(SYSTEM_DATA_DIRECTORY), user_data_dir())
}

fn user_data_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("gevulot"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/gevulot"))
}

/// Whether `dir` can be created (if missing) and written by this process.
fn usable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write to it: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub(crate) fn resolve_data_dir_with(
    args: &DataDirArgs,
    system: &Path,
    user: Option<PathBuf>,
) -> anyhow::Result<DataDir> {
    if let Some(path) = &args.data_directory {
        usable(path).map_err(|e| {
            anyhow::anyhow!(
                "the data directory {} is not usable ({e}); create it and give this user write access, \
                 or set GEVULOT_DATA_DIRECTORY to another directory",
                path.display()
            )
        })?;
        return Ok(DataDir {
            path: path.clone(),
            fallback_reason: None,
        });
    }
    match usable(system) {
        Ok(()) => Ok(DataDir {
            path: system.to_path_buf(),
            fallback_reason: None,
        }),
        Err(why) => {
            let Some(user) = user else {
                bail!(
                    "the data directory {} is not usable ({why}) and there is no HOME to fall back to; \
                     set GEVULOT_DATA_DIRECTORY",
                    system.display()
                );
            };
            usable(&user).map_err(|e| {
                anyhow::anyhow!(
                    "neither {} ({why}) nor {} ({e}) can be used as the data directory; set GEVULOT_DATA_DIRECTORY",
                    system.display(),
                    user.display()
                )
            })?;
            Ok(DataDir {
                path: user,
                fallback_reason: Some(format!(
                    "the default data directory {} is not usable ({why})",
                    system.display()
                )),
            })
        }
    }
}

impl DbArgs {
    /// The database URL (a secret: it may hold a password) and the data directory it defaults into.
    pub fn resolve(&self) -> anyhow::Result<(Secret, DataDir)> {
        let data = resolve_data_dir(&self.data)?;
        let url = match self.url()? {
            Some(url) => url,
            None => Secret(format!(
                "sqlite://{}",
                app::data_dir::DataDir::new(&data.path).database().display()
            )),
        };
        Ok((url, data))
    }

    /// The database URL for a command that needs only the database: the configured one, else
    /// SQLite in the (resolved and created) data directory.
    pub fn resolve_url(&self) -> anyhow::Result<Secret> {
        match self.url()? {
            Some(url) => Ok(url),
            None => Ok(self.resolve()?.0),
        }
    }

    fn url(&self) -> anyhow::Result<Option<Secret>> {
        secret(&self.db_url, &self.db_url_file)
    }
}

impl RunArgs {
    pub fn psk_passphrase(&self) -> anyhow::Result<Option<Secret>> {
        secret(&self.psk_passphrase, &self.psk_passphrase_file)
    }

    pub fn admin_password(&self) -> anyhow::Result<Option<Secret>> {
        secret(&self.admin_password, &self.admin_password_file)
    }
}

#[cfg(test)]
mod tests {
    use super::secret::read_secret_file;
    use super::*;

    #[test]
    fn falls_back_when_the_system_directory_is_unusable() {
        let tmp = tempfile::tempdir().expect("tmp");
        // A path under a regular file can never be created.
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, b"").expect("write");
        let system = blocker.join("gevulot");
        let user = tmp.path().join("home/.local/share/gevulot");
        let args = DataDirArgs {
            data_directory: None,
        };
        let dir = resolve_data_dir_with(&args, &system, Some(user.clone())).expect("fallback");
        assert_eq!(dir.path, user);
        assert!(
            dir.fallback_reason
                .expect("reason")
                .contains("cannot create")
        );
        assert!(user.is_dir());
        // The system directory is used when it works.
        let good = tmp.path().join("var/lib/gevulot");
        let dir = resolve_data_dir_with(&args, &good, Some(user)).expect("system");
        assert_eq!((dir.path, dir.fallback_reason), (good, None));
    }

    #[test]
    fn explicit_unusable_directory_is_an_error_with_the_fix() {
        let tmp = tempfile::tempdir().expect("tmp");
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, b"").expect("write");
        let args = DataDirArgs {
            data_directory: Some(blocker.join("x")),
        };
        let err = resolve_data_dir_with(&args, tmp.path(), None).expect_err("error");
        assert!(err.to_string().contains("GEVULOT_DATA_DIRECTORY"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn secret_files_are_trimmed_and_named_in_errors() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("psk");
        std::fs::write(&f, "correct horse\n").expect("write");
        assert_eq!(
            read_secret_file(&f).expect("read").expose(),
            "correct horse"
        );
        let missing = tmp.path().join("missing");
        let err = read_secret_file(&missing).expect_err("missing");
        assert!(err.to_string().contains("missing"));
    }
}
