//! Local PostgreSQL from the Debian packages: a throw-away cluster under target/local.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::unistd::{User, geteuid};

use crate::paths::Paths;
use crate::{probe, process};

pub const ADDR: &str = "127.0.0.1:55432";
const PORT: u16 = 55432;
const PACKAGES_ROOT: &str = "/usr/lib/postgresql";
const OS_USER: &str = "postgres";
/// Unix socket paths are capped at 107 bytes including the `.s.PGSQL.<port>` file name.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Connection URL for `database` on the local cluster (trust auth, no password).
pub fn url(database: &str) -> String {
    format!("postgres://postgres@{ADDR}/{database}")
}

/// Starts the local cluster unless something already answers on its port.
/// Returns whether this call started it.
pub fn ensure(paths: &Paths) -> Result<bool> {
    if probe::tcp_open(ADDR) {
        eprintln!("postgres: reusing {ADDR}");
        return Ok(false);
    }
    let server = Server::locate(paths, true)?;
    server.prepare_dirs(paths)?;
    server.init_cluster(paths)?;
    if server.status_running()? {
        // A postmaster of ours is alive but not accepting yet (still starting or
        // recovering): wait for it rather than racing a second start.
        eprintln!("postgres: waiting for the running instance");
        probe::wait_until("postgres", Duration::from_secs(60), || {
            Ok(probe::tcp_open(ADDR))
        })?;
        return Ok(false);
    }
    server.start(paths)?;
    eprintln!("postgres: started on {ADDR}");
    Ok(true)
}

/// `pg_ctl stop -m fast` when our cluster runs; quiet success when it does not.
pub fn stop(paths: &Paths) -> Result<()> {
    let data = data_dir(paths);
    if !data.join("postmaster.pid").exists() {
        eprintln!("postgres: not running");
        return Ok(());
    }
    let server = Server::locate(paths, false)?;
    if !server.status_running()? {
        eprintln!("postgres: not running");
        return Ok(());
    }
    let mut cmd = server.command("pg_ctl");
    cmd.arg("-D")
        .arg(&data)
        .args(["-m", "fast", "-w", "-t", "60", "stop"]);
    process::output(&mut cmd)?;
    eprintln!("postgres: stopped");
    Ok(())
}

/// Creates `database` on the cluster behind `admin_url` unless it exists.
pub fn create_database_if_missing(admin_url: &str, database: &str) -> Result<()> {
    let exists = psql(
        admin_url,
        &[format!(
            "SELECT 1 FROM pg_database WHERE datname = {}",
            quote_literal(database)
        )],
    )?;
    if exists.trim() != "1" {
        psql(
            admin_url,
            &[format!("CREATE DATABASE {}", quote_ident(database))],
        )?;
        eprintln!("postgres: created database {database}");
    }
    Ok(())
}

/// Drops `database` (disconnecting its sessions) if it exists.
pub fn drop_database(admin_url: &str, database: &str) -> Result<()> {
    psql(
        admin_url,
        &[format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(database)
        )],
    )?;
    Ok(())
}

/// Drops `test_%` databases left behind by interrupted test runs (tests create one
/// database each and normally drop it themselves).
pub fn drop_test_databases(admin_url: &str) -> Result<()> {
    let listed = psql(
        admin_url,
        &["SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'".to_owned()],
    )?;
    let names: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let drops: Vec<String> = names
        .iter()
        .map(|name| format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .collect();
    psql(admin_url, &drops)?;
    eprintln!(
        "postgres: dropped {} leftover test database(s)",
        names.len()
    );
    Ok(())
}

fn psql(url: &str, statements: &[String]) -> Result<String> {
    let psql = process::require_program(
        "psql",
        "install the PostgreSQL client (apt-get install postgresql-client)",
    )?;
    let mut cmd = Command::new(psql);
    cmd.arg(url)
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]);
    for statement in statements {
        cmd.arg("-c").arg(statement);
    }
    process::output(&mut cmd)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn pg_dir(paths: &Paths) -> PathBuf {
    paths.local.join("postgres")
}

fn data_dir(paths: &Paths) -> PathBuf {
    pg_dir(paths).join("data")
}

struct Server {
    bin: PathBuf,
    major: u32,
    /// PostgreSQL refuses to run as root, so as root every server command runs as this
    /// unprivileged account via runuser.
    run_as: Option<User>,
    data: PathBuf,
    work_dir: PathBuf,
}

impl Server {
    fn locate(paths: &Paths, may_install: bool) -> Result<Self> {
        let root = geteuid().is_root();
        let (bin, major) = match find_binaries() {
            Some(found) => found,
            None if may_install && root => {
                apt_install_postgresql()?;
                find_binaries().context(
                    "PostgreSQL still missing after apt-get install postgresql: check the apt output",
                )?
            }
            None => bail!(
                "PostgreSQL server not found in {PACKAGES_ROOT}/<version>/bin: install it \
                 (sudo apt-get install postgresql)"
            ),
        };
        let run_as = if root {
            process::require_program("runuser", "install util-linux (apt-get install util-linux)")?;
            Some(server_account()?)
        } else {
            None
        };
        Ok(Self {
            bin,
            major,
            run_as,
            data: data_dir(paths),
            work_dir: pg_dir(paths),
        })
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", &user.name, "--"]).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        // A cwd the server account can enter avoids "could not change directory" noise.
        cmd.current_dir(&self.work_dir);
        cmd
    }

    fn prepare_dirs(&self, paths: &Paths) -> Result<()> {
        let socket_dir = self.socket_dir();
        for dir in [&self.data, &socket_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        let log = paths.log("postgres");
        if !log.exists() {
            std::fs::write(&log, "")?;
        }
        if let Some(user) = &self.run_as {
            let (uid, gid) = (Some(user.uid.as_raw()), Some(user.gid.as_raw()));
            for path in [&self.data, &socket_dir, &log] {
                std::os::unix::fs::chown(path, uid, gid)
                    .with_context(|| format!("could not chown {} to {OS_USER}", path.display()))?;
            }
            make_traversable(&self.work_dir)?;
        }
        // initdb and the postmaster insist on a private data directory.
        std::fs::set_permissions(&self.data, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn socket_dir(&self) -> PathBuf {
        self.work_dir.join("run")
    }

    fn init_cluster(&self, paths: &Paths) -> Result<()> {
        let version_file = self.data.join("PG_VERSION");
        if let Ok(version) = std::fs::read_to_string(&version_file) {
            let version = version.trim();
            if version != self.major.to_string() {
                bail!(
                    "{} was created by PostgreSQL {version} but the binaries are {}: run \
                     `cargo xtask down` and delete {}",
                    self.data.display(),
                    self.major,
                    self.work_dir.display()
                );
            }
            return Ok(());
        }
        // A half-written cluster from an interrupted initdb makes initdb refuse to run.
        if std::fs::read_dir(&self.data)?.next().is_some() {
            std::fs::remove_dir_all(&self.data)?;
            self.prepare_dirs(paths)?;
        }
        eprintln!("postgres: initialising cluster in {}", self.data.display());
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            // The caller's LANG may name a locale this machine never generated.
            .arg("--no-locale");
        let out = process::output(&mut cmd)?;
        std::fs::write(paths.log("postgres-initdb"), out)?;
        Ok(())
    }

    fn status_running(&self) -> Result<bool> {
        if !self.data.join("postmaster.pid").exists() {
            return Ok(false);
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data).arg("status");
        let status = cmd
            .output()
            .with_context(|| format!("could not run {}", process::describe(&cmd)))?
            .status;
        // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        Ok(status.success())
    }

    fn start(&self, paths: &Paths) -> Result<()> {
        let socket_dir = self.socket_dir();
        let socket_dir = socket_dir.to_string_lossy();
        // An empty directory list disables Unix sockets; everything connects over TCP.
        let socket_dir = if socket_dir.len() > MAX_SOCKET_DIR_LEN {
            String::new()
        } else {
            socket_dir.into_owned()
        };
        let options = format!(
            "-p {PORT} -c listen_addresses=127.0.0.1 -k '{socket_dir}' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
        );
        let log = paths.log("postgres");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"])
            // Keeps a Ctrl-C aimed at xtask from reaching the postmaster.
            .process_group(0);
        if let Err(e) = process::output(&mut cmd) {
            bail!(
                "postgres did not start: {e:#}\n--- {} ---\n{}",
                log.display(),
                process::tail(&log, 20)
            );
        }
        probe::wait_until("postgres", Duration::from_secs(10), || {
            Ok(probe::tcp_open(ADDR))
        })
    }
}

/// Highest `/usr/lib/postgresql/<major>/bin` that has a server.
fn find_binaries() -> Option<(PathBuf, u32)> {
    let entries = std::fs::read_dir(PACKAGES_ROOT).ok()?;
    let major = highest_major(
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("bin").join("pg_ctl").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned()),
    )?;
    Some((
        Path::new(PACKAGES_ROOT).join(major.to_string()).join("bin"),
        major,
    ))
}

fn highest_major(names: impl Iterator<Item = String>) -> Option<u32> {
    names.filter_map(|n| n.parse().ok()).max()
}

fn apt_install_postgresql() -> Result<()> {
    eprintln!("postgres: not installed; installing Debian's postgresql");
    crate::apt::install(&["postgresql"])
}

fn server_account() -> Result<User> {
    if let Some(user) = User::from_name(OS_USER)? {
        return Ok(user);
    }
    eprintln!("postgres: creating system user {OS_USER}");
    process::run(Command::new("useradd").args(["--system", OS_USER]))?;
    User::from_name(OS_USER)?.with_context(|| format!("user {OS_USER} missing after useradd"))
}

/// The server account must be able to walk down to the data directory; a clone under
/// e.g. /root (mode 700) would otherwise be unreachable.
fn make_traversable(dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors() {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            eprintln!(
                "postgres: adding o+x to {} so the {OS_USER} user can reach its data",
                ancestor.display()
            );
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{highest_major, quote_ident, quote_literal};

    #[test]
    fn picks_highest_numeric_version() {
        let names = ["13", "15", "9", "common", "16beta"].map(String::from);
        assert_eq!(highest_major(names.into_iter()), Some(15));
        assert_eq!(highest_major(std::iter::empty()), None);
    }

    #[test]
    fn quotes_sql() {
        assert_eq!(quote_ident("test_a"), "\"test_a\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("o'k"), "'o''k'");
    }
}
