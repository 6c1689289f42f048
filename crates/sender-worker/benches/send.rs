//! Sending throughput from `email-jobs` to Postfix's `smtp-sink`: one workspace, an active
//! sequence with open and click tracking and the unsubscribe link on, one step with a
//! realistic text body, 200 mailboxes on one sink, and `SEQ_BENCH_EMAILS` (default 40,000)
//! queued messages spread evenly over the mailboxes, their jobs already on `email-jobs`
//! (12 partitions). The sender worker runs as its own process (the release binary); timed
//! from the first `sent` event on `email-events` until every message's is there.
//!
//! Reports emails/s, the worker's CPU-seconds per 1,000 emails and its peak memory (from
//! /proc), and PostgreSQL's CPU-seconds per 1,000 emails (this database's backends and the
//! server's auxiliary processes) over the same window.
//!
//! Run with `cargo xtask bench -p sender-worker --bench send` (it provides
//! `SEQ_BENCH_SMTP_SINK`); docs/benchmarks.md records the figures. Settings of the worker can
//! be changed through the usual environment variables, which are passed on to it:
//! `SEQ_SENDER_WORKER__*`, `SEQ_OUTBOX__*` and `SEQ_DATABASE__MAX_CONNECTIONS`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::config::Config;
use domain::events::{EmailJob, SendJob};
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::testing::process_stats::{
    clock_ticks, env_number, peak_memory_kib, postgres_cpu_ticks, process_cpu_ticks, service_env,
    ticks_between,
};
use domain::testing::{DiscardingSink, TestDatabase, count_records, test_config_for};
use support::{BODY, SUBJECT};
use uuid::Uuid;

mod support;

const MAILBOXES: i64 = 200;
const PARTITIONS: i32 = 12;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("send bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let Some(sink_program) = std::env::var_os("SEQ_BENCH_SMTP_SINK") else {
        println!("send bench skipped: SEQ_BENCH_SMTP_SINK is not set (run `cargo xtask bench`)");
        return Ok(());
    };
    let emails: i64 = env_number("SEQ_BENCH_EMAILS", 40_000)?;
    let ticks = clock_ticks();

    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.kafka.partitions = PARTITIONS;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let sink = DiscardingSink::start(&sink_program).await?;
    let mut conn = db.connect().await?;

    let started = Instant::now();
    let workspace = populate(&mut conn, emails, sink.addr).await?;
    println!(
        "populated {MAILBOXES} mailboxes and {emails} queued messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    produce_jobs(&mut conn, &config, &topics, workspace).await?;
    println!(
        "produced {emails} jobs to {} ({PARTITIONS} partitions) in {:.1} s",
        topics.email_jobs,
        started.elapsed().as_secs_f64()
    );

    let settings = Settings::of(&config);
    let mut worker = start_worker(&config, &settings)?;
    let pid = worker
        .id()
        .ok_or_else(|| anyhow::anyhow!("the worker exited at once"))?;
    let started = Instant::now();

    // t0: the first `sent` published. Progress is read from the topic's watermarks (the
    // worker publishes each email's `sent` once it is recorded), which costs PostgreSQL
    // nothing.
    let deadline = started + Duration::from_secs(900);
    let published = || count_records(&config.kafka, &topics.email_events);
    let (t0, sent_at_t0, cpu_t0, pg_t0) = loop {
        let sent = published().await?;
        if sent > 0 {
            let cpu = process_cpu_ticks(pid)?;
            let pg = postgres_cpu_ticks(&mut conn).await?;
            break (Instant::now(), sent, cpu, pg);
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing sent after 15 minutes");
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (t1, cpu_t1, pg_t1, peak_kib) = loop {
        let sent = published().await?;
        if sent >= emails {
            let cpu = process_cpu_ticks(pid)?;
            let pg = postgres_cpu_ticks(&mut conn).await?;
            break (Instant::now(), cpu, pg, peak_memory_kib(pid)?);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sent} of {emails} recorded after 15 minutes"
        );
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    worker.start_kill()?;
    worker.wait().await?;
    drop(sink);

    let by_status = statuses(&mut conn).await?;
    let sent = by_status.get("sent").copied().unwrap_or(0);
    anyhow::ensure!(
        sent == emails && by_status.len() == 1,
        "expected {emails} messages sent and nothing else, found {by_status:?}"
    );
    // One `sent` per email: none lost, none repeated.
    let published = count_records(&config.kafka, &topics.email_events).await?;
    anyhow::ensure!(
        published == emails,
        "{published} sent events published, expected {emails}"
    );

    let window = (t1 - t0).as_secs_f64();
    let timed = (emails - sent_at_t0) as f64;
    let worker_cpu = (cpu_t1 - cpu_t0) as f64 / ticks;
    let pg_cpu = ticks_between(&pg_t0, &pg_t1) as f64 / ticks;
    println!();
    println!("sender-worker send bench: {emails} emails, {MAILBOXES} mailboxes, one smtp-sink");
    println!("  settings: {settings}");
    println!(
        "  first sent after {:.2} s (worker start); {sent_at_t0} already recorded then",
        (t0 - started).as_secs_f64()
    );
    println!(
        "  {timed:.0} emails in {window:.2} s = {:.0} emails/s (every one sent, its event published)",
        timed / window
    );
    println!(
        "  worker CPU: {worker_cpu:.2} s = {:.3} CPU-s per 1,000 emails ({:.2} cores)",
        worker_cpu * 1000.0 / timed,
        worker_cpu / window
    );
    println!(
        "  PostgreSQL CPU: {pg_cpu:.2} s = {:.3} CPU-s per 1,000 emails ({:.2} cores)",
        pg_cpu * 1000.0 / timed,
        pg_cpu / window
    );
    println!(
        "  worker peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    Ok(())
}

/// The worker settings the bench reports: the environment's override, else the default.
struct Settings {
    batch_size: String,
    max_in_flight: String,
    connections_per_mailbox: String,
    messages_per_connection: String,
    outbox_batch_size: String,
    outbox_poll_interval_ms: String,
    max_connections: String,
}

impl Settings {
    fn of(config: &Config) -> Self {
        let worker = &config.sender_worker;
        let or = |key: &str, default: String| std::env::var(key).unwrap_or(default);
        Self {
            batch_size: or(
                "SEQ_SENDER_WORKER__BATCH_SIZE",
                worker.batch_size.to_string(),
            ),
            max_in_flight: or(
                "SEQ_SENDER_WORKER__MAX_IN_FLIGHT",
                worker.max_in_flight.to_string(),
            ),
            connections_per_mailbox: or(
                "SEQ_SENDER_WORKER__CONNECTIONS_PER_MAILBOX",
                worker.connections_per_mailbox.to_string(),
            ),
            messages_per_connection: or(
                "SEQ_SENDER_WORKER__MESSAGES_PER_CONNECTION",
                worker.messages_per_connection.to_string(),
            ),
            outbox_batch_size: or(
                "SEQ_OUTBOX__BATCH_SIZE",
                config.outbox.batch_size.to_string(),
            ),
            outbox_poll_interval_ms: or(
                "SEQ_OUTBOX__POLL_INTERVAL_MS",
                config.outbox.poll_interval_ms.to_string(),
            ),
            max_connections: or("SEQ_DATABASE__MAX_CONNECTIONS", "8".to_owned()),
        }
    }
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch_size {}, max_in_flight {}, connections_per_mailbox {}, \
             messages_per_connection {}, outbox_batch_size {}, outbox_poll_interval_ms {}, \
             database.max_connections {}",
            self.batch_size,
            self.max_in_flight,
            self.connections_per_mailbox,
            self.messages_per_connection,
            self.outbox_batch_size,
            self.outbox_poll_interval_ms,
            self.max_connections
        )
    }
}

fn start_worker(config: &Config, settings: &Settings) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sender-worker"));
    command
        .arg("serve")
        .env_clear()
        .envs(service_env(config))
        .env("SEQ_DATABASE__MAX_CONNECTIONS", &settings.max_connections)
        .env("SEQ_KAFKA__PARTITIONS", PARTITIONS.to_string())
        .env("SEQ_SENDER_WORKER__ADMIN_BIND", "127.0.0.1:0")
        .env("SEQ_TRACKER__PUBLIC_URL", "https://track.acme.example")
        .env("SEQ_TELEMETRY__LOG_FILTER", "warn");
    for (key, value) in std::env::vars() {
        if key.starts_with("SEQ_SENDER_WORKER__") || key.starts_with("SEQ_OUTBOX__") {
            command.env(key, value);
        }
    }
    Ok(command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

/// The workspace, its sequence and step, the mailboxes, and `emails` contacts each enrolled
/// with its first message queued, round-robin over the mailboxes. Returns the workspace.
async fn populate(
    conn: &mut AsyncPgConnection,
    emails: i64,
    smtp: SocketAddr,
) -> anyhow::Result<Uuid> {
    let workspace = Uuid::now_v7();
    let sequence = Uuid::now_v7();
    let step = Uuid::now_v7();
    let statements = [
        "INSERT INTO workspaces (id, name) VALUES ($1, 'bench')",
        // The body's links are bare URLs: forced, so they are still tracked as measured before.
        "INSERT INTO sequences (id, workspace_id, name, status, open_tracking_enabled, \
                                click_tracking_enabled, track_url_text_links, unsubscribe_link) \
         VALUES ($2, $1, 'bench', 'active', true, true, true, true)",
        "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content) \
         VALUES ($3, $2, 1, 1, $8, $9)",
        "INSERT INTO mailboxes (id, workspace_id, email, display_name, smtp_host, smtp_port, \
                                smtp_security, daily_limit, min_interval_seconds, \
                                max_jitter_seconds) \
         SELECT gen_random_uuid(), $1, 'sales' || g || '@acme-outreach.example', \
                'Ana ' || g || ' from Acme', $6, $7, 'none', 1000000, 0, 0 \
           FROM generate_series(1, $4) g",
        "INSERT INTO contacts (id, workspace_id, email, first_name, last_name, company) \
         SELECT gen_random_uuid(), $1, 'lead' || g || '@company' || (g % 997) || '.example', \
                CASE WHEN g % 10 = 0 THEN NULL ELSE 'Lead' || g END, 'Lastname', \
                'Company ' || (g % 997) \
           FROM generate_series(1, $5) g",
        "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                  mailbox_id) \
         SELECT gen_random_uuid(), $1, $2, c.id, 1, mb.ids[1 + c.n % cardinality(mb.ids)] \
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n \
                   FROM contacts WHERE workspace_id = $1) c, \
                (SELECT array_agg(id ORDER BY id) AS ids \
                   FROM mailboxes WHERE workspace_id = $1) mb",
        "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                               contact_id, mailbox_id, status, attempts, message_id_header, \
                               scheduled_at) \
         SELECT m.id, $1, m.enrollment_id, $3, 1, m.contact_id, m.mailbox_id, 'queued', 1, \
                '<' || m.id || '@acme-outreach.example>', now() \
           FROM (SELECT gen_random_uuid() AS id, e.id AS enrollment_id, e.contact_id, \
                        e.mailbox_id \
                   FROM enrollments e WHERE e.workspace_id = $1) m",
        "VACUUM ANALYZE",
    ];
    for sql in statements {
        let query = diesel::sql_query(sql);
        if sql.starts_with("VACUUM") {
            query.execute(conn).await?;
            continue;
        }
        query
            .bind::<SqlUuid, _>(workspace)
            .bind::<SqlUuid, _>(sequence)
            .bind::<SqlUuid, _>(step)
            .bind::<BigInt, _>(MAILBOXES)
            .bind::<BigInt, _>(emails)
            .bind::<Text, _>(smtp.ip().to_string())
            .bind::<Integer, _>(i32::from(smtp.port()))
            .bind::<Text, _>(SUBJECT)
            .bind::<Text, _>(BODY)
            .execute(conn)
            .await?;
    }
    Ok(workspace)
}

/// Every queued message's job on `email-jobs`, keyed by mailbox as the scheduler's are.
async fn produce_jobs(
    conn: &mut AsyncPgConnection,
    config: &Config,
    topics: &TopicNames,
    workspace: Uuid,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        enrollment_id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        mailbox_id: Uuid,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, enrollment_id, mailbox_id FROM messages WHERE status = 'queued' ORDER BY id",
    )
    .load(conn)
    .await?;
    let producer = Producer::new(&config.kafka)?;
    for chunk in rows.chunks(5_000) {
        futures::future::try_join_all(chunk.iter().map(|row| {
            let job = Envelope::new(
                workspace,
                EmailJob::Send(SendJob {
                    message_id: row.id,
                    enrollment_id: row.enrollment_id,
                    mailbox_id: row.mailbox_id,
                    attempt: 1,
                }),
            );
            let producer = &producer;
            let topic = topics.email_jobs.as_str();
            async move {
                producer
                    .send(topic, &row.mailbox_id.to_string(), &job)
                    .await
            }
        }))
        .await?;
    }
    Ok(())
}

async fn statuses(conn: &mut AsyncPgConnection) -> anyhow::Result<HashMap<String, i64>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT status, count(*) AS n FROM messages GROUP BY status")
            .load(conn)
            .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
}
