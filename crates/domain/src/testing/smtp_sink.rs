//! Postfix's `smtp-sink`: the mail server of tests that need a failure GreenMail cannot
//! make (a 4xx or 5xx to a command, or no reply at all after the data), and the benchmarks'
//! sink that keeps nothing.

use std::ffi::{OsStr, OsString};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use super::poll_until;

/// Postfix's `smtp-sink` on a free port, failing as its `options` say (`-r rcpt`: a 4xx to
/// RCPT TO; `-f rcpt`: a 5xx; `-q .`: hang up after the data instead of replying), keeping
/// each email it receives as a file in a directory of its own.
pub struct SmtpSink {
    pub addr: SocketAddr,
    dumps: tempfile::TempDir,
    child: tokio::process::Child,
}

impl SmtpSink {
    pub async fn start(options: &[&str]) -> anyhow::Result<Self> {
        let program = std::env::var("SEQ_TEST_SMTP_SINK").map_err(|_| {
            anyhow::anyhow!("SEQ_TEST_SMTP_SINK is not set; run `cargo xtask test`")
        })?;
        let dumps = tempfile::tempdir()?;
        // smtp-sink drops root privileges to `nobody`, who must be able to write the dumps.
        std::fs::set_permissions(dumps.path(), std::fs::Permissions::from_mode(0o777))?;
        let mut arguments: Vec<OsString> = options.iter().map(OsString::from).collect();
        arguments.push("-d".into());
        arguments.push(dumps.path().join("%M.").into());
        let (addr, child) = spawn(OsStr::new(&program), &arguments, "100", Stdio::null()).await?;
        Ok(Self { addr, dumps, child })
    }

    /// The emails received so far (including any whose reply was never sent).
    pub fn received(&self) -> anyhow::Result<Vec<String>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dumps.path())? {
            all.push(std::fs::read_to_string(entry?.path())?);
        }
        Ok(all)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Postfix's `smtp-sink` on a free port, accepting everything and keeping nothing: the mail
/// server the benchmarks send to (`-m 1000` sessions at once, a listen backlog of 1,000). It
/// is killed when dropped.
pub struct DiscardingSink {
    pub addr: SocketAddr,
    child: tokio::process::Child,
}

impl DiscardingSink {
    /// `program` is smtp-sink's path (`SEQ_BENCH_SMTP_SINK`).
    pub async fn start(program: &OsStr) -> anyhow::Result<Self> {
        let options = ["-m", "1000"].map(OsString::from);
        let (addr, child) = spawn(program, &options, "1000", Stdio::inherit()).await?;
        Ok(Self { addr, child })
    }

    /// Its process id, for reading its CPU time; `None` once it has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// smtp-sink on a free loopback port with `options`, then `backlog` (its listen queue), once
/// it listens. It refuses to run as root, so as root it drops to `nobody` after binding.
async fn spawn(
    program: &OsStr,
    options: &[OsString],
    backlog: &str,
    stderr: Stdio,
) -> anyhow::Result<(SocketAddr, tokio::process::Child)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut command = tokio::process::Command::new(program);
    if is_root() {
        command.args(["-u", "nobody"]);
    }
    let child = command
        .args(options)
        .arg(addr.to_string())
        .arg(backlog)
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()?;
    poll_until(Duration::from_secs(10), "smtp-sink to listen", || async {
        tokio::net::TcpStream::connect(addr).await.ok()
    })
    .await?;
    Ok((addr, child))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}
