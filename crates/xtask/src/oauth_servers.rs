//! The servers that play Google's and Microsoft's part in the OAuth tests (issue 17), on
//! loopback: ORY Hydra, a real OAuth 2.0 / OpenID Connect authorization server built from its
//! Go module, on a database of its own in our PostgreSQL; and Dovecot (Debian's), with IMAP
//! and SMTP submission that accept only XOAUTH2/OAUTHBEARER and check each bearer token by
//! introspection at Hydra, relaying submitted mail to the test mail server. Tests drive the
//! login and consent steps through Hydra's admin API, as a login app would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::unistd::geteuid;

use crate::paths::Paths;
use crate::{apt, deploy_tools, postgres, probe, process};

pub const HYDRA_PUBLIC_ADDR: &str = "127.0.0.1:54444";
pub const HYDRA_ADMIN_ADDR: &str = "127.0.0.1:54445";
pub const DOVECOT_IMAP_ADDR: &str = "127.0.0.1:53144";
pub const DOVECOT_SUBMISSION_ADDR: &str = "127.0.0.1:53587";
/// Where Hydra sends the browser to log in and consent: nothing answers there; tests take
/// the challenge from the redirect and accept or reject it through the admin API.
const LOGIN_APP: &str = "http://127.0.0.1:54449";

const HYDRA_VERSION: &str = "v2.3.0";
/// Hydra's go.mod replaces pop with Ory's fork; a module that requires Hydra must too.
const HYDRA_REPLACES: &[&str] =
    &["github.com/gobuffalo/pop/v6 => github.com/ory/pop/v6 v6.2.1-0.20241121111754-e5dfc0f3344b"];
const HYDRA_DATABASE: &str = "oauth_hydra";
const HYDRA: &str = "hydra";
const DOVECOT: &str = "dovecot";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);

pub fn public_url() -> String {
    format!("http://{HYDRA_PUBLIC_ADDR}")
}

pub fn admin_url() -> String {
    format!("http://{HYDRA_ADMIN_ADDR}")
}

/// Starts Hydra and Dovecot unless they answer already; Dovecot relays submissions to
/// `smtp_relay` (`host:port`). Returns whether this call started anything.
pub fn ensure(paths: &Paths, database_admin_url: &str, smtp_relay: &str) -> Result<bool> {
    let hydra = ensure_hydra(paths, database_admin_url)?;
    let dovecot = ensure_dovecot(paths, smtp_relay)?;
    Ok(hydra || dovecot)
}

pub fn stop(paths: &Paths) -> Result<()> {
    let hydra = process::stop_and_report(HYDRA, &paths.pid_file(HYDRA), "hydra", STOP_GRACE);
    let dovecot = stop_dovecot(paths);
    hydra.and(dovecot)
}

fn ensure_hydra(paths: &Paths, database_admin_url: &str) -> Result<bool> {
    if hydra_ready() {
        eprintln!("oauth: reusing Hydra at {HYDRA_ADMIN_ADDR}");
        return Ok(false);
    }
    let binary = deploy_tools::go_wrapped_binary(
        paths,
        "github.com/ory/hydra/v2",
        HYDRA_VERSION,
        HYDRA,
        &format!("-s -w -X github.com/ory/hydra/v2/driver/config.Version={HYDRA_VERSION}"),
        HYDRA_REPLACES,
    )?;
    // A fresh database each start: tests create the clients they use, and the system secret
    // below is new each time, which old rows would not decrypt with.
    postgres::drop_database(database_admin_url, HYDRA_DATABASE)?;
    postgres::create_database_if_missing(database_admin_url, HYDRA_DATABASE)?;
    let dsn = format!("{}?sslmode=disable", postgres::url(HYDRA_DATABASE));
    process::output(
        Command::new(&binary)
            .args(["migrate", "sql", "up", "--read-from-env", "--yes"])
            .env("DSN", &dsn),
    )
    .context("applying Hydra's migrations")?;

    let log = paths.log(HYDRA);
    let pid_file = paths.pid_file(HYDRA);
    let (public_host, public_port) = split_addr(HYDRA_PUBLIC_ADDR)?;
    let (admin_host, admin_port) = split_addr(HYDRA_ADMIN_ADDR)?;
    let mut serve = Command::new(&binary);
    serve
        .args(["serve", "all", "--dev", "--sqa-opt-out"])
        .env("DSN", &dsn)
        .env("SECRETS_SYSTEM", random_hex(32)?)
        .env("URLS_SELF_ISSUER", public_url())
        .env("URLS_LOGIN", format!("{LOGIN_APP}/login"))
        .env("URLS_CONSENT", format!("{LOGIN_APP}/consent"))
        .env("SERVE_PUBLIC_HOST", public_host)
        .env("SERVE_PUBLIC_PORT", public_port)
        .env("SERVE_ADMIN_HOST", admin_host)
        .env("SERVE_ADMIN_PORT", admin_port)
        .env("LOG_LEVEL", "warn")
        .current_dir(&paths.local);
    let pid = process::spawn_background(&mut serve, &log, &pid_file)?;
    let ready = probe::wait_until("Hydra", STARTUP_TIMEOUT, || {
        if !process::is_running(pid) {
            anyhow::bail!("Hydra exited at startup:\n{}", process::tail(&log, 20));
        }
        Ok(hydra_ready())
    });
    if let Err(e) = ready {
        let _ = process::stop_from_pid_file(&pid_file, HYDRA, STOP_GRACE);
        return Err(e);
    }
    eprintln!(
        "oauth: Hydra {HYDRA_VERSION} started, public {} admin {} (pid {pid})",
        public_url(),
        admin_url()
    );
    Ok(true)
}

fn hydra_ready() -> bool {
    probe::http_status(HYDRA_ADMIN_ADDR, "/health/ready") == Some(200)
        && probe::tcp_open(HYDRA_PUBLIC_ADDR)
}

fn ensure_dovecot(paths: &Paths, smtp_relay: &str) -> Result<bool> {
    if probe::tcp_open(DOVECOT_IMAP_ADDR) && probe::smtp_ready(DOVECOT_SUBMISSION_ADDR) {
        eprintln!("oauth: reusing Dovecot at {DOVECOT_IMAP_ADDR}");
        return Ok(false);
    }
    anyhow::ensure!(
        geteuid().is_root(),
        "Dovecot (the XOAUTH2 mail server of the OAuth tests) needs root to start"
    );
    apt::ensure(
        &["dovecot-imapd", "dovecot-submissiond"],
        "the XOAUTH2 mail server of the OAuth tests",
    )?;
    let dir = paths.local.join(DOVECOT);
    let _ = stop_dovecot(paths);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for sub in ["run", "state", "mail"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    process::run(
        Command::new("chown")
            .arg("dovecot:dovecot")
            .arg(dir.join("mail")),
    )?;
    let oauth2 = dir.join("oauth2.conf.ext");
    std::fs::write(&oauth2, oauth2_passdb_config())?;
    let config = dir.join("dovecot.conf");
    std::fs::write(
        &config,
        dovecot_config(&dir, &paths.log(DOVECOT), &oauth2, smtp_relay)?,
    )?;
    // Dovecot daemonizes: its child would hold our output pipes open (and whoever waits for
    // their end, a CI runner say, waiting), so it gets none; it logs to its log_path.
    dovecot_command(&config, &[]).context("starting Dovecot")?;
    probe::wait_until("Dovecot", STARTUP_TIMEOUT, || {
        Ok(probe::tcp_open(DOVECOT_IMAP_ADDR) && probe::smtp_ready(DOVECOT_SUBMISSION_ADDR))
    })
    .map_err(|e| e.context(process::tail(&paths.log(DOVECOT), 20)))?;
    eprintln!(
        "oauth: Dovecot started, IMAP {DOVECOT_IMAP_ADDR}, submission {DOVECOT_SUBMISSION_ADDR} \
         (XOAUTH2 checked at Hydra, relaying to {smtp_relay})"
    );
    Ok(true)
}

fn stop_dovecot(paths: &Paths) -> Result<()> {
    let config = paths.local.join(DOVECOT).join("dovecot.conf");
    let pid_file = paths.local.join(DOVECOT).join("run/master.pid");
    if !config.is_file() || process::running_from_pid_file(&pid_file, DOVECOT).is_none() {
        eprintln!("{DOVECOT}: not running");
        return Ok(());
    }
    dovecot_command(&config, &["stop"])?;
    eprintln!("{DOVECOT}: stopped");
    Ok(())
}

/// `dovecot -c config args`, with no stdio, checked for success.
fn dovecot_command(config: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("dovecot")
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running dovecot")?;
    anyhow::ensure!(
        status.success(),
        "dovecot {} exited with {status} (see its log)",
        args.join(" ")
    );
    Ok(())
}

/// Bearer tokens are checked by introspection (Hydra's are opaque), and the token's subject
/// must be the user name the client logs in with.
fn oauth2_passdb_config() -> String {
    format!(
        "introspection_mode = post\n\
         introspection_url = {}/admin/oauth2/introspect\n\
         force_introspection = yes\n\
         username_attribute = sub\n\
         active_attribute = active\n\
         active_value = true\n",
        admin_url()
    )
}

fn dovecot_config(dir: &Path, log: &Path, oauth2: &Path, smtp_relay: &str) -> Result<String> {
    let (_, imap_port) = split_addr(DOVECOT_IMAP_ADDR)?;
    let (_, submission_port) = split_addr(DOVECOT_SUBMISSION_ADDR)?;
    let (relay_host, relay_port) = split_addr(smtp_relay)?;
    let d = |sub: &str| -> PathBuf { dir.join(sub) };
    Ok(format!(
        "# Written by cargo xtask for the OAuth tests; not a production configuration.\n\
         base_dir = {run}\n\
         state_dir = {state}\n\
         log_path = {log}\n\
         instance_name = sequence-service-dovecot\n\
         protocols = imap submission\n\
         listen = 127.0.0.1\n\
         # Loopback only, no TLS: the tokens are what is tested.\n\
         ssl = no\n\
         disable_plaintext_auth = no\n\
         auth_mechanisms = xoauth2 oauthbearer\n\
         auth_verbose = yes\n\
         hostname = localhost\n\
         first_valid_uid = 100\n\
         # Every test connects from loopback: no growing delay after the refusals some\n\
         # tests provoke, which would hold up the logins of the others.\n\
         login_trusted_networks = 127.0.0.0/8\n\
         auth_failure_delay = 0\n\
         passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {oauth2}\n}}\n\
         userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={mail}/%u\n}}\n\
         mail_location = maildir:~/Maildir\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service submission-login {{\n  inet_listener submission {{\n    port = {submission_port}\n  }}\n}}\n\
         submission_relay_host = {relay_host}\n\
         submission_relay_port = {relay_port}\n\
         submission_relay_trusted = yes\n",
        run = d("run").display(),
        state = d("state").display(),
        mail = d("mail").display(),
        log = log.display(),
        oauth2 = oauth2.display(),
    ))
}

fn split_addr(addr: &str) -> Result<(&str, &str)> {
    addr.rsplit_once(':')
        .with_context(|| format!("{addr} is not host:port"))
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_listens_on_loopback_relays_to_the_mail_server_and_checks_tokens_at_hydra()
    -> Result<()> {
        let dir = Path::new("/tmp/x");
        let config = dovecot_config(dir, &dir.join("log"), &dir.join("o.ext"), "127.0.0.1:53025")?;
        assert!(config.contains("listen = 127.0.0.1\n"));
        assert!(config.contains("auth_mechanisms = xoauth2 oauthbearer\n"));
        assert!(config.contains("submission_relay_port = 53025\n"));
        assert!(config.contains("port = 53144\n") && config.contains("port = 53587\n"));
        assert!(oauth2_passdb_config().contains("http://127.0.0.1:54445/admin/oauth2/introspect"));
        Ok(())
    }
}
