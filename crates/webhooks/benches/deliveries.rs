//! Webhook delivery throughput and delay, from the scheduler's outbox to a receiver: one
//! workspace, one endpoint (all event types) on a loopback receiver answering 204, and
//! `message.sent` events written as the scheduler writes them: outbox rows on
//! `webhook-events` (12 partitions) keyed by enrollment, in transactions, each event's
//! `occurred_at` its insert time, published by an outbox relay running in this process. The
//! webhooks service runs as its own process (the release binary), so its CPU is its own.
//!
//! Two phases of `SEQ_BENCH_EVENTS` (default 20,000) events each, after a warm-up:
//! - `steady`: written at `SEQ_BENCH_RATE` events/s (default 2,000, the floor), a
//!   transaction every 10 ms; its delays are what a receiver sees at that load;
//! - `backlog`: written as fast as one connection can (transactions of 500); its rate is
//!   what the service sustains when events wait for it.
//!
//! For each: deliveries/s (first to last receipt, and from the first write), the delay from
//! `occurred_at` to receipt (p50, p99, max), CPU-seconds per 1,000 deliveries of the
//! webhooks process and of PostgreSQL (this database's backends and the server's own
//! processes), and this process's CPU by thread group (receiver, Kafka client, the rest).
//! Every event must arrive exactly once (one `webhook-id` each, no event twice or missing)
//! and every attempt must have been the first (none retried), or the bench fails.
//!
//! Run with `cargo xtask bench -p webhooks --bench deliveries`; docs/benchmarks.md records
//! the figures. `SEQ_BENCH_OUTBOX_POLL_MS` (default 50) sets the relay's pause when the outbox
//! is empty; `SEQ_WEBHOOKS__*` and `SEQ_DATABASE__MAX_CONNECTIONS` are passed on to the
//! service.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::config::Config;
use domain::db::outbox::{self, NewOutboxRecord};
use domain::db::workspaces::{self, NewWorkspace};
use domain::events::WebhookEvent;
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::outbox::OutboxRelay;
use domain::testing::process_stats::{
    clock_ticks, env_number, peak_memory_kib, postgres_cpu_ticks, process_cpu_ticks,
    service_command, thread_cpu_ticks, ticks_between,
};
use domain::testing::webhook_receiver::{Received, WebhookReceiver, insert_endpoint, verify_all};
use domain::testing::{TestDatabase, poll_until, read_topic, test_config_for};
use domain::webhooks::WebhookSecret;
use secrecy::ExposeSecret as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PARTITIONS: i32 = 12;
const WARM_UP: usize = 200;
/// Events per transaction when writing as fast as possible.
const BACKLOG_TRANSACTION: usize = 500;
/// How often the paced writer commits.
const TICK: Duration = Duration::from_millis(10);
/// Requests whose signatures the reference library checks per phase.
const VERIFIED: usize = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("deliveries bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let events: usize = env_number("SEQ_BENCH_EVENTS", 20_000)?;
    let rate: f64 = env_number("SEQ_BENCH_RATE", 2_000.0)?;
    let relay_poll_ms: u64 = env_number("SEQ_BENCH_OUTBOX_POLL_MS", 50)?;

    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.kafka.partitions = PARTITIONS;
    config.outbox.poll_interval_ms = relay_poll_ms;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;

    let receiver = WebhookReceiver::start()?;
    let workspace = Uuid::now_v7();
    let secret = add_endpoint(&db, &config, workspace, &receiver.url()).await?;

    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::from_config(db.pool()?, Producer::new(&config.kafka)?, &config.outbox)
            .run(relay_stop.clone()),
    );
    let mut service = start_service(&config)?;
    let pid = service
        .id()
        .ok_or_else(|| anyhow::anyhow!("the webhooks service exited at once"))?;

    let mut bench = Bench {
        db: &db,
        topic: topics.webhook_events.clone(),
        workspace,
        receiver: &receiver,
        secret: secret.text().expose_secret().to_owned(),
        pid,
        ticks: clock_ticks(),
        delivered: 0,
    };
    let started = Instant::now();
    bench.phase(WARM_UP, None).await?;
    println!(
        "warm-up: {WARM_UP} events delivered {:.2} s after the service started",
        started.elapsed().as_secs_f64()
    );
    let steady = bench.phase(events, Some(rate)).await?;
    let backlog = bench.phase(events, None).await?;
    let peak_kib = peak_memory_kib(pid)?;
    if let Some(status) = service.try_wait()? {
        anyhow::bail!("the webhooks service exited: {status}");
    }
    service.start_kill()?;
    service.wait().await?;
    relay_stop.cancel();
    relay.await?;

    let timeline =
        Timeline::load(&db, &config, &topics.webhook_events, WARM_UP + 2 * events).await?;

    println!();
    println!(
        "webhooks deliveries bench: one endpoint on a loopback receiver, {PARTITIONS} partitions, \
         outbox relay pause {relay_poll_ms} ms"
    );
    println!("  settings: {}", Settings::of(&config));
    steady.print(&format!("steady, {rate:.0} events/s offered"), &timeline);
    backlog.print("backlog, written as fast as possible", &timeline);
    println!(
        "  webhooks peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    Ok(())
}

struct Bench<'a> {
    db: &'a TestDatabase,
    topic: String,
    workspace: Uuid,
    receiver: &'a WebhookReceiver,
    secret: String,
    pid: u32,
    ticks: f64,
    /// Deliveries recorded so far, over all phases.
    delivered: usize,
}

/// What one phase measured.
struct Phase {
    events: usize,
    /// Seconds from the first write to the last write, the first receipt, the last receipt.
    written: f64,
    first_received: f64,
    last_received: f64,
    /// The most receipts within one second.
    busiest_second: usize,
    received: Vec<Received>,
    /// Each event's `occurred_at`, by its `data.message_id`.
    occurred: HashMap<String, DateTime<Utc>>,
    delays_ms: Vec<f64>,
    service_cpu: f64,
    postgres_cpu: f64,
    bench_cpu: HashMap<&'static str, f64>,
    verified: Option<usize>,
}

impl Bench<'_> {
    /// Writes `events` (at `rate` a second, or as fast as possible), waits until each has
    /// arrived and is recorded, and checks each arrived once at its first attempt.
    async fn phase(&mut self, events: usize, rate: Option<f64>) -> anyhow::Result<Phase> {
        let before = self.receiver.count();
        let mut conn = self.db.connect().await?;
        let service_t0 = process_cpu_ticks(self.pid)?;
        let postgres_t0 = postgres_cpu_ticks(&mut conn).await?;
        let bench_t0 = thread_cpu_ticks(std::process::id())?;
        let started_at = Utc::now();
        let started = Instant::now();
        let writer = tokio::spawn(write_events(
            self.db.connect().await?,
            self.topic.clone(),
            self.workspace,
            events,
            rate,
        ));

        let patience = Duration::from_secs(240)
            + Duration::from_secs_f64(rate.map_or(0.0, |r| events as f64 / r));
        let mut reported = Instant::now();
        while self.receiver.count() < before + events {
            anyhow::ensure!(
                started.elapsed() < patience,
                "{} of {events} events received after {} s",
                self.receiver.count() - before,
                patience.as_secs()
            );
            if reported.elapsed() > Duration::from_secs(10) {
                println!(
                    "  ... {} of {events} received after {:.0} s",
                    self.receiver.count() - before,
                    started.elapsed().as_secs_f64()
                );
                reported = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let service_t1 = process_cpu_ticks(self.pid)?;
        let postgres_t1 = postgres_cpu_ticks(&mut conn).await?;
        let bench_t1 = thread_cpu_ticks(std::process::id())?;
        let (occurred, written_at) = writer.await??;

        // Once every attempt is recorded, nothing more can arrive: count exactly then.
        self.delivered += events;
        let expected = i64::try_from(self.delivered)?;
        poll_until(
            Duration::from_secs(60),
            "every delivery recorded",
            || async {
                self.db
                    .count(
                        "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'",
                    )
                    .await
                    .ok()
                    .filter(|n| *n == expected)
            },
        )
        .await?;
        let attempts = self
            .db
            .count("SELECT count(*) AS n FROM webhook_attempts")
            .await?;
        anyhow::ensure!(
            attempts == expected,
            "{attempts} attempts for {expected} deliveries: some were retried"
        );
        let received: Vec<Received> = self.receiver.received().split_off(before);
        let delays_ms = exactly_once(&received, &occurred)?;
        let verified = self.verify_sample(&received)?;

        let since = |at: DateTime<Utc>| (at - started_at).as_seconds_f64();
        let mut receipts: Vec<DateTime<Utc>> = received.iter().map(|r| r.received_at).collect();
        receipts.sort_unstable();
        Ok(Phase {
            events,
            written: since(written_at),
            first_received: receipts.first().copied().map_or(0.0, since),
            last_received: receipts.last().copied().map_or(0.0, since),
            busiest_second: busiest_second(&receipts),
            received,
            occurred,
            delays_ms,
            service_cpu: service_t1.saturating_sub(service_t0) as f64 / self.ticks,
            postgres_cpu: ticks_between(&postgres_t0, &postgres_t1) as f64 / self.ticks,
            bench_cpu: thread_groups(&bench_t0, &bench_t1, self.ticks),
            verified,
        })
    }

    /// Has the Standard Webhooks library verify the first requests, when it is installed.
    fn verify_sample(&self, received: &[Received]) -> anyhow::Result<Option<usize>> {
        if std::env::var_os("SEQ_TEST_PYTHON_STANDARDWEBHOOKS").is_none() {
            return Ok(None);
        }
        let sample = &received[..received.len().min(VERIFIED)];
        verify_all(std::slice::from_ref(&self.secret), sample)?;
        Ok(Some(sample.len()))
    }
}

/// Checks that `received` holds each event of `occurred` once, under a `webhook-id` of its
/// own; returns the delays from `occurred_at` to receipt, in milliseconds, sorted.
fn exactly_once(
    received: &[Received],
    occurred: &HashMap<String, DateTime<Utc>>,
) -> anyhow::Result<Vec<f64>> {
    let ids: HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    anyhow::ensure!(
        ids.len() == received.len(),
        "{} requests with {} webhook-ids: some delivery arrived twice",
        received.len(),
        ids.len()
    );
    let mut seen = HashSet::new();
    let mut delays = Vec::with_capacity(received.len());
    for request in received {
        let message_id = request.json()["data"]["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = occurred
            .get(&message_id)
            .ok_or_else(|| anyhow::anyhow!("a request for an event never written: {message_id}"))?;
        anyhow::ensure!(
            seen.insert(message_id.clone()),
            "event {message_id} arrived twice"
        );
        delays.push((request.received_at - *at).as_seconds_f64() * 1000.0);
    }
    anyhow::ensure!(
        seen.len() == occurred.len(),
        "{} of {} events arrived",
        seen.len(),
        occurred.len()
    );
    delays.sort_by(f64::total_cmp);
    Ok(delays)
}

/// Writes `events` `message.sent` events to the outbox as the scheduler does: in
/// transactions, keyed by enrollment, `occurred_at` the time of the insert. Returns each
/// event's `occurred_at` by its `data.message_id`, and when the last was written.
async fn write_events(
    mut conn: AsyncPgConnection,
    topic: String,
    workspace: Uuid,
    events: usize,
    rate: Option<f64>,
) -> anyhow::Result<(HashMap<String, DateTime<Utc>>, DateTime<Utc>)> {
    let sequence = Uuid::now_v7();
    let mut occurred = HashMap::with_capacity(events);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while occurred.len() < events {
        let now_due = match rate {
            Some(rate) => {
                ticker.tick().await;
                let due = (rate * started.elapsed().as_secs_f64()) as usize;
                due.min(events).saturating_sub(occurred.len())
            }
            None => BACKLOG_TRANSACTION.min(events - occurred.len()),
        };
        if now_due == 0 {
            continue;
        }
        let at = Utc::now();
        let mut records = Vec::with_capacity(now_due);
        for _ in 0..now_due {
            let (enrollment, message) = (Uuid::now_v7(), Uuid::now_v7());
            let mut envelope = Envelope::new(
                workspace,
                WebhookEvent {
                    event_type: "message.sent".to_owned(),
                    data: json!({
                        "workspace_id": workspace,
                        "enrollment_id": enrollment,
                        "sequence_id": sequence,
                        "step_order": 1,
                        "message_id": message,
                        "contact": {"id": Uuid::now_v7(), "email": "lead@company.example"},
                        "message_id_header": format!("<{message}@acme-outreach.example>"),
                    }),
                },
            );
            envelope.occurred_at = at;
            records.push(NewOutboxRecord::from_envelope(
                &topic,
                enrollment.to_string(),
                &envelope,
            )?);
            occurred.insert(message.to_string(), at);
        }
        conn.transaction(async |tx| outbox::insert_many(tx, &records).await)
            .await?;
    }
    Ok((occurred, Utc::now()))
}

/// The workspace and its endpoint at `url`, as the API stores them; returns its secret.
async fn add_endpoint(
    db: &TestDatabase,
    config: &Config,
    workspace: Uuid,
    url: &str,
) -> anyhow::Result<WebhookSecret> {
    let mut conn = db.connect().await?;
    workspaces::insert(
        &mut conn,
        &NewWorkspace {
            id: workspace,
            name: "bench",
            tracking_base_url: None,
        },
    )
    .await?;
    let cipher = config
        .security
        .cipher()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, secret) = insert_endpoint(&mut conn, &cipher, workspace, url, &[]).await?;
    Ok(secret)
}

fn start_service(config: &Config) -> anyhow::Result<tokio::process::Child> {
    let mut command = service_command(env!("CARGO_BIN_EXE_webhooks"), config);
    command.env("SEQ_WEBHOOKS__ADMIN_BIND", "127.0.0.1:0");
    for (key, value) in std::env::vars() {
        if key.starts_with("SEQ_WEBHOOKS__") || key == "SEQ_DATABASE__MAX_CONNECTIONS" {
            command.env(key, value);
        }
    }
    Ok(command.spawn()?)
}

/// This process's CPU seconds between two readings, by what its threads do.
fn thread_groups(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    ticks: f64,
) -> HashMap<&'static str, f64> {
    let mut groups = HashMap::new();
    for (name, t) in after {
        let spent = t.saturating_sub(before.get(name).copied().unwrap_or(0));
        let group = if name.starts_with("actix") {
            "receiver"
        } else if name.starts_with("rdk:") {
            "kafka client"
        } else {
            "writer, relay, rest"
        };
        *groups.entry(group).or_insert(0.0) += spent as f64 / ticks;
    }
    groups
}

impl Phase {
    fn print(&self, name: &str, timeline: &Timeline) {
        let n = self.events as f64;
        let receiving = self.last_received - self.first_received;
        println!("  {name}: {} events", self.events);
        println!(
            "    written in {:.2} s; first received at {:.2} s, last at {:.2} s; each once, \
             at its first attempt{}",
            self.written,
            self.first_received,
            self.last_received,
            match self.verified {
                Some(k) => format!(" ({k} signatures verified by standardwebhooks)"),
                None => String::new(),
            }
        );
        println!(
            "    {:.0} deliveries/s first to last receipt; {:.0} deliveries/s from the first write",
            n / receiving,
            n / self.last_received
        );
        println!("    busiest second: {} deliveries", self.busiest_second);
        println!(
            "    delay occurred_at -> receipt: {}",
            spread(&self.delays_ms)
        );
        match timeline.stages(self) {
            Ok(stages) => {
                for (stage, mut ms) in stages {
                    ms.sort_by(f64::total_cmp);
                    println!("      {stage}: {}", spread(&ms));
                }
            }
            Err(error) => println!("      stages unknown: {error:#}"),
        }
        println!(
            "    webhooks CPU: {:.2} s = {:.3} CPU-s per 1,000 deliveries ({:.2} cores)",
            self.service_cpu,
            self.service_cpu * 1000.0 / n,
            self.service_cpu / self.last_received
        );
        println!(
            "    PostgreSQL CPU: {:.2} s = {:.3} CPU-s per 1,000 deliveries ({:.2} cores)",
            self.postgres_cpu,
            self.postgres_cpu * 1000.0 / n,
            self.postgres_cpu / self.last_received
        );
        let mut groups: Vec<_> = self.bench_cpu.iter().collect();
        groups.sort_by_key(|(name, _)| **name);
        let groups: Vec<String> = groups
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect();
        println!("    this process's CPU: {}", groups.join(", "));
    }
}

/// The service settings the bench reports: the environment's override, else the default.
struct Settings(Vec<(&'static str, String)>);

impl Settings {
    fn of(config: &Config) -> Self {
        let webhooks = &config.webhooks;
        let or = |key: &'static str, default: String| {
            let env = format!("SEQ_WEBHOOKS__{}", key.to_uppercase());
            (key, std::env::var(env).unwrap_or(default))
        };
        Settings(vec![
            or(
                "concurrency_per_endpoint",
                webhooks.concurrency_per_endpoint.to_string(),
            ),
            or(
                "queue_per_endpoint",
                webhooks.queue_per_endpoint.to_string(),
            ),
            or("fanout_batch", webhooks.fanout_batch.to_string()),
            or("fanout_wait_ms", webhooks.fanout_wait_ms.to_string()),
            or("record_batch", webhooks.record_batch.to_string()),
            or("record_wait_ms", webhooks.record_wait_ms.to_string()),
            (
                "database.max_connections",
                std::env::var("SEQ_DATABASE__MAX_CONNECTIONS")
                    .unwrap_or_else(|_| config.database.max_connections.to_string()),
            ),
        ])
    }
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&pairs.join(", "))
    }
}

/// p50, p99 and max of `sorted` milliseconds.
fn spread(sorted: &[f64]) -> String {
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0)
    )
}

/// The `p` quantile of `sorted` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// The most of `sorted` within any one second.
fn busiest_second(sorted: &[DateTime<Utc>]) -> usize {
    let mut start = 0;
    let mut most = 0;
    for (end, at) in sorted.iter().enumerate() {
        while *at - sorted[start] >= chrono::Duration::seconds(1) {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// When each delivery passed the points between the outbox and the receiver.
struct Timeline {
    /// The Kafka record's timestamp (the relay produced it), by `data.message_id`.
    published: HashMap<String, DateTime<Utc>>,
    /// The delivery row's `created_at` (the fan-out inserted it) and its attempt's
    /// `attempted_at` (a lane started sending it), by delivery id.
    recorded: HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>,
}

impl Timeline {
    async fn load(
        db: &TestDatabase,
        config: &Config,
        topic: &str,
        records: usize,
    ) -> anyhow::Result<Self> {
        use diesel_async::RunQueryDsl as _;
        let mut published = HashMap::with_capacity(records);
        for record in read_topic(&config.kafka, topic, records, Duration::from_secs(120)).await? {
            let envelope = Envelope::<WebhookEvent>::from_json(&record.payload)?;
            if let (Some(id), Some(at)) =
                (envelope.body.data["message_id"].as_str(), record.timestamp)
            {
                published.insert(id.to_owned(), at);
            }
        }
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            created_at: DateTime<Utc>,
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            attempted_at: DateTime<Utc>,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT d.id, d.created_at, a.attempted_at \
               FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id",
        )
        .load(&mut db.connect().await?)
        .await?;
        let recorded = rows
            .into_iter()
            .map(|r| (r.id, (r.created_at, r.attempted_at)))
            .collect();
        Ok(Timeline {
            published,
            recorded,
        })
    }

    /// Each stage's durations over `phase`'s deliveries, in milliseconds.
    fn stages(&self, phase: &Phase) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
        let ms = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).as_seconds_f64() * 1000.0;
        let mut relay = Vec::new();
        let mut fanout = Vec::new();
        let mut queued = Vec::new();
        let mut sent = Vec::new();
        for request in &phase.received {
            let message_id = request.json()["data"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let delivery_id = Uuid::parse_str(request.id.trim_start_matches("msg_"))?;
            let (Some(occurred), Some(published), Some((created, attempted))) = (
                phase.occurred.get(&message_id),
                self.published.get(&message_id),
                self.recorded.get(&delivery_id),
            ) else {
                anyhow::bail!("no timeline for delivery {delivery_id}");
            };
            relay.push(ms(*occurred, *published));
            fanout.push(ms(*published, *created));
            queued.push(ms(*created, *attempted));
            sent.push(ms(*attempted, request.received_at));
        }
        Ok(vec![
            ("outbox -> Kafka (relay)", relay),
            ("Kafka -> delivery row (consumer, fan-out)", fanout),
            ("row -> attempt (lane queue)", queued),
            ("attempt -> receipt (HTTP)", sent),
        ])
    }
}
