//! Event application throughput: how fast one scheduler replica applies a burst of
//! `email-events`. 20,000 enrollments (one workspace, one active three-step sequence) each
//! with its first message out; then `SEQ_BENCH_EVENTS` (default 50,000) events produced to
//! Kafka (12 partitions, keyed by enrollment) as fast as the producer goes: 40 % `sent` (one
//! per enrollment, advancing it to step 2), 40 % `opened`, 19 % `clicked` (a quarter of the
//! opens and clicks by bots), 1 % `replied` (stopping the enrollment), plus 1 % replays of
//! opens (the same envelope again, which must change nothing). The scheduler runs as its
//! release binary (its own process, default settings, log filter `warn`).
//!
//! Timed from the first produce until the last event of every partition is recorded (the
//! consumer goes in partition order, so then all are), and until the outbox relay has
//! published every `webhook-events` announcement. Prints events/s and CPU-seconds per
//! 1,000 events of the scheduler and of PostgreSQL (this database's backends and the server's
//! own processes). Fails unless each event is recorded once, every enrollment advanced, the
//! replied ones stopped and each announcement written once.
//!
//! The workspace has one enabled webhook endpoint that wants every event type, so every event
//! is announced on `webhook-events`; with `SEQ_BENCH_WEBHOOK_ENDPOINT=0` it has none (as most
//! workspaces), and nothing is announced.
//!
//! Run with `cargo xtask bench -p scheduler --bench apply`; docs/benchmarks.md records the
//! figures. `SEQ_SCHEDULER__*` and `SEQ_DATABASE__MAX_CONNECTIONS` are passed on to the
//! scheduler.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::config::Config;
use domain::events::{Client, EmailEvent, Inbound, MessageRef};
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::testing::process_stats::{
    OUTBOX_ROWS_WRITTEN, clock_ticks, env_number, peak_memory_kib, postgres_cpu_ticks,
    process_cpu_ticks, service_command, ticks_between,
};
use domain::testing::{TestDatabase, poll_until, test_config_for};
use uuid::Uuid;

const PARTITIONS: i32 = 12;
/// Opens produced (and applied) before the clock starts, so the consumer has joined its
/// group and the pool is warm.
const WARM_UP: usize = 100;
/// Records produced before waiting for their acknowledgements.
const PRODUCE_CHUNK: usize = 2_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("apply bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let total: usize = env_number("SEQ_BENCH_EVENTS", 50_000)?;
    let mix = Mix::of(total);
    let endpoint = env_number("SEQ_BENCH_WEBHOOK_ENDPOINT", 1)? != 0;

    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.kafka.partitions = PARTITIONS;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let mut conn = db.connect().await?;

    let started = Instant::now();
    let workspace = populate(&mut conn, mix.enrollments, endpoint).await?;
    let sent = sent_messages(&mut conn).await?;
    println!(
        "populated {} enrollments with their first message sent in {:.1} s",
        sent.len(),
        started.elapsed().as_secs_f64()
    );
    let burst = mix.events(workspace, &sent);

    let mut scheduler = start_scheduler(&config)?;
    let pid = scheduler
        .id()
        .ok_or_else(|| anyhow::anyhow!("the scheduler exited at once"))?;
    let producer = Producer::new(&config.kafka)?;
    let topic = topics.email_events.clone();

    let warm_up: Vec<Envelope<EmailEvent>> = (0..WARM_UP)
        .map(|i| {
            let (enrollment, message) = sent[i % sent.len()];
            Envelope::new(workspace, opened(message, enrollment, true))
        })
        .collect();
    let started = Instant::now();
    produce(&producer, &topic, &warm_up).await?;
    let warm = i64::try_from(WARM_UP)?;
    poll_until(
        Duration::from_secs(120),
        "the warm-up events applied",
        || async {
            db.count("SELECT count(*) AS n FROM events")
                .await
                .ok()
                .filter(|n| *n == warm)
        },
    )
    .await?;
    println!(
        "warm-up: {WARM_UP} events applied {:.2} s after the scheduler started",
        started.elapsed().as_secs_f64()
    );
    let outbox_before = count(&mut conn, OUTBOX_ROWS_WRITTEN).await?;

    let ticks = clock_ticks();
    let scheduler_t0 = process_cpu_ticks(pid)?;
    let postgres_t0 = postgres_cpu_ticks(&mut conn).await?;
    let started = Instant::now();
    let mut last_of_partition: HashMap<i32, Uuid> = HashMap::new();
    for (phase, replay) in &burst.phases {
        for (partition, id) in produce(&producer, &topic, phase).await? {
            // A replay's id was recorded before: it proves nothing about its partition.
            if !replay {
                last_of_partition.insert(partition, id);
            }
        }
    }
    let produced = started.elapsed();
    let lasts: Vec<Uuid> = last_of_partition.into_values().collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut reported = Instant::now();
    loop {
        let recorded = count_ids(&mut conn, &lasts).await?;
        if recorded == lasts.len() as i64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the burst was not applied within 15 minutes"
        );
        if reported.elapsed() > Duration::from_secs(10) {
            let n = count(&mut conn, "SELECT count(*) AS n FROM events").await?;
            println!(
                "  ... {} of {} events applied after {:.0} s",
                n - warm,
                burst.unique,
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied = started.elapsed();
    let scheduler_t1 = process_cpu_ticks(pid)?;
    let postgres_t1 = postgres_cpu_ticks(&mut conn).await?;
    loop {
        let pending = count(
            &mut conn,
            "SELECT count(*) AS n FROM outbox WHERE status = 'pending'",
        )
        .await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{pending} announcements not published within 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let announced = started.elapsed();
    let scheduler_t2 = process_cpu_ticks(pid)?;
    let postgres_t2 = postgres_cpu_ticks(&mut conn).await?;
    let peak_kib = peak_memory_kib(pid)?;
    if let Some(status) = scheduler.try_wait()? {
        anyhow::bail!("the scheduler exited: {status}");
    }
    scheduler.start_kill()?;
    scheduler.wait().await?;

    check(&mut conn, &mix, &burst, warm, outbox_before, endpoint).await?;

    let n = burst.unique as f64;
    let cpu = |t0: u64, t1: u64| t1.saturating_sub(t0) as f64 / ticks;
    let scheduler_cpu = cpu(scheduler_t0, scheduler_t1);
    let postgres_cpu = ticks_between(&postgres_t0, &postgres_t1) as f64 / ticks;
    println!();
    println!(
        "scheduler apply bench: {} enrollments, {} events ({} sent, {} opened, {} clicked, \
         {} replied) + {} replays, {PARTITIONS} partitions, {}",
        mix.enrollments,
        burst.unique,
        mix.sent,
        mix.opened,
        mix.clicked,
        mix.replied,
        mix.replays,
        if endpoint {
            "a webhook endpoint wanting everything"
        } else {
            "no webhook endpoint"
        }
    );
    println!(
        "  produced in {:.2} s; all applied at {:.2} s; all announced at {:.2} s",
        produced.as_secs_f64(),
        applied.as_secs_f64(),
        announced.as_secs_f64()
    );
    println!(
        "  {:.0} events/s applied (first produce to last recorded); {:.0} events/s announced",
        n / applied.as_secs_f64(),
        n / announced.as_secs_f64()
    );
    println!(
        "  scheduler CPU: {scheduler_cpu:.2} s = {:.3} CPU-s per 1,000 events ({:.2} cores); \
         to the last announcement {:.3}",
        scheduler_cpu * 1000.0 / n,
        scheduler_cpu / applied.as_secs_f64(),
        cpu(scheduler_t0, scheduler_t2) * 1000.0 / n
    );
    println!(
        "  PostgreSQL CPU: {postgres_cpu:.2} s = {:.3} CPU-s per 1,000 events ({:.2} cores); \
         to the last announcement {:.3}",
        postgres_cpu * 1000.0 / n,
        postgres_cpu / applied.as_secs_f64(),
        ticks_between(&postgres_t0, &postgres_t2) as f64 / ticks * 1000.0 / n
    );
    println!(
        "  scheduler peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    Ok(())
}

/// How many events of each kind a burst of `total` holds.
struct Mix {
    enrollments: usize,
    sent: usize,
    opened: usize,
    clicked: usize,
    replied: usize,
    replays: usize,
}

impl Mix {
    fn of(total: usize) -> Self {
        let sent = (total * 2 / 5).max(1);
        let opened = total * 2 / 5;
        let replied = (total / 100).min(sent);
        let clicked = total.saturating_sub(sent + opened + replied);
        Mix {
            enrollments: sent,
            sent,
            opened,
            clicked,
            replied,
            replays: (total / 100).min(opened),
        }
    }

    /// The burst, in the order it is produced: each enrollment's `sent` before its opens,
    /// clicks and reply. Replays come before the clicks, so every partition's last record is
    /// an event of its own.
    fn events(&self, workspace: Uuid, sent: &[(Uuid, Uuid)]) -> Burst {
        let of = |i: usize| sent[i % sent.len()];
        let envelope = |event| Envelope::new(workspace, event);
        let sents: Vec<_> = (0..self.sent)
            .map(|i| {
                let (enrollment, message) = of(i);
                envelope(EmailEvent::Sent {
                    message: MessageRef {
                        message_id: message,
                        enrollment_id: enrollment,
                    },
                    step_order: 1,
                    message_id_header: format!("<{message}@bench.example>"),
                })
            })
            .collect();
        let opens: Vec<_> = (0..self.opened)
            .map(|i| {
                let (enrollment, message) = of(i);
                envelope(opened(message, enrollment, i % 4 == 3))
            })
            .collect();
        let replays: Vec<_> = opens.iter().take(self.replays).cloned().collect();
        let clicks: Vec<_> = (0..self.clicked)
            .map(|i| {
                let (enrollment, message) = of(i);
                let is_bot = i % 4 == 3;
                envelope(EmailEvent::Clicked {
                    message: MessageRef {
                        message_id: message,
                        enrollment_id: enrollment,
                    },
                    url: format!("https://acme.example/pricing?v={}", i % 7),
                    is_bot,
                    bot_reason: is_bot.then(|| "scanner".to_owned()),
                    client: client(is_bot),
                })
            })
            .collect();
        let replies: Vec<_> = (0..self.replied)
            .map(|i| {
                let (enrollment, message) = of(i);
                envelope(EmailEvent::Replied {
                    message: MessageRef {
                        message_id: message,
                        enrollment_id: enrollment,
                    },
                    inbound: Inbound {
                        inbound_message_id: Some(format!("<r{i}@company.example>")),
                        from: Some(format!("lead{i}@company.example")),
                        subject: Some("Re: Hello".to_owned()),
                    },
                })
            })
            .collect();
        Burst {
            unique: self.sent + self.opened + self.clicked + self.replied,
            phases: vec![
                (sents, false),
                (opens, false),
                (replays, true),
                (clicks, false),
                (replies, false),
            ],
        }
    }
}

/// The records to produce, phase by phase; `true` marks the replays.
struct Burst {
    unique: usize,
    phases: Vec<(Vec<Envelope<EmailEvent>>, bool)>,
}

fn opened(message: Uuid, enrollment: Uuid, is_bot: bool) -> EmailEvent {
    EmailEvent::Opened {
        message: MessageRef {
            message_id: message,
            enrollment_id: enrollment,
        },
        is_bot,
        bot_reason: is_bot.then(|| "prefetch".to_owned()),
        client: client(is_bot),
    }
}

fn client(is_bot: bool) -> Client {
    Client {
        user_agent: Some(
            if is_bot {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) GoogleImageProxy"
            } else {
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15"
            }
            .to_owned(),
        ),
        client_ip: Some("203.0.113.0".to_owned()),
    }
}

/// Produces `events` keyed by enrollment, `PRODUCE_CHUNK` at a time (each chunk enqueued in
/// order, so each partition keeps the order given); returns each record's partition and id.
async fn produce(
    producer: &Producer,
    topic: &str,
    events: &[Envelope<EmailEvent>],
) -> anyhow::Result<Vec<(i32, Uuid)>> {
    let mut delivered = Vec::with_capacity(events.len());
    for chunk in events.chunks(PRODUCE_CHUNK) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|e| enrollment_of(&e.body).to_string())
            .collect();
        let sends = chunk
            .iter()
            .zip(&keys)
            .map(|(envelope, key)| producer.send(topic, key, envelope));
        for (result, envelope) in futures::future::join_all(sends)
            .await
            .into_iter()
            .zip(chunk)
        {
            delivered.push((result?.partition, envelope.id));
        }
    }
    Ok(delivered)
}

fn enrollment_of(event: &EmailEvent) -> Uuid {
    match event {
        EmailEvent::Sent { message, .. }
        | EmailEvent::Opened { message, .. }
        | EmailEvent::Clicked { message, .. }
        | EmailEvent::Replied { message, .. } => message.enrollment_id,
        _ => Uuid::nil(),
    }
}

/// Every event recorded once, every enrollment at step 2, the replied ones stopped, each
/// announcement written once (the events with a webhook type, and the stops) when the
/// workspace has an `endpoint`, none without.
async fn check(
    conn: &mut AsyncPgConnection,
    mix: &Mix,
    burst: &Burst,
    warm: i64,
    outbox_before: i64,
    endpoint: bool,
) -> anyhow::Result<()> {
    let expect = |what: &str, got: i64, want: usize| -> anyhow::Result<()> {
        anyhow::ensure!(
            got == i64::try_from(want)?,
            "{what}: {got}, expected {want}"
        );
        Ok(())
    };
    let events = count(conn, "SELECT count(*) AS n FROM events").await?;
    expect("events recorded", events - warm, burst.unique)?;
    for (kind, want) in [
        ("sent", mix.sent),
        ("clicked", mix.clicked),
        ("replied", mix.replied),
    ] {
        let got = count(
            conn,
            &format!("SELECT count(*) AS n FROM events WHERE event_type = '{kind}'"),
        )
        .await?;
        expect(&format!("{kind} events"), got, want)?;
    }
    let advanced = count(
        conn,
        "SELECT count(*) AS n FROM enrollments WHERE current_step = 2 AND next_send_at IS NOT NULL",
    )
    .await?;
    expect(
        "enrollments advanced and due later",
        advanced,
        mix.enrollments - mix.replied,
    )?;
    let replied = count(
        conn,
        "SELECT count(*) AS n FROM enrollments WHERE status = 'replied' AND current_step = 2",
    )
    .await?;
    expect("enrollments stopped by a reply", replied, mix.replied)?;
    let stats = count(
        conn,
        "SELECT coalesce(sum(sent), 0)::bigint AS n FROM step_stats",
    )
    .await?;
    expect("step_stats.sent", stats, mix.sent)?;
    let written = count(conn, OUTBOX_ROWS_WRITTEN).await? - outbox_before;
    let announced = if endpoint {
        burst.unique + mix.replied
    } else {
        0
    };
    expect("announcements written", written, announced)?;
    Ok(())
}

/// One workspace, one active sequence sending all day (steps 2 and 3 three days apart), 10
/// mailboxes, `enrollments` contacts each enrolled and at step 1, its first message out;
/// with `endpoint`, an enabled webhook endpoint that wants every event type.
async fn populate(
    conn: &mut AsyncPgConnection,
    enrollments: usize,
    endpoint: bool,
) -> anyhow::Result<Uuid> {
    let workspace = Uuid::now_v7();
    let sequence = Uuid::now_v7();
    let now = Utc::now();
    let statements = [
        "INSERT INTO workspaces (id, name) VALUES ($1, 'bench')",
        "INSERT INTO sequences (id, workspace_id, name, status, send_days, window_start, \
                                window_end, timezone, use_contact_timezone) \
         VALUES ($2, $1, 'bench', 'active', '{1,2,3,4,5,6,7}', '00:00', '23:59:59.999999', \
                 'UTC', false)",
        "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, wait_days) \
         VALUES (gen_random_uuid(), $2, 1, 1, 'Hello {{first_name}}', 'Hi', 0), \
                (gen_random_uuid(), $2, 2, 2, 'Re: Hello', 'Following up', 3), \
                (gen_random_uuid(), $2, 3, 3, 'Re: Hello', 'Last one', 3)",
        "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, daily_limit, \
                                min_interval_seconds, max_jitter_seconds) \
         SELECT gen_random_uuid(), $1, 'sender' || g || '@bench.example', 'smtp.test', 25, \
                1000000, 0, 0 FROM generate_series(1, 10) g",
        "INSERT INTO contacts (id, workspace_id, email, first_name) \
         SELECT gen_random_uuid(), $1, 'lead' || g || '@company' || (g % 997) || '.example', \
                'Lead' FROM generate_series(1, $4) g",
        // As a sender worker leaves them: claimed (not due), the message marked `sent` (the
        // worker writes that in the transaction that announces it; the scheduler does not).
        "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                  next_send_at) \
         SELECT gen_random_uuid(), $1, $2, c.id, 1, NULL FROM contacts c WHERE c.workspace_id = $1",
        "WITH mb AS (SELECT id, row_number() OVER (ORDER BY id) % 10 AS k FROM mailboxes), \
              en AS (SELECT id, contact_id, row_number() OVER (ORDER BY id) % 10 AS k \
                       FROM enrollments) \
         INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, contact_id, \
                               mailbox_id, status, attempts, message_id_header, subject, \
                               scheduled_at, sent_at) \
         SELECT gen_random_uuid(), $1, en.id, s.id, 1, en.contact_id, mb.id, 'sent', 1, \
                '<' || en.id || '@bench.example>', 'Hello Lead', $3, $3 \
           FROM en JOIN mb USING (k) \
           JOIN steps s ON s.sequence_id = $2 AND s.step_order = 1",
        "VACUUM ANALYZE",
    ];
    let endpoint = endpoint.then_some(
        "INSERT INTO webhook_endpoints (id, workspace_id, url, secret_encrypted) \
         VALUES (gen_random_uuid(), $1, 'https://hooks.bench.example/in', '\\x00')",
    );
    let (workspace_row, rest) = statements.split_at(1);
    for &sql in workspace_row.iter().chain(&endpoint).chain(rest) {
        let query = diesel::sql_query(sql);
        if sql.starts_with("VACUUM") {
            query.execute(conn).await?;
            continue;
        }
        query
            .bind::<SqlUuid, _>(workspace)
            .bind::<SqlUuid, _>(sequence)
            .bind::<Timestamptz, _>(now)
            .bind::<BigInt, _>(i64::try_from(enrollments)?)
            .execute(conn)
            .await?;
    }
    Ok(workspace)
}

/// Each enrollment and its first message, in a random order.
async fn sent_messages(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        enrollment_id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT enrollment_id, id FROM messages ORDER BY id")
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.enrollment_id, r.id)).collect())
}

fn start_scheduler(config: &Config) -> anyhow::Result<tokio::process::Child> {
    let mut command = service_command(env!("CARGO_BIN_EXE_scheduler"), config);
    command.env("SEQ_SCHEDULER__ADMIN_BIND", "127.0.0.1:0");
    for (key, value) in std::env::vars() {
        if key.starts_with("SEQ_SCHEDULER__") || key == "SEQ_DATABASE__MAX_CONNECTIONS" {
            command.env(key, value);
        }
    }
    Ok(command.spawn()?)
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let row: Count = diesel::sql_query(sql).get_result(conn).await?;
    Ok(row.n)
}

/// How many of `ids` the events table holds (primary-key lookups: cheap enough to poll).
async fn count_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let row: Count = diesel::sql_query("SELECT count(*) AS n FROM events WHERE id = ANY($1)")
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
        .get_result(conn)
        .await?;
    Ok(row.n)
}
