//! Test support shared by the workspace.
//!
//! - [`postgres_url`]: a fresh, empty PostgreSQL database for one test. It uses the server named
//!   by `GEVULOT_TEST_DB_URL` when set; otherwise it starts a throwaway cluster for this test
//!   process from `/usr/lib/postgresql/15/bin` (or `GEVULOT_TEST_PG_BIN`), initialised once per
//!   machine from a cached template, and stopped by a watcher when the process exits.
//!   A test that cannot get a database fails with the reason; it never skips.
//! - [`original_vectors`]: the test vectors produced by the original node.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use sqlx::Connection;

/// The original node's test vectors (`fixtures/original-vectors.json`).
pub fn original_vectors() -> Vec<serde_json::Value> {
    let text = include_str!("../fixtures/original-vectors.json");
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => panic!("fixtures/original-vectors.json is not a JSON array"),
    }
}

/// The vector named `name`.
pub fn vector(name: &str) -> serde_json::Value {
    original_vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no test vector named {name}"))
}

/// A URL for a new SQLite database file inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("gevulot.db").display())
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

/// A running PostgreSQL cluster owned by this test process.
#[derive(Debug)]
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:<port>`, without a database name.
    pub base_url: String,
    pub data_dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path, tool: &str, root: bool) -> Command {
    let path = bin.join(tool);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Cluster {
    fn start() -> Result<Cluster> {
        let bin = PathBuf::from(
            std::env::var("GEVULOT_TEST_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string()),
        );
        if !bin.join("initdb").exists() {
            bail!(
                "PostgreSQL server binaries not found in {} (install postgresql-15, set GEVULOT_TEST_PG_BIN, \
                 or point GEVULOT_TEST_DB_URL at a server)",
                bin.display()
            );
        }
        let root = is_root();
        let tmp = std::env::temp_dir();
        // One template per machine, initialised under a lock; every process copies it.
        // One template per server build (the binaries' path names it).
        let tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bin.hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let template = tmp.join(format!("gevulot-test-pg-template-{tag}"));
        let lock_path = tmp.join(format!("gevulot-test-pg-template-{tag}.lock"));
        let lock = std::fs::File::create(&lock_path).context("cannot create the template lock")?;
        lock.lock().context("cannot lock the template")?;
        if !template.join("ready").exists() {
            let _ = std::fs::remove_dir_all(&template);
            std::fs::create_dir_all(&template)?;
            if root {
                run(
                    {
                        let mut c = Command::new("chown");
                        c.arg("postgres:postgres").arg(&template);
                        c
                    },
                    "chown",
                )?;
            }
            let mut initdb = pg_command(&bin, "initdb", root);
            initdb.arg("-D").arg(&template).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ]);
            run(initdb, "initdb")?;
            std::fs::write(template.join("ready"), b"")?;
        }
        let data_dir = tmp.join(format!("gevulot-test-pg-{}", random_suffix()));
        run(
            {
                let mut c = Command::new("cp");
                c.arg("-a").arg(&template).arg(&data_dir);
                c
            },
            "copying the template cluster",
        )?;
        drop(lock);
        let _ = std::fs::remove_file(data_dir.join("ready"));
        let port = free_port()?;
        let cluster = Cluster {
            base_url: format!("postgres://postgres@127.0.0.1:{port}"),
            data_dir,
            port,
            bin,
        };
        cluster.pg_ctl_start()?;
        cluster.watch_for_exit(root)?;
        Ok(cluster)
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut start = pg_command(&self.bin, "pg_ctl", is_root());
        start
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {}",
                self.port,
                self.data_dir.display()
            ))
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start")
    }

    /// Stops the server (fast shutdown) until [`Cluster::resume`] starts it again.
    pub fn pause(&self) -> Result<()> {
        let mut stop = pg_command(&self.bin, "pg_ctl", is_root());
        stop.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop")
    }

    /// Starts the server again after [`Cluster::pause`], on the same port.
    pub fn resume(&self) -> Result<()> {
        self.pg_ctl_start()
    }

    /// A watcher process stops the server and removes its directory once this process is gone.
    fn watch_for_exit(&self, root: bool) -> Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = if root { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {as_user}{pg_ctl} -D {dir} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            dir = self.data_dir.display(),
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        cmd.spawn().context("cannot start the cluster watcher")?;
        Ok(())
    }
}

impl Cluster {
    /// One of the cluster's own client tools (`pg_dump`, `pg_restore`), of its version.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// CPU seconds the server's processes have used so far (Linux `/proc`): the postmaster with
    /// the children it has reaped, and its children alive now. For benchmarks that count the
    /// database's CPU next to the node's; `None` where it cannot be read.
    pub fn server_cpu_seconds(&self) -> Option<f64> {
        /// `/proc`'s clock ticks per second (`USER_HZ`, 100 wherever Linux runs this).
        const TICKS: f64 = 100.0;
        // The fields after the command name: state, ppid, …; utime, stime, cutime, cstime are
        // the 12th to 15th of them.
        let fields = |pid: u64| -> Option<Vec<u64>> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            Some(
                after
                    .split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect(),
            )
        };
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let postmaster: u64 = pid_file.lines().next()?.trim().parse().ok()?;
        let mut ticks: u64 = fields(postmaster)?.get(11..15)?.iter().sum();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(f) = fields(pid)
                && f.get(1) == Some(&postmaster)
            {
                ticks += f.get(11..13).map_or(0, |t| t.iter().sum());
            }
        }
        Some(ticks as f64 / TICKS)
    }
}

/// The throwaway cluster of this process (started on first use).
pub fn cluster() -> Result<&'static Cluster> {
    CLUSTER
        .get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("cannot start a throwaway PostgreSQL cluster: {e}"))
}

/// A fresh, empty database for one test, as a URL.
pub async fn postgres_url() -> Result<String> {
    match std::env::var("GEVULOT_TEST_DB_URL") {
        Ok(url) if !url.is_empty() => create_database(&url).await,
        _ => Ok(own_cluster_database().await?.1),
    }
}

/// A fresh database on this process's own cluster (whatever `GEVULOT_TEST_DB_URL` says), for
/// tests that stop and start the server.
pub async fn own_cluster_database() -> Result<(&'static Cluster, String)> {
    let cluster = tokio::task::spawn_blocking(cluster)
        .await
        .context("cluster start panicked")??;
    let url = create_database(&format!("{}/postgres", cluster.base_url)).await?;
    Ok((cluster, url))
}

async fn create_database(admin_url: &str) -> Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot connect to the test PostgreSQL server at {admin_url}"))?;
    let name = format!("gevulot_test_{}", random_suffix());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .context("cannot create a test database")?;
    admin.close().await.ok();
    let mut url = url_without_database(admin_url);
    url.push('/');
    url.push_str(&name);
    Ok(url)
}

fn url_without_database(url: &str) -> String {
    // postgres://user@host:port/db?params → postgres://user@host:port
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

/// A temporary directory that is removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gevulot-test-")
        .tempdir()
        .expect("a temporary directory can be created")
}

/// VM test fixtures: Debian's kernel, its modules and the static guest binaries, prepared by
/// `scripts/build-vm-fixtures` under the workspace's `target/`.
pub mod bench;

pub mod vm {
    use std::path::{Path, PathBuf};

    #[derive(Debug, Clone)]
    pub struct Fixtures {
        pub vmlinux: PathBuf,
        pub modules: PathBuf,
        pub modules_list: String,
        /// Directory of `gevulot-agent`, `test-prover`, `test-verifier`.
        pub guest_bin: PathBuf,
    }

    fn target() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
    }

    /// The fixtures, or `None` (with a message) when they were not built; in CI (`CI` set) a
    /// missing fixture fails the test instead.
    pub fn fixtures() -> Option<Fixtures> {
        let base = target().join("vm-fixtures/current");
        let guest_bin = target().join("guest/x86_64-unknown-linux-gnu/release");
        let fx = Fixtures {
            vmlinux: base.join("vmlinux"),
            modules: base.join("modules"),
            modules_list: std::fs::read_to_string(base.join("modules.list")).unwrap_or_default(),
            guest_bin,
        };
        let ready = fx.vmlinux.is_file()
            && !fx.modules_list.is_empty()
            && fx.guest_bin.join("gevulot-agent").is_file()
            && fx.guest_bin.join("test-prover").is_file();
        if !ready {
            assert!(
                std::env::var("CI").is_err(),
                "the VM fixtures are missing; scripts/test-all builds them (scripts/build-vm-fixtures)"
            );
            eprintln!("skipping: run scripts/build-vm-fixtures to build the VM fixtures");
            return None;
        }
        Some(fx)
    }

    /// A kernel-bundle program image (a tar archive: `vmlinux`, `initrd.img`, `cmdline`) made with
    /// the system's `tar`.
    pub fn kernel_bundle(
        fx: &Fixtures,
        initrd: &[u8],
        cmdline: &str,
        out: &Path,
    ) -> std::io::Result<()> {
        let dir = out.with_extension("parts");
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("vmlinux"));
        std::os::unix::fs::symlink(&fx.vmlinux, dir.join("vmlinux"))?;
        std::fs::write(dir.join("initrd.img"), initrd)?;
        std::fs::write(dir.join("cmdline"), cmdline)?;
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-chf"])
            .arg(out)
            .args(["vmlinux", "initrd.img", "cmdline"])
            .status()?;
        std::fs::remove_dir_all(&dir)?;
        if !status.success() {
            return Err(std::io::Error::other("tar failed"));
        }
        Ok(())
    }

    /// Looks up a program on PATH; in CI its absence fails the test, elsewhere it is reported and
    /// the test skips.
    pub fn require(name: &str) -> Option<PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "{name} is required in CI (scripts/test-all installs it)"
            );
            eprintln!("skipping: {name} is not installed (scripts/test-all installs it)");
        }
        found
    }

    /// A raw bootable disk image (the original's image format): a FAT file system holding the
    /// compressed kernel, `initrd`, and syslinux as its boot loader, booted by the firmware.
    /// Built with Debian's dosfstools, mtools and syslinux, without mounting anything.
    pub fn raw_disk(
        fx: &Fixtures,
        initrd: &Path,
        cmdline: &str,
        out: &Path,
    ) -> std::io::Result<()> {
        let run = |cmd: &mut std::process::Command| -> std::io::Result<()> {
            let o = cmd.output()?;
            if o.status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{cmd:?} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                )))
            }
        };
        let vmlinuz = fx.vmlinux.with_file_name("vmlinuz");
        let size =
            std::fs::metadata(&vmlinuz)?.len() + std::fs::metadata(initrd)?.len() + (8 << 20);
        std::fs::File::create(out)?.set_len(size.next_multiple_of(1 << 20))?;
        run(std::process::Command::new("mkfs.vfat").arg(out))?;
        let dir = out.with_extension("files");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("syslinux.cfg"),
            format!(
                "DEFAULT gevulot\nPROMPT 0\nTIMEOUT 0\nLABEL gevulot\n  KERNEL vmlinuz\n  APPEND initrd=initrd console=ttyS0 panic=-1 {cmdline}\n"
            ),
        )?;
        for (src, name) in [
            (vmlinuz, "vmlinuz"),
            (initrd.to_path_buf(), "initrd"),
            (dir.join("syslinux.cfg"), "syslinux.cfg"),
        ] {
            run(std::process::Command::new("mcopy")
                .arg("-i")
                .arg(out)
                .arg(src)
                .arg(format!("::{name}")))?;
        }
        run(std::process::Command::new("syslinux")
            .arg("--install")
            .arg(out))?;
        std::fs::remove_dir_all(dir)
    }

    /// A `newc` cpio archive (what the kernel unpacks as its initramfs).
    #[derive(Debug, Default)]
    pub struct Cpio {
        out: Vec<u8>,
        ino: u32,
    }

    impl Cpio {
        fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
            self.ino += 1;
            let header = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                self.ino,
                mode,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                rdev.0,
                rdev.1,
                name.len() + 1,
                0
            );
            self.out.extend_from_slice(header.as_bytes());
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(0);
            self.pad();
            self.out.extend_from_slice(data);
            self.pad();
        }

        fn pad(&mut self) {
            while !self.out.len().is_multiple_of(4) {
                self.out.push(0);
            }
        }

        pub fn dir(&mut self, name: &str) {
            self.entry(name, 0o040755, &[], (0, 0));
        }

        pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
            self.entry(name, 0o100000 | mode, data, (0, 0));
        }

        pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
            self.entry(name, 0o020600, &[], (major, minor));
        }

        pub fn finish(mut self) -> Vec<u8> {
            self.entry("TRAILER!!!", 0, &[], (0, 0));
            self.out
        }
    }

    /// The initramfs of a test program image: the agent as `/init`, the test programs under
    /// `/bin`, the kernel modules and their order.
    pub fn initramfs(fx: &Fixtures) -> std::io::Result<Vec<u8>> {
        let mut cpio = Cpio::default();
        for dir in [
            "dev",
            "proc",
            "sys",
            "workspace",
            "bin",
            "lib",
            "lib/modules",
        ] {
            cpio.dir(dir);
        }
        cpio.char_device("dev/console", 5, 1);
        cpio.file(
            "init",
            0o755,
            &std::fs::read(fx.guest_bin.join("gevulot-agent"))?,
        );
        for program in ["test-prover", "test-verifier", "test-crash", "test-hostile"] {
            cpio.file(
                &format!("bin/{program}"),
                0o755,
                &std::fs::read(fx.guest_bin.join(program))?,
            );
        }
        for module in fx.modules_list.lines().filter(|l| !l.is_empty()) {
            cpio.file(
                &format!("lib/modules/{module}"),
                0o644,
                &std::fs::read(fx.modules.join(module))?,
            );
        }
        cpio.file("modules.list", 0o644, fx.modules_list.as_bytes());
        Ok(cpio.finish())
    }
}
