//! Local GreenMail: an SMTP/IMAP test server with a REST API to inspect mailboxes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::paths::Paths;
use crate::{java, maven, probe, process};

pub const SMTP_ADDR: &str = "127.0.0.1:53025";
pub const IMAP_ADDR: &str = "127.0.0.1:53143";
pub const API_ADDR: &str = "127.0.0.1:58080";
const GREENMAIL_VERSION: &str = "2.1.3";
const NAME: &str = "greenmail";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn api_url() -> String {
    format!("http://{API_ADDR}")
}

/// Starts GreenMail unless an SMTP server already greets on its port.
/// Returns whether this call started it.
pub fn ensure(paths: &Paths) -> Result<bool> {
    if probe::smtp_ready(SMTP_ADDR) {
        eprintln!("mail: reusing {SMTP_ADDR}");
        return Ok(false);
    }
    let pid_file = paths.pid_file(NAME);
    let log = paths.log(NAME);
    let marker = jar_name();
    if let Some(pid) = process::running_from_pid_file(&pid_file, &marker) {
        eprintln!("mail: waiting for the running GreenMail (pid {pid})");
        wait_ready(pid, &log)?;
        return Ok(false);
    }

    let java = java::require()?;
    let jar = fetch_jar(paths)?;
    // Property names checked against GreenMailStandaloneRunner's usage text in 2.1.3.
    let mut cmd = Command::new(java);
    cmd.args([
        "-Xmx256m",
        "-Dgreenmail.smtp.hostname=127.0.0.1",
        "-Dgreenmail.smtp.port=53025",
        "-Dgreenmail.imap.hostname=127.0.0.1",
        "-Dgreenmail.imap.port=53143",
        "-Dgreenmail.auth.disabled",
        "-Dgreenmail.api.hostname=127.0.0.1",
        "-Dgreenmail.api.port=58080",
        "-jar",
    ])
    .arg(&jar)
    .current_dir(&paths.local);
    let pid = process::spawn_background(&mut cmd, &log, &pid_file)?;
    if let Err(e) = wait_ready(pid, &log) {
        // Never leave a server that failed its start behind for the next run to "reuse".
        let _ = process::stop_from_pid_file(&pid_file, &marker, STOP_GRACE);
        return Err(e);
    }
    eprintln!(
        "mail: GreenMail started, SMTP {SMTP_ADDR}, IMAP {IMAP_ADDR}, API {API_ADDR} (pid {pid})"
    );
    Ok(true)
}

pub fn stop(paths: &Paths) -> Result<()> {
    process::stop_and_report(NAME, &paths.pid_file(NAME), &jar_name(), STOP_GRACE)
}

fn jar_name() -> String {
    format!("greenmail-standalone-{GREENMAIL_VERSION}.jar")
}

fn fetch_jar(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.cache.join(format!("greenmail-{GREENMAIL_VERSION}"));
    let dir = maven::fetch_once(
        "mail",
        "GreenMail",
        &dir,
        &paths.log("maven-greenmail"),
        |out| {
            vec![
                // Fully qualified so the download does not depend on Maven's default version.
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy".to_owned(),
                format!("-Dartifact=com.icegreen:greenmail-standalone:{GREENMAIL_VERSION}"),
                format!("-DoutputDirectory={}", out.display()),
            ]
        },
    )?;
    let jar = dir.join(jar_name());
    if !jar.is_file() {
        bail!(
            "{} is missing although the download finished: delete {} and retry",
            jar.display(),
            dir.display()
        );
    }
    Ok(jar)
}

fn wait_ready(pid: u32, log: &std::path::Path) -> Result<()> {
    let result = probe::wait_until("GreenMail", STARTUP_TIMEOUT, || {
        if !process::is_running(pid) {
            bail!("GreenMail exited during startup");
        }
        Ok(probe::smtp_ready(SMTP_ADDR)
            && probe::tcp_open(IMAP_ADDR)
            && probe::http_status(API_ADDR, "/api/service/readiness") == Some(200))
    });
    process::with_log_tail(result, log)
}
