//! The operator commands other than `run`.

use app::model::AuditAction;
use std::path::Path;

use anyhow::Context;
use app::crypto::{PublicKey, SecretKey};
use app::store::{PoolOptions, Store, redact_url};

use crate::setup::open_store;

use crate::config::{
    Command, DbArgs, GenerateCommand, KeyFileArgs, PeerAction, PeerArgs, ShowCommand, TokenCommand,
    TokenCreateArgs, UserCommand, UserCreateArgs,
};

pub async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => crate::node::run(*args).await,
        Command::Migrate(args) => migrate(&args).await,
        Command::Backup(args) => crate::backup::backup(&args).await,
        Command::Restore(args) => crate::backup::restore(&args).await,
        Command::Generate(GenerateCommand::Key(args)) => generate_key(&args),
        Command::Show(ShowCommand::PublicKey(args)) => show_public_key(&args),
        Command::Peer(args) => peer(&args).await,
        Command::User(UserCommand::Create(args)) => create_user(&args).await,
        Command::User(UserCommand::List(args)) => list_users(&args).await,
        Command::Token(TokenCommand::Create(args)) => create_token(&args).await,
        Command::Gpus(args) => gpus(&args),
        Command::Doctor(args) => doctor(&args).await,
        Command::Healthcheck(args) => {
            let report = crate::http::health::probe(args.healthcheck_listen_addr).await?;
            println!("{report}");
            Ok(())
        }
    }
}

async fn migrate(args: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(args).await?;
    println!(
        "database schema is up to date ({})",
        store.backend().as_str()
    );
    store.close().await;
    Ok(())
}

fn key_file(args: &KeyFileArgs) -> anyhow::Result<std::path::PathBuf> {
    match &args.key_file {
        Some(path) => Ok(path.clone()),
        None => Ok(
            app::data_dir::DataDir::new(crate::config::resolve_data_dir(&args.data)?.path)
                .node_key(),
        ),
    }
}

fn generate_key(args: &KeyFileArgs) -> anyhow::Result<()> {
    let path = key_file(args)?;
    let key = SecretKey::generate_file(&path)?;
    eprintln!("created the node key {}", path.display());
    println!("{}", key.public_key().to_hex());
    Ok(())
}

fn show_public_key(args: &KeyFileArgs) -> anyhow::Result<()> {
    let path = key_file(args)?;
    let key = SecretKey::read_file(&path)?;
    println!("{}", key.public_key().to_hex());
    Ok(())
}

/// Records an operator command in the audit log (as `cli`, from the host); a failure to record
/// is said on standard error, the command's work stands.
async fn audit(store: &app::store::Store, action: AuditAction, target: &str, detail: &str) {
    let entry = app::model::NewAuditEntry {
        actor: app::model::Actor::cli(),
        action,
        target: Some(target.to_string()),
        detail: Some(detail.to_string()),
        ok: true,
    };
    if let Err(e) = store.append_audit(&entry).await {
        eprintln!("warning: cannot record this in the audit log: {e}");
    }
}

async fn peer(args: &PeerArgs) -> anyhow::Result<()> {
    let key = PublicKey::from_hex(args.key.trim())
        .with_context(|| format!("{:?} is not a public key", args.key))?;
    let store = open_store(&args.db).await?;
    let message = match args.action {
        PeerAction::Whitelist => {
            if store.acl_add(&key).await? {
                "whitelisted"
            } else {
                "already whitelisted"
            }
        }
        PeerAction::Deny => {
            if store.acl_remove(&key).await? {
                "removed from the whitelist"
            } else {
                "was not on the whitelist"
            }
        }
    };
    audit(&store, AuditAction::Whitelist, &key.to_hex(), message).await;
    println!("{key}: {message}");
    store.close().await;
    Ok(())
}

async fn create_user(args: &UserCreateArgs) -> anyhow::Result<()> {
    let password = match crate::config::secret(&args.password, &args.password_file)? {
        Some(p) => p.expose().to_string(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let role = app::auth::Role::parse(&args.role)
        .with_context(|| format!("{} is not a role", args.role))?;
    let store = open_store(&args.db).await?;
    let auth = app::auth::Auth::new(store.clone())?;
    let user = auth.create_user(&args.username, &password, role).await?;
    audit(
        &store,
        AuditAction::UserCreated,
        &user.username,
        user.role.as_str(),
    )
    .await;
    println!("created {} ({})", user.username, user.role);
    store.close().await;
    Ok(())
}

async fn list_users(args: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(args).await?;
    let auth = app::auth::Auth::new(store.clone())?;
    for user in auth.list_users().await? {
        println!("{}\t{}", user.username, user.role);
    }
    store.close().await;
    Ok(())
}

async fn create_token(args: &TokenCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.db).await?;
    let auth = app::auth::Auth::new(store.clone())?;
    let user = auth.user_by_name(&args.user).await?.with_context(|| {
        format!(
            "there is no user {}; create it with `gevulot user create`",
            args.user
        )
    })?;
    let token = auth.create_token(&user, &args.name).await?;
    audit(
        &store,
        AuditAction::TokenCreated,
        &args.name,
        &format!("for {}", user.username),
    )
    .await;
    println!("{token}");
    eprintln!("this token is shown only now; send it as `Authorization: Bearer <token>`");
    store.close().await;
    Ok(())
}

/// `gevulot gpus`: the inventory as the API shows it, without a database (no API decisions).
fn gpus(args: &crate::config::GpusArgs) -> anyhow::Result<()> {
    let sysfs = app::gpu::Sysfs::new(&args.sysfs_root);
    let statuses = app::gpu::pool(&sysfs, &args.gpu_devices, &[], &Default::default())?;
    let items: Vec<crate::http::gpus::GpuInfo> = statuses.iter().map(Into::into).collect();
    println!("{}", serde_json::to_string_pretty(&items)?);
    Ok(())
}

/// `gevulot doctor`.
async fn doctor(args: &crate::config::DoctorArgs) -> anyhow::Result<()> {
    use app::doctor::{Check, Host, Identity, Status};
    let identity = match &args.as_user {
        Some(name) => Identity::lookup(&args.host_root, name).with_context(|| {
            format!(
                "there is no user {name} in {}/etc/passwd",
                args.host_root.display()
            )
        })?,
        None => Identity::current(Path::new("/")).context("cannot read this process's identity")?,
    };
    let data = crate::config::resolve_data_dir(&args.db.data)?;
    let host = Host {
        root: args.host_root.clone(),
        identity,
        qemu: args.qemu_path.clone(),
        vsock_daemon: args.vsock_daemon.clone(),
        gpu_devices: args.gpu_devices.clone(),
        data_dir: data.path.clone(),
        vm_memory_mib: args
            .mem_gb
            .map_or_else(crate::setup::host_mem_mib, |g| g * 1024),
        vm_user: args.confine.vm_user.clone(),
    };
    let mut checks = tokio::task::spawn_blocking(move || host.run()).await?;
    let url = args.db.resolve_url()?;
    let shown = redact_url(url.expose());
    let db = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Store::connect(url.expose(), &PoolOptions::default()),
    )
    .await
    {
        Ok(Ok(store)) => match store.ping().await {
            Ok(()) => Check {
                name: "database".into(),
                status: Status::Pass,
                detail: format!("{shown} answers ({})", store.backend().as_str()),
                fix: None,
            },
            Err(e) => Check {
                name: "database".into(),
                status: Status::Fail,
                detail: format!("{shown}: {e}"),
                fix: Some("check that the database server runs and GEVULOT_DB_URL is right".into()),
            },
        },
        Ok(Err(e)) => Check {
            name: "database".into(),
            status: Status::Fail,
            detail: format!(
                "cannot connect to {shown}: {}",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())
            ),
            fix: Some("check that the database server runs and GEVULOT_DB_URL is right".into()),
        },
        Err(_) => Check {
            name: "database".into(),
            status: Status::Fail,
            detail: format!("{shown} did not answer within 10 s"),
            fix: Some("check the network path to the database".into()),
        },
    };
    checks.push(db);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let items: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "status": c.status.as_str(), "detail": c.detail, "fix": c.fix}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": !failed, "checks": items}))?
        );
    } else {
        for c in &checks {
            println!(
                "{:<5} {:<20} {}",
                c.status.as_str().to_uppercase(),
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("{:<5} {:<20} fix: {fix}", "", "");
            }
        }
    }
    if failed {
        anyhow::bail!("the host is not ready: fix the failed checks above");
    }
    Ok(())
}
