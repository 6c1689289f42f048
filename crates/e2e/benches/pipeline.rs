//! The whole pipeline, from due enrollments to emails at the recipient's server and the
//! enrollments advanced to their next step: one workspace, 200 mailboxes (no spacing, no
//! warm-up, no daily cap in reach) all sending to one Postfix `smtp-sink`, and an active
//! two-step sequence (open and click tracking and the unsubscribe link on; step 2 three days
//! after step 1) with `SEQ_BENCH_CONTACTS` (default 50,000) contacts enrolled and due now.
//! The scheduler, the sender worker and the tracker run as their release binaries, each its
//! own process with the default settings, against the provisioned PostgreSQL and Kafka
//! (`email-jobs` and `email-events` with 12 partitions).
//!
//! After a warm-up (200 enrollments of another sequence, dispatched, sent and advanced, so
//! consumers have joined their groups and connections are open), each phase enrolls its
//! contacts in a paused sequence, then activates it: timed from that moment (the next
//! dispatch round) until every enrollment is at step 2 with its next send planned, that is
//! until every `sent` event has been applied. Two phases, one after the other:
//! - `plain`: nothing else happens;
//! - `tracking`: every fifth email is opened, and every twentieth opened and clicked, at the
//!   tracker while the pipeline runs (the bench reads the `sent` events from `email-events`
//!   as any consumer would, derives each email's tracking URLs with the tracking key, as the
//!   worker wrote them, and requests them from 8 connections with a browser's user agent;
//!   `tracker.min_seconds_after_send` is 0 so these count as people, not scanners). Timed
//!   until every enrollment advanced and every open and click is applied too.
//!
//! For each phase: when dispatch, sending and the advance finished, progress every 5 s, and
//! per process the CPU seconds (utime + stime from /proc over the timed window) and CPU-s per
//! 1,000 emails: scheduler, sender worker, tracker, PostgreSQL (this database's backends and
//! the server's own processes), the Kafka broker (the process listening on the broker's
//! port; shared with whatever else uses it), smtp-sink and this process (progress polling
//! through the services' `/metrics`, and the load client) apart; and the services' peak
//! memory (VmHWM, reset at the start of each phase); and, for comparison, what each process
//! spends idle in 5 s before the phase's contacts are enrolled. The last line is the
//! `plain` phase's:
//! `pipeline: <N> emails, <R> emails/s, <C> CPU-s per 1,000 emails (ours: services,
//! PostgreSQL, Kafka; the sink apart)`.
//!
//! Run with `cargo xtask bench -p e2e --bench pipeline` (it provides `SEQ_BENCH_SMTP_SINK`;
//! `SEQ_TEST_SMTP_SINK` works too); docs/benchmarks.md records the figures.
//! `SEQ_BENCH_TRACKING=0` runs the `plain` phase only, `only` the `tracking` phase only.
//! `SEQ_SCHEDULER__*`, `SEQ_SENDER_WORKER__*`, `SEQ_TRACKER__*`, `SEQ_OUTBOX__*`,
//! `SEQ_DATABASE__MAX_CONNECTIONS`, `SEQ_DATABASE__RANDOM_PAGE_COST` and
//! `SEQ_KAFKA__COMPRESSION` are passed on to the services. The service binaries are
//! built (or found up to date) with `cargo build --profile bench`, as `cargo bench` builds
//! the benches' own.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::config::Config;
use domain::events::EmailEvent;
use domain::kafka::{ConsumerOptions, Envelope, Handler, TopicNames, ensure_topics, run_consumer};
use domain::testing::process_stats::{
    clock_ticks, env_number, peak_memory_kib, postgres_cpu_ticks, process_cpu_ticks,
    service_command, ticks_between,
};
use domain::testing::{DiscardingSink, TestDatabase, test_config_for};
use domain::tracking_token::{TokenSigner, TrackingAction};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const MAILBOXES: i64 = 200;
const PARTITIONS: i32 = 12;
const WARM_UP: i64 = 200;
/// How often progress is read from the services' `/metrics`, and printed.
const POLL: Duration = Duration::from_millis(100);
const PRINT_EVERY: Duration = Duration::from_secs(5);
/// How long the processes' idle CPU is read before each phase.
const IDLE: Duration = Duration::from_secs(5);
/// Concurrent connections of the load client to the tracker.
const VISITORS: usize = 8;
const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) \
     Version/17.5 Safari/605.1.15";
/// The link the clicks follow: the first of step 1's body.
const LINK: &str = "https://www.northwind-analytics.example/tour?utm_source=sequence";
const SUBJECT_1: &str =
    "{{first_name|Hi there}}, a faster month-end close at {{company|your team}}?";
/// About 1 KB of text: two links, two variables and a spintax group.
const BODY_1: &str = "Hi {{first_name|there}},\n\n\
Finance teams we talk to lose the first week of every month to reconciling exports by hand: \
bank feeds in one place, invoices in another, and a spreadsheet that only one person really \
understands. Northwind pulls the three together every night and flags what does not match, \
so the close starts from a short list instead of a blank page.\n\n\
{Would you be open to|Could we find|Is there room for} twenty minutes next week to see it \
on your own numbers? A three-minute tour is here if you would rather look first: \
https://www.northwind-analytics.example/tour?utm_source=sequence\n\n\
Two controllers in {{company|companies like yours}} wrote down what changed after their \
first quarter with us: the close went from nine working days to four, and audit requests \
were answered from one screen. Their notes are at \
https://www.northwind-analytics.example/customers\n\n\
If the timing is wrong, just say so and I will not write again.\n\n\
Kind regards,\nMarta\nNorthwind Analytics";
const SUBJECT_2: &str = "Re: {{first_name|Hi there}}, a faster month-end close?";
const BODY_2: &str = "Hi {{first_name|there}},\n\n\
Bringing this back to the top of your inbox in case last week was busy. Happy to send the \
tour as a short video instead if that is easier.\n\nMarta";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stopped from outside, it still stops the services and the sink (killed when dropped)
    // and drops its database, instead of leaving them running.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run() => result,
        _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM)"),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

async fn run() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("pipeline bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let Some(sink_program) =
        std::env::var_os("SEQ_BENCH_SMTP_SINK").or_else(|| std::env::var_os("SEQ_TEST_SMTP_SINK"))
    else {
        println!(
            "pipeline bench skipped: SEQ_BENCH_SMTP_SINK is not set (run `cargo xtask bench`)"
        );
        return Ok(());
    };
    let contacts: i64 = env_number("SEQ_BENCH_CONTACTS", 50_000)?;
    let phases: Vec<Mode> = match std::env::var("SEQ_BENCH_TRACKING").as_deref() {
        Ok("0") => vec![Mode::Plain],
        Ok("only") => vec![Mode::Tracking],
        _ => vec![Mode::Plain, Mode::Tracking],
    };

    let started = Instant::now();
    let binaries_dir = tempfile::tempdir()?;
    let binaries = service_binaries(binaries_dir.path())?;
    println!(
        "service binaries up to date in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.kafka.partitions = PARTITIONS;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let sink = DiscardingSink::start(&sink_program).await?;
    let mut conn = db.connect().await?;

    let workspace = populate_workspace(&mut conn, sink.addr).await?;
    let warm_up = add_sequence(&mut conn, workspace, "warm-up", WARM_UP).await?;
    activate(&mut conn, warm_up).await?;
    let mut services = Services::start(&binaries, &config).await?;
    let started = Instant::now();
    let mut progress = Progress::read(&services).await?;
    while progress.advanced < WARM_UP as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "warm-up: {} of {WARM_UP} enrollments advanced after 3 minutes",
            progress.advanced
        );
        services.check_running()?;
        tokio::time::sleep(POLL).await;
        progress = Progress::read(&services).await?;
    }
    println!(
        "warm-up: {WARM_UP} enrollments dispatched, sent and advanced {:.2} s after the services started",
        started.elapsed().as_secs_f64()
    );

    let signer = config
        .security
        .token_signer()
        .map_err(|e| anyhow::anyhow!("security.tracking_keys: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("the test configuration has no tracking key"))?;
    let broker = config
        .kafka
        .brokers
        .split(',')
        .next()
        .and_then(|b| b.trim().rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .and_then(listening_pid);
    let bench = Bench {
        config: &config,
        topics: &topics,
        workspace,
        signer,
        broker,
        sink_pid: sink.pid(),
        ticks: clock_ticks(),
    };
    let mut results = Vec::new();
    for mode in phases {
        let result = bench
            .phase(&mut conn, &mut services, mode, contacts)
            .await?;
        result.print();
        results.push(result);
    }
    services.check_running()?;
    services.stop().await?;
    drop(sink);

    if let Some(last) = results
        .iter()
        .find(|r| r.mode == Mode::Plain)
        .or(results.last())
    {
        println!();
        println!(
            "pipeline: {} emails, {:.0} emails/s, {:.3} CPU-s per 1,000 emails (ours: services, PostgreSQL, Kafka; the sink apart)",
            last.emails,
            last.emails_per_second(),
            last.ours_per_1000()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Tracking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Tracking => "tracking",
        }
    }
}

/// The release binaries of the scheduler, the sender worker and the tracker, by name, copied
/// into `dir`. Another crate's binaries have no `CARGO_BIN_EXE_*` here, so cargo builds them
/// (at once when they are up to date, as after `cargo bench --workspace`) and says where they
/// are; the copies run, so a build of another checkout into a shared target directory cannot
/// replace them mid-run.
fn service_binaries(dir: &std::path::Path) -> anyhow::Result<HashMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = std::process::Command::new(cargo);
    // What cargo set for this bench (CARGO_MANIFEST_DIR, CARGO_PKG_NAME...) must not reach
    // the build: build scripts that watch these variables (ring's) would run again, and
    // everything depending on them be rebuilt, here and again at the next plain build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*key);
        if set_by_cargo {
            command.env_remove(&*key);
        }
    }
    let output = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--profile",
            "bench",
            "--message-format",
            "json-render-diagnostics",
            "-p",
            "scheduler",
            "-p",
            "sender-worker",
            "-p",
            "tracker",
            "--bins",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "building the service binaries failed: {}",
        output.status
    );
    let mut binaries = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            let copy = dir.join(name);
            std::fs::copy(path, &copy)?;
            binaries.insert(name.to_owned(), copy);
        }
    }
    for name in ["scheduler", "sender-worker", "tracker"] {
        anyhow::ensure!(
            binaries.contains_key(name),
            "cargo built no `{name}` binary"
        );
    }
    Ok(binaries)
}

/// The three services, each its own process.
struct Services {
    scheduler: Child,
    worker: Child,
    tracker: Child,
    scheduler_admin: SocketAddr,
    worker_admin: SocketAddr,
    tracker_addr: SocketAddr,
    http: reqwest::Client,
}

/// Environment prefixes passed on to the services.
const PASSED_ON: [&str; 7] = [
    "SEQ_SCHEDULER__",
    "SEQ_SENDER_WORKER__",
    "SEQ_TRACKER__",
    "SEQ_OUTBOX__",
    "SEQ_DATABASE__MAX_CONNECTIONS",
    "SEQ_DATABASE__RANDOM_PAGE_COST",
    "SEQ_KAFKA__COMPRESSION",
];

impl Services {
    async fn start(binaries: &HashMap<String, PathBuf>, config: &Config) -> anyhow::Result<Self> {
        let scheduler_admin = free_addr()?;
        let worker_admin = free_addr()?;
        let tracker_addr = free_addr()?;
        let tracker_url = format!("http://{tracker_addr}");
        let scheduler = spawn(
            binaries,
            "scheduler",
            config,
            &[],
            &[("SEQ_SCHEDULER__ADMIN_BIND", scheduler_admin.to_string())],
        )?;
        let worker = spawn(
            binaries,
            "sender-worker",
            config,
            &[("SEQ_TRACKER__PUBLIC_URL", tracker_url.clone())],
            &[("SEQ_SENDER_WORKER__ADMIN_BIND", worker_admin.to_string())],
        )?;
        let tracker = spawn(
            binaries,
            "tracker",
            config,
            &[
                ("SEQ_TRACKER__PUBLIC_URL", tracker_url),
                ("SEQ_TRACKER__MIN_SECONDS_AFTER_SEND", "0".to_owned()),
            ],
            &[("SEQ_TRACKER__BIND", tracker_addr.to_string())],
        )?;
        let mut services = Self {
            scheduler,
            worker,
            tracker,
            scheduler_admin,
            worker_admin,
            tracker_addr,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for addr in [scheduler_admin, worker_admin, tracker_addr] {
            loop {
                let ready = services
                    .http
                    .get(format!("http://{addr}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                services.check_running()?;
                anyhow::ensure!(Instant::now() < deadline, "{addr} not ready after 60 s");
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(services)
    }

    fn pids(&self) -> anyhow::Result<[u32; 3]> {
        let pid = |child: &Child| {
            child
                .id()
                .ok_or_else(|| anyhow::anyhow!("a service exited"))
        };
        Ok([
            pid(&self.scheduler)?,
            pid(&self.worker)?,
            pid(&self.tracker)?,
        ])
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in [
            ("scheduler", &mut self.scheduler),
            ("sender worker", &mut self.worker),
            ("tracker", &mut self.tracker),
        ] {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the {name} exited: {status}");
            }
        }
        Ok(())
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        for child in [&mut self.scheduler, &mut self.worker, &mut self.tracker] {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    async fn metrics(&self, addr: SocketAddr) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }
}

/// Starts service `name`: `defaults` may be changed through the environment (see
/// [`PASSED_ON`]), `fixed` may not.
fn spawn(
    binaries: &HashMap<String, PathBuf>,
    name: &str,
    config: &Config,
    defaults: &[(&str, String)],
    fixed: &[(&str, String)],
) -> anyhow::Result<Child> {
    let program = binaries
        .get(name)
        .and_then(|p| p.to_str())
        .ok_or_else(|| anyhow::anyhow!("no usable path to the {name} binary"))?;
    let mut command = service_command(program, config);
    // The relay's pause as deployed, not the quick one of tests.
    command.env(
        "SEQ_OUTBOX__POLL_INTERVAL_MS",
        config.outbox.poll_interval_ms.to_string(),
    );
    command.envs(defaults.iter().map(|(k, v)| (*k, v)));
    for (key, value) in std::env::vars() {
        if PASSED_ON.iter().any(|prefix| key.starts_with(prefix)) {
            command.env(key, value);
        }
    }
    command.envs(fixed.iter().map(|(k, v)| (*k, v)));
    Ok(command.spawn()?)
}

/// Records `name` at `at` seconds the first time it happens.
fn mark(name: String, at: f64, marks: &mut Vec<(String, f64)>) {
    if !marks.iter().any(|(n, _)| *n == name) {
        marks.push((name, at));
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Counters read from the services' `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    dispatched: u64,
    sent: u64,
    advanced: u64,
    opens: u64,
    clicks: u64,
}

impl Progress {
    async fn read(services: &Services) -> anyhow::Result<Self> {
        let scheduler = services.metrics(services.scheduler_admin).await?;
        let worker = services.metrics(services.worker_admin).await?;
        Ok(Self {
            dispatched: counter(&scheduler, "scheduler_dispatched_total"),
            sent: counter(&worker, r#"emails_total{outcome="sent"}"#),
            advanced: counter(&scheduler, r#"scheduler_events_applied_total{type="sent"}"#),
            opens: counter(
                &scheduler,
                r#"scheduler_events_applied_total{type="opened"}"#,
            ),
            clicks: counter(
                &scheduler,
                r#"scheduler_events_applied_total{type="clicked"}"#,
            ),
        })
    }

    fn since(&self, base: &Self) -> Self {
        Self {
            dispatched: self.dispatched.saturating_sub(base.dispatched),
            sent: self.sent.saturating_sub(base.sent),
            advanced: self.advanced.saturating_sub(base.advanced),
            opens: self.opens.saturating_sub(base.opens),
            clicks: self.clicks.saturating_sub(base.clicks),
        }
    }
}

/// The value of one series (`name` or `name{labels}`) in Prometheus' text format; 0 while it
/// has not appeared.
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// What the phases share.
struct Bench<'a> {
    config: &'a Config,
    topics: &'a TopicNames,
    workspace: Uuid,
    signer: TokenSigner,
    broker: Option<u32>,
    sink_pid: Option<u32>,
    ticks: f64,
}

/// A process whose CPU the bench reads, and whether it counts as ours.
struct Measured {
    name: &'static str,
    pid: Option<u32>,
    ours: bool,
    /// Its peak memory is reported.
    service: bool,
}

/// What one phase measured.
struct PhaseResult {
    mode: Mode,
    emails: i64,
    opens: u64,
    clicks: u64,
    /// Seconds from activation: the marks of the timeline.
    marks: Vec<(String, f64)>,
    advanced_at: f64,
    window: f64,
    /// (seconds, progress since activation), every [`PRINT_EVERY`].
    samples: Vec<(f64, Progress)>,
    /// Sent events applied per second while sending and after the last send.
    applied_while_sending: f64,
    applied_after: f64,
    /// (name, CPU seconds, ours).
    cpu: Vec<(&'static str, Option<f64>, bool)>,
    postgres: f64,
    /// (name, cores) in the [`IDLE`] before activation.
    idle: Vec<(&'static str, f64)>,
    /// (name, VmHWM KiB, since the phase started).
    memory: Vec<(&'static str, u64, bool)>,
    visits: Option<(usize, usize)>,
}

impl Bench<'_> {
    async fn phase(
        &self,
        conn: &mut AsyncPgConnection,
        services: &mut Services,
        mode: Mode,
        emails: i64,
    ) -> anyhow::Result<PhaseResult> {
        let expected = u64::try_from(emails)?;
        let (opens, clicks) = match mode {
            Mode::Plain => (0, 0),
            Mode::Tracking => (expected.div_ceil(5), expected.div_ceil(20)),
        };
        let [scheduler, worker, tracker] = services.pids()?;
        let measured = [
            Measured::service("scheduler", scheduler),
            Measured::service("sender worker", worker),
            Measured::service("tracker", tracker),
            Measured {
                name: "Kafka broker",
                pid: self.broker,
                ours: true,
                service: false,
            },
            Measured {
                name: "smtp-sink",
                pid: self.sink_pid,
                ours: false,
                service: false,
            },
            Measured {
                name: "this bench (polling, load client)",
                pid: Some(std::process::id()),
                ours: false,
                service: false,
            },
        ];
        // What the processes spend doing nothing, for comparison (the shared broker serves
        // other topics too, the services poll), before the phase's enrollments exist.
        let idle_t0: Vec<Option<u64>> = measured.iter().map(|m| m.ticks()).collect();
        let idle_pg_t0 = postgres_cpu_ticks(conn).await?;
        tokio::time::sleep(IDLE).await;
        let idle_t1: Vec<Option<u64>> = measured.iter().map(|m| m.ticks()).collect();
        let idle_pg_t1 = postgres_cpu_ticks(conn).await?;
        let mut idle: Vec<(&'static str, f64)> = measured
            .iter()
            .zip(idle_t0.iter().zip(&idle_t1))
            .filter(|(m, _)| m.ours)
            .filter_map(|(m, (t0, t1))| {
                let spent = t1.as_ref()?.saturating_sub(*t0.as_ref()?);
                Some((m.name, spent as f64 / self.ticks / IDLE.as_secs_f64()))
            })
            .collect();
        idle.push((
            "PostgreSQL",
            ticks_between(&idle_pg_t0, &idle_pg_t1) as f64 / self.ticks / IDLE.as_secs_f64(),
        ));
        let sequence = add_sequence(conn, self.workspace, mode.name(), emails).await?;
        // VmHWM since the phase started: Linux resets it on writing 5 to clear_refs.
        let reset: Vec<bool> = measured
            .iter()
            .map(|m| {
                m.service
                    && m.pid.is_some_and(|pid| {
                        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
                    })
            })
            .collect();

        let load = match mode {
            Mode::Plain => None,
            Mode::Tracking => Some(self.start_load(conn, sequence, services).await?),
        };

        let base = Progress::read(services).await?;
        let cpu_t0: Vec<Option<u64>> = measured.iter().map(|m| m.ticks()).collect();
        let pg_t0 = postgres_cpu_ticks(conn).await?;
        let started = Instant::now();
        activate(conn, sequence).await?;

        let patience = Duration::from_secs(600_u64.max(u64::try_from(emails / 50)?));
        let mut marks: Vec<(String, f64)> = Vec::new();
        let mut samples = Vec::new();
        let mut next_sample = PRINT_EVERY;
        let (mut advanced_at, mut sent_at, mut advanced_when_sent) = (None, None, 0);
        let (window, now) = loop {
            let now = Progress::read(services).await?.since(&base);
            let at = started.elapsed();
            let s = at.as_secs_f64();
            if now.dispatched > 0 {
                mark("first dispatched".to_owned(), s, &mut marks);
            }
            if now.sent > 0 {
                mark("first sent".to_owned(), s, &mut marks);
            }
            if now.dispatched >= expected {
                mark(format!("all {expected} dispatched"), s, &mut marks);
            }
            if now.sent >= expected && sent_at.is_none() {
                sent_at = Some(s);
                advanced_when_sent = now.advanced;
                mark(format!("all {expected} sent"), s, &mut marks);
            }
            if now.advanced >= expected && advanced_at.is_none() {
                advanced_at = Some(s);
                mark(format!("all {expected} advanced"), s, &mut marks);
            }
            if opens > 0 && now.opens >= opens && now.clicks >= clicks {
                mark(
                    format!("all {opens} opens and {clicks} clicks applied"),
                    s,
                    &mut marks,
                );
            }
            if at >= next_sample {
                samples.push((s, now));
                next_sample += PRINT_EVERY;
            }
            if advanced_at.is_some() && now.opens >= opens && now.clicks >= clicks {
                break (at, now);
            }
            anyhow::ensure!(
                at < patience,
                "{mode:?}: after {} s: {now:?} of {expected} emails, {opens} opens, {clicks} clicks",
                patience.as_secs()
            );
            services.check_running()?;
            tokio::time::sleep(POLL).await;
        };
        let cpu_t1: Vec<Option<u64>> = measured.iter().map(|m| m.ticks()).collect();
        let pg_t1 = postgres_cpu_ticks(conn).await?;
        samples.push((window.as_secs_f64(), now));
        let memory = measured
            .iter()
            .zip(&reset)
            .filter(|(m, _)| m.service)
            .filter_map(|(m, reset)| {
                let kib = peak_memory_kib(m.pid?).ok()?;
                Some((m.name, kib, *reset))
            })
            .collect();
        let visits = match load {
            Some(load) => Some(load.finish().await?),
            None => None,
        };
        self.verify(conn, sequence, emails, opens, clicks).await?;

        let advanced_at = advanced_at.unwrap_or(window.as_secs_f64());
        let sent_at = sent_at.unwrap_or(advanced_at);
        let applied_while_sending = advanced_when_sent as f64 / sent_at;
        let applied_after = (expected - advanced_when_sent.min(expected)) as f64
            / (advanced_at - sent_at).max(f64::EPSILON);
        let cpu = measured
            .iter()
            .zip(cpu_t0.iter().zip(&cpu_t1))
            .filter(|(m, _)| mode == Mode::Tracking || m.name != "tracker")
            .map(|(m, (t0, t1))| {
                let seconds = match (t0, t1) {
                    (Some(t0), Some(t1)) => Some(t1.saturating_sub(*t0) as f64 / self.ticks),
                    _ => None,
                };
                (m.name, seconds, m.ours)
            })
            .collect();
        Ok(PhaseResult {
            mode,
            emails,
            opens,
            clicks,
            marks,
            advanced_at,
            window: window.as_secs_f64(),
            samples,
            applied_while_sending,
            applied_after,
            cpu,
            postgres: ticks_between(&pg_t0, &pg_t1) as f64 / self.ticks,
            idle,
            memory,
            visits,
        })
    }

    /// The load client of the tracking phase: a consumer of `email-events` and the visitors
    /// that open and click what it hands them.
    async fn start_load(
        &self,
        conn: &mut AsyncPgConnection,
        sequence: Uuid,
        services: &Services,
    ) -> anyhow::Result<Load> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let enrollments: Vec<Row> =
            diesel::sql_query("SELECT id FROM enrollments WHERE sequence_id = $1")
                .bind::<SqlUuid, _>(sequence)
                .load(conn)
                .await?;
        let (visits, queue) = tokio::sync::mpsc::unbounded_channel();
        let opener = Opener {
            workspace: self.workspace,
            enrollments: enrollments.into_iter().map(|r| r.id).collect(),
            seen: std::sync::Mutex::new(HashSet::new()),
            signer: self.signer.clone(),
            base: format!("http://{}", services.tracker_addr),
            visits,
        };
        let stop = CancellationToken::new();
        let kafka = self.config.kafka.clone();
        let options = ConsumerOptions::new(
            format!("bench-visitors-{}", Uuid::now_v7()),
            vec![self.topics.email_events.clone()],
        );
        let consumer = tokio::spawn({
            let stop = stop.clone();
            async move {
                run_consumer(&kafka, options, opener, stop)
                    .await
                    .map_err(anyhow::Error::from)
            }
        });
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let visitors = (0..VISITORS)
            .map(|_| {
                let (queue, http) = (queue.clone(), services.http.clone());
                let (done, failed) = (done.clone(), failed.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(visit) = queue.lock().await.recv().await else {
                            break;
                        };
                        for url in std::iter::once(visit.open).chain(visit.click) {
                            let answered = http
                                .get(&url)
                                .header("user-agent", BROWSER)
                                .send()
                                .await
                                .is_ok_and(|r| {
                                    r.status().is_success() || r.status().is_redirection()
                                });
                            let count = if answered { &done } else { &failed };
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Ok(Load {
            stop,
            consumer,
            visitors,
            done,
            failed,
        })
    }

    /// Every enrollment at step 2 with its next send planned, every message sent, and in the
    /// tracking phase each open and click stored once, as a person's.
    async fn verify(
        &self,
        conn: &mut AsyncPgConnection,
        sequence: Uuid,
        emails: i64,
        opens: u64,
        clicks: u64,
    ) -> anyhow::Result<()> {
        let count = async |conn: &mut AsyncPgConnection, sql: &str| -> anyhow::Result<i64> {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let row: Count = diesel::sql_query(sql)
                .bind::<SqlUuid, _>(sequence)
                .get_result(conn)
                .await?;
            Ok(row.n)
        };
        let advanced = count(
            conn,
            "SELECT count(*) AS n FROM enrollments WHERE sequence_id = $1 AND status = 'active' \
               AND current_step = 2 AND next_send_at > now() + interval '2 days'",
        )
        .await?;
        let sent = count(
            conn,
            "SELECT count(*) AS n FROM messages m JOIN enrollments e ON e.id = m.enrollment_id \
              WHERE e.sequence_id = $1 AND m.status = 'sent'",
        )
        .await?;
        let messages = count(
            conn,
            "SELECT count(*) AS n FROM messages m JOIN enrollments e ON e.id = m.enrollment_id \
              WHERE e.sequence_id = $1",
        )
        .await?;
        anyhow::ensure!(
            advanced == emails && sent == emails && messages == emails,
            "expected {emails} enrollments advanced and as many messages, all sent; found \
             {advanced} advanced, {messages} messages, {sent} sent"
        );
        for (kind, expected) in [("opened", opens), ("clicked", clicks)] {
            let sql = format!(
                "SELECT count(*) AS n FROM events v JOIN enrollments e ON e.id = v.enrollment_id \
                  WHERE e.sequence_id = $1 AND v.event_type = '{kind}' AND v.is_bot = false"
            );
            let people = count(conn, &sql).await?;
            anyhow::ensure!(
                u64::try_from(people)? == expected,
                "{people} {kind} events of people stored, expected {expected}"
            );
        }
        Ok(())
    }
}

impl Measured {
    fn service(name: &'static str, pid: u32) -> Self {
        Self {
            name,
            pid: Some(pid),
            ours: true,
            service: true,
        }
    }

    fn ticks(&self) -> Option<u64> {
        process_cpu_ticks(self.pid?).ok()
    }
}

/// One email's tracking URLs: its pixel, and the link when it is clicked too.
struct Visit {
    open: String,
    click: Option<String>,
}

/// Hands on every fifth `sent` email of the phase's enrollments to be opened, every
/// twentieth to be opened and clicked, each once however often Kafka delivers its event.
struct Opener {
    workspace: Uuid,
    enrollments: HashSet<Uuid>,
    seen: std::sync::Mutex<HashSet<Uuid>>,
    signer: TokenSigner,
    base: String,
    visits: tokio::sync::mpsc::UnboundedSender<Visit>,
}

impl Handler<EmailEvent> for Opener {
    async fn handle(&self, envelope: Envelope<EmailEvent>) -> anyhow::Result<()> {
        let EmailEvent::Sent { message, .. } = &envelope.body else {
            return Ok(());
        };
        if envelope.workspace_id != self.workspace
            || !self.enrollments.contains(&message.enrollment_id)
        {
            return Ok(());
        }
        let n = {
            let mut seen = self
                .seen
                .lock()
                .map_err(|_| anyhow::anyhow!("a visitor panicked"))?;
            if !seen.insert(message.message_id) {
                return Ok(());
            }
            seen.len() - 1
        };
        if n % 5 != 0 {
            return Ok(());
        }
        // The URLs the worker wrote into the email: the same key, ids and sending time.
        let (workspace_id, enrollment_id, message_id) =
            (self.workspace, message.enrollment_id, message.message_id);
        let open = TrackingAction::Open {
            workspace_id,
            enrollment_id,
            message_id,
        };
        let click = TrackingAction::Click {
            workspace_id,
            enrollment_id,
            message_id,
            url: LINK.to_owned(),
        };
        let at = envelope.occurred_at;
        let visit = Visit {
            open: format!("{}/o/{}", self.base, self.signer.encode(&open, at)),
            click: (n % 20 == 0)
                .then(|| format!("{}/c/{}", self.base, self.signer.encode(&click, at))),
        };
        self.visits
            .send(visit)
            .map_err(|_| anyhow::anyhow!("the visitors stopped"))?;
        Ok(())
    }
}

struct Load {
    stop: CancellationToken,
    consumer: tokio::task::JoinHandle<anyhow::Result<()>>,
    visitors: Vec<tokio::task::JoinHandle<()>>,
    done: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl Load {
    /// Stops the consumer, lets the visitors finish; (requests answered, failed).
    async fn finish(self) -> anyhow::Result<(usize, usize)> {
        self.stop.cancel();
        self.consumer.await??;
        for visitor in self.visitors {
            visitor.await?;
        }
        Ok((
            AtomicUsize::load(&self.done, Ordering::Relaxed),
            AtomicUsize::load(&self.failed, Ordering::Relaxed),
        ))
    }
}

impl PhaseResult {
    fn emails_per_second(&self) -> f64 {
        self.emails as f64 / self.advanced_at
    }

    fn ours(&self) -> f64 {
        self.postgres
            + self
                .cpu
                .iter()
                .filter(|(_, _, ours)| *ours)
                .filter_map(|(_, s, _)| *s)
                .sum::<f64>()
    }

    fn ours_per_1000(&self) -> f64 {
        self.ours() * 1000.0 / self.emails as f64
    }

    fn print(&self) {
        let n = self.emails as f64;
        println!();
        println!(
            "phase `{}`: {} emails over {MAILBOXES} mailboxes{}",
            self.mode.name(),
            self.emails,
            match self.mode {
                Mode::Plain => String::new(),
                Mode::Tracking => format!(
                    ", {} opened and {} of them clicked while it ran",
                    self.opens, self.clicks
                ),
            }
        );
        let marks: Vec<String> = self
            .marks
            .iter()
            .map(|(name, at)| format!("{name} {at:.2} s"))
            .collect();
        println!("  after activation: {}", marks.join(", "));
        println!(
            "  sent events applied: {:.0}/s while sending, {:.0}/s after the last send",
            self.applied_while_sending, self.applied_after
        );
        if let Some((done, failed)) = self.visits {
            println!("  tracker requests: {done} answered, {failed} failed");
        }
        println!("  progress (s: dispatched / sent / advanced / opens + clicks applied):");
        for (at, p) in &self.samples {
            println!(
                "    {at:6.1}: {:>7} / {:>7} / {:>7} / {:>6}",
                p.dispatched,
                p.sent,
                p.advanced,
                p.opens + p.clicks
            );
        }
        println!(
            "  {} emails advanced in {:.2} s = {:.0} emails/s; CPU over {:.2} s:",
            self.emails,
            self.advanced_at,
            self.emails_per_second(),
            self.window
        );
        let row = |name: &str, seconds: Option<f64>| match seconds {
            Some(s) => println!(
                "    {name:<36} {s:7.2} CPU-s  {:6.3} per 1,000 emails  {:4.2} cores",
                s * 1000.0 / n,
                s / self.window
            ),
            None => println!("    {name:<36}   unknown (its process could not be read)"),
        };
        for (name, seconds, ours) in &self.cpu {
            if *ours {
                row(name, *seconds);
            }
        }
        row("PostgreSQL", Some(self.postgres));
        row("ours (services, PostgreSQL, Kafka)", Some(self.ours()));
        for (name, seconds, ours) in &self.cpu {
            if !*ours {
                row(&format!("{name} (apart)"), *seconds);
            }
        }
        let idle: Vec<String> = self
            .idle
            .iter()
            .filter(|(name, _)| self.mode == Mode::Tracking || *name != "tracker")
            .map(|(name, cores)| format!("{name} {cores:.3}"))
            .collect();
        println!(
            "  idle, in {} s before the phase's enrollments existed (cores): {}",
            IDLE.as_secs(),
            idle.join(", ")
        );
        let memory: Vec<String> = self
            .memory
            .iter()
            .filter(|(name, _, _)| self.mode == Mode::Tracking || *name != "tracker")
            .map(|(name, kib, reset)| {
                format!(
                    "{name} {:.1} MiB{}",
                    *kib as f64 / 1024.0,
                    if *reset { "" } else { " (since it started)" }
                )
            })
            .collect();
        println!("  peak memory (VmHWM): {}", memory.join(", "));
    }
}

/// The pid of the process listening on TCP `port` on this host, if it can be seen (the
/// Kafka broker: whose CPU the pipeline costs too).
fn listening_pid(port: u16) -> Option<u32> {
    let mut sockets = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // 0A: LISTEN.
            if *state == "0A" && local_port == Some(port) {
                sockets.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && sockets.contains(target.to_string_lossy().as_ref())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The workspace and its 200 mailboxes on the sink; returns the workspace.
async fn populate_workspace(
    conn: &mut AsyncPgConnection,
    smtp: SocketAddr,
) -> anyhow::Result<Uuid> {
    let workspace = Uuid::now_v7();
    diesel::sql_query("INSERT INTO workspaces (id, name) VALUES ($1, 'bench')")
        .bind::<SqlUuid, _>(workspace)
        .execute(conn)
        .await?;
    diesel::sql_query(
        "INSERT INTO mailboxes (id, workspace_id, email, display_name, smtp_host, smtp_port, \
                                smtp_security, daily_limit, min_interval_seconds, \
                                max_jitter_seconds) \
         SELECT gen_random_uuid(), $1, 'marta' || g || '@northwind-analytics.example', \
                'Marta ' || g || ' at Northwind', $2, $3, 'none', 1000000, 0, 0 \
           FROM generate_series(1, $4) g",
    )
    .bind::<SqlUuid, _>(workspace)
    .bind::<Text, _>(smtp.ip().to_string())
    .bind::<Integer, _>(i32::from(smtp.port()))
    .bind::<BigInt, _>(MAILBOXES)
    .execute(conn)
    .await?;
    Ok(workspace)
}

/// A paused two-step sequence sending at any time of any day over all the workspace's
/// mailboxes, with `contacts` new contacts enrolled and due (over the last hour); returns it.
async fn add_sequence(
    conn: &mut AsyncPgConnection,
    workspace: Uuid,
    name: &str,
    contacts: i64,
) -> anyhow::Result<Uuid> {
    let sequence = Uuid::now_v7();
    let started = Instant::now();
    let statements = [
        "INSERT INTO sequences (id, workspace_id, name, status, open_tracking_enabled, \
                                click_tracking_enabled, track_url_text_links, unsubscribe_link, \
                                send_days, window_start, window_end, timezone, \
                                use_contact_timezone) \
         VALUES ($2, $1, $3, 'paused', true, true, true, true, '{1,2,3,4,5,6,7}', '00:00', \
                 '23:59:59.999999', 'UTC', false)",
        "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, wait_days) \
         VALUES (gen_random_uuid(), $2, 1, 1, $5, $6, 0), \
                (gen_random_uuid(), $2, 2, 2, $7, $8, 3)",
        "INSERT INTO sequence_mailboxes (sequence_id, mailbox_id) \
         SELECT $2, id FROM mailboxes WHERE workspace_id = $1",
        "WITH c AS ( \
             INSERT INTO contacts (id, workspace_id, email, first_name, last_name, company) \
             SELECT gen_random_uuid(), $1, \
                    $3 || '-lead' || g || '@company' || (g % 997) || '.example', \
                    CASE WHEN g % 10 = 0 THEN NULL ELSE 'Lead' || g END, 'Lastname', \
                    'Company ' || (g % 997) \
               FROM generate_series(1, $4) g \
             RETURNING id) \
         INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                  next_send_at) \
         SELECT gen_random_uuid(), $1, $2, c.id, 1, now() - random() * interval '1 hour' \
           FROM c",
    ];
    for sql in statements {
        diesel::sql_query(sql)
            .bind::<SqlUuid, _>(workspace)
            .bind::<SqlUuid, _>(sequence)
            .bind::<Text, _>(name)
            .bind::<BigInt, _>(contacts)
            .bind::<Text, _>(SUBJECT_1)
            .bind::<Text, _>(BODY_1)
            .bind::<Text, _>(SUBJECT_2)
            .bind::<Text, _>(BODY_2)
            .execute(conn)
            .await?;
    }
    diesel::sql_query("VACUUM ANALYZE").execute(conn).await?;
    println!(
        "enrolled {contacts} contacts in sequence `{name}` (paused) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(sequence)
}

async fn activate(conn: &mut AsyncPgConnection, sequence: Uuid) -> anyhow::Result<()> {
    diesel::sql_query("UPDATE sequences SET status = 'active' WHERE id = $1")
        .bind::<SqlUuid, _>(sequence)
        .execute(conn)
        .await?;
    Ok(())
}
