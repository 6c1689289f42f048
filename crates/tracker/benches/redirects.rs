//! Tracking throughput: click redirects (`GET /c/{token}`) and open pixels (`GET /o/{token}`)
//! under `wrk`. The tracker runs as its own process (the release binary) on a free port;
//! `wrk` cycles through `SEQ_BENCH_TOKENS` (default 10,000) distinct click tokens (each its own
//! message and enrollment, to `https://example.com/landing?id=N`) for one run, then as many
//! open tokens for a second, each run `-t1 -c64 -d20s --latency` by default.
//!
//! Reports requests/s, the 50th and 99th percentile latency, non-2xx/3xx responses and socket
//! errors of each run (as wrk prints them), the tracker's CPU-seconds per run and per 10,000
//! requests and its peak memory (from /proc). After both runs the tracker is stopped with
//! SIGTERM, so it flushes its producer, and the bench checks that `email-events` holds one
//! event per request: at least one per response wrk counted, at most one per request it wrote
//! (a request in flight when a run ends reaches the tracker but its response is not counted).
//!
//! Run with `cargo xtask bench -p tracker --bench redirects` (it provides `SEQ_BENCH_WRK`);
//! docs/benchmarks.md records the figures. `SEQ_BENCH_WRK_THREADS`, `_CONNECTIONS` and
//! `_SECONDS` change wrk's load; `SEQ_TRACKER__*` variables are passed on to the tracker.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::config::Config;
use domain::kafka::{TopicNames, ensure_topics};
use domain::testing::process_stats::{
    clock_ticks, env_number, peak_memory_kib, process_cpu_ticks, service_env,
};
use domain::testing::{TestDatabase, count_records, test_config_for};
use domain::tracking_token::{TokenSigner, TrackingAction};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

/// Cycles through the paths of the file named by its first argument, each thread starting at
/// a different place, and counts the requests it writes (`sent`, summed over the threads and
/// printed by `done` as `bench: sent N`).
const WRK_SCRIPT: &str = r#"
local paths = {}
local position = 1
sent = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  position = ((id or 1) - 1) * 7919 % #paths + 1
end

function request()
  local path = paths[position]
  position = position % #paths + 1
  sent = sent + 1
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  io.write(string.format("bench: sent %d\n", total))
end
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("redirects bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let Some(wrk) = std::env::var_os("SEQ_BENCH_WRK") else {
        println!("redirects bench skipped: SEQ_BENCH_WRK is not set (run `cargo xtask bench`)");
        return Ok(());
    };
    let tokens = usize::try_from(env_number("SEQ_BENCH_TOKENS", 10_000)?)?;
    let load = Load {
        threads: env_number("SEQ_BENCH_WRK_THREADS", 1)?,
        connections: env_number("SEQ_BENCH_WRK_CONNECTIONS", 64)?,
        seconds: env_number("SEQ_BENCH_WRK_SECONDS", 20)?,
    };
    let ticks = clock_ticks();

    let db = TestDatabase::create().await?;
    let config = test_config_for(&db)?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let signer = config
        .security
        .token_signer()
        .map_err(|e| anyhow::anyhow!("security.tracking_keys: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("the test configuration has no tracking key"))?;

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("cycle.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let clicks = dir.path().join("clicks.txt");
    let (click_paths, first_click) = token_paths(&signer, tokens, Kind::Click);
    std::fs::write(&clicks, click_paths)?;
    let opens = dir.path().join("opens.txt");
    let (open_paths, first_open) = token_paths(&signer, tokens, Kind::Open);
    std::fs::write(&opens, open_paths)?;

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut tracker = start_tracker(&config, addr)?;
    let pid = tracker
        .id()
        .ok_or_else(|| anyhow::anyhow!("the tracker exited at once"))?;
    let started = Instant::now();
    wait_until_ready(addr, &mut tracker).await?;
    println!(
        "tracker ready on {addr} after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // One request of each kind by hand: the answer wrk does not look at.
    let (status, head, _) = get(addr, &first_click).await?;
    anyhow::ensure!(
        status == 302
            && head
                .lines()
                .any(|l| l.eq_ignore_ascii_case("location: https://example.com/landing?id=0")),
        "GET {first_click} answered {status}, expected a 302 to the landing page:\n{head}"
    );
    let (status, head, body_open) = get(addr, &first_open).await?;
    anyhow::ensure!(
        status == 200 && body_open.len() == 43 && body_open.starts_with(b"GIF"),
        "GET {first_open} answered {status} with {} bytes, expected a 43-byte GIF:\n{head}",
        body_open.len()
    );
    let checks = 2;

    let cpu_0 = process_cpu_ticks(pid)?;
    let click_run = run_wrk(&wrk, &script, &clicks, addr, &load).await?;
    let cpu_1 = process_cpu_ticks(pid)?;
    let open_run = run_wrk(&wrk, &script, &opens, addr, &load).await?;
    let cpu_2 = process_cpu_ticks(pid)?;
    let peak_kib = peak_memory_kib(pid)?;
    if let Some(status) = tracker.try_wait()? {
        anyhow::bail!("the tracker exited during the runs: {status}");
    }

    // SIGTERM, so it drains its connections and flushes its producer before exiting.
    let stopped = Instant::now();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(kill.success(), "kill -TERM {pid} failed: {kill}");
    let status = tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .map_err(|_| anyhow::anyhow!("the tracker did not stop within 30 s of SIGTERM"))??;
    println!(
        "tracker stopped {:.2} s after SIGTERM ({status})",
        stopped.elapsed().as_secs_f64()
    );

    let answered = click_run.requests + open_run.requests + checks;
    let written = click_run.sent + open_run.sent + checks;
    let events = count_records(&config.kafka, &topics.email_events).await?;

    println!();
    println!(
        "tracker redirects bench: {tokens} click and {tokens} open tokens, wrk -t{} -c{} -d{}s",
        load.threads, load.connections, load.seconds
    );
    for (name, run, cpu) in [
        ("clicks (GET /c/{token}, 302)", &click_run, cpu_1 - cpu_0),
        ("opens (GET /o/{token}, GIF)", &open_run, cpu_2 - cpu_1),
    ] {
        let cpu = cpu as f64 / ticks;
        println!("  {name}:");
        println!(
            "    {:.0} requests/s; {} answered in {:.1} s ({} written)",
            run.requests_per_second, run.requests, run.seconds, run.sent
        );
        println!(
            "    latency p50 {:.2} ms, p99 {:.2} ms",
            run.p50_ms, run.p99_ms
        );
        println!(
            "    non-2xx/3xx responses: {}; socket errors: {}",
            run.non_success,
            run.socket_errors.as_deref().unwrap_or("none")
        );
        println!(
            "    tracker CPU: {cpu:.2} s = {:.3} CPU-s per 10,000 requests ({:.2} cores)",
            cpu * 10_000.0 / run.requests.max(1) as f64,
            cpu / run.seconds
        );
    }
    println!(
        "  tracker peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    println!(
        "  events on {}: {events}; requests answered {answered}, written {written} \
         (both runs and {checks} checks)",
        topics.email_events
    );

    anyhow::ensure!(
        click_run.non_success == 0 && open_run.non_success == 0,
        "some responses were neither 2xx nor 3xx"
    );
    anyhow::ensure!(
        (answered..=written).contains(&events),
        "{events} events on {}, expected one per request: between {answered} (answered) \
         and {written} (written)",
        topics.email_events
    );
    if events == answered {
        println!("  one event per answered request");
    } else {
        println!(
            "  one event per answered request, and {} for requests in flight when a run ended",
            events - answered
        );
    }
    Ok(())
}

struct Load {
    threads: i64,
    connections: i64,
    seconds: i64,
}

#[derive(Clone, Copy)]
enum Kind {
    Click,
    Open,
}

/// One token path a line, and the first one. Every token has its own message and enrollment.
fn token_paths(signer: &TokenSigner, tokens: usize, kind: Kind) -> (String, String) {
    let workspace_id = Uuid::now_v7();
    let sent_at = Utc::now() - chrono::Duration::hours(1);
    let mut paths = String::new();
    let mut first = String::new();
    for n in 0..tokens {
        let enrollment_id = Uuid::now_v7();
        let message_id = Uuid::now_v7();
        let path = match kind {
            Kind::Click => {
                let action = TrackingAction::Click {
                    workspace_id,
                    enrollment_id,
                    message_id,
                    url: format!("https://example.com/landing?id={n}"),
                };
                format!("/c/{}", signer.encode(&action, sent_at))
            }
            Kind::Open => {
                let action = TrackingAction::Open {
                    workspace_id,
                    enrollment_id,
                    message_id,
                };
                format!("/o/{}", signer.encode(&action, sent_at))
            }
        };
        if n == 0 {
            first.clone_from(&path);
        }
        // Writing to a String cannot fail.
        let _ = writeln!(paths, "{path}");
    }
    (paths, first)
}

fn start_tracker(config: &Config, addr: SocketAddr) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker"));
    command
        .arg("serve")
        .env_clear()
        .envs(service_env(config))
        .env("SEQ_TRACKER__BIND", addr.to_string())
        .env("SEQ_TELEMETRY__LOG_FILTER", "warn");
    for (key, value) in std::env::vars() {
        if key.starts_with("SEQ_TRACKER__") && key != "SEQ_TRACKER__BIND" {
            command.env(key, value);
        }
    }
    Ok(command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

async fn wait_until_ready(
    addr: SocketAddr,
    tracker: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _, _)) = get(addr, "/readyz").await {
            return Ok(());
        }
        if let Some(status) = tracker.try_wait()? {
            anyhow::bail!("the tracker exited before it was ready: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the tracker on {addr} is not ready after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.0 GET: the status, the head (status line and headers) and the body.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| anyhow::anyhow!("GET {path}: no complete answer within 10 s"))??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("GET {path}: no end of headers in the answer"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("GET {path}: unexpected status line in {head}"))?;
    Ok((status, head, body))
}

/// What one wrk run printed.
#[derive(Debug)]
struct WrkRun {
    requests_per_second: f64,
    /// Responses wrk counted ("N requests in").
    requests: i64,
    seconds: f64,
    /// Requests the script wrote (`bench: sent N`).
    sent: i64,
    p50_ms: f64,
    p99_ms: f64,
    non_success: i64,
    /// wrk's "Socket errors" line, when it printed one.
    socket_errors: Option<String>,
}

async fn run_wrk(
    wrk: &OsString,
    script: &Path,
    paths: &Path,
    addr: SocketAddr,
    load: &Load,
) -> anyhow::Result<WrkRun> {
    let output = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/"))
        .arg("--")
        .arg(paths)
        .stdin(Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&stdout).map_err(|e| anyhow::anyhow!("{e}; wrk printed:\n{stdout}"))
}

fn parse_wrk(out: &str) -> anyhow::Result<WrkRun> {
    let line_after = |prefix: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second = line_after("Requests/sec:")
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec line"))?
        .parse()?;
    // "123456 requests in 20.00s, 12.34MB read"
    let (requests, seconds) = out
        .lines()
        .find_map(|l| {
            let (count, rest) = l.trim().split_once(" requests in ")?;
            let time = rest.split(',').next()?.trim();
            Some((count.parse().ok()?, duration_ms(time)? / 1000.0))
        })
        .ok_or_else(|| anyhow::anyhow!("no \"N requests in T\" line"))?;
    let percentile = |p: &str| -> anyhow::Result<f64> {
        line_after(p)
            .and_then(duration_ms)
            .ok_or_else(|| anyhow::anyhow!("no {p} latency line (is --latency on?)"))
    };
    let sent = line_after("bench: sent")
        .ok_or_else(|| anyhow::anyhow!("the script printed no request count"))?
        .parse()?;
    let non_success = match line_after("Non-2xx or 3xx responses:") {
        Some(n) => n.parse()?,
        None => 0,
    };
    Ok(WrkRun {
        requests_per_second,
        requests,
        seconds,
        sent,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        non_success,
        socket_errors: line_after("Socket errors:").map(str::to_owned),
    })
}

/// A wrk duration ("812.00us", "1.23ms", "2.00s", "1.50m") in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number * scale)
}
