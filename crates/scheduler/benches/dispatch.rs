//! Dispatch throughput from PostgreSQL to Kafka: 1,000,000 active enrollments of which
//! 100,000 are due; the scheduler's dispatch loops claim them, create their messages and
//! send jobs (`send_jobs`), and the job relay publishes the jobs to `email-jobs`. Timed from the first
//! round until the last job is acknowledged by Kafka.
//!
//! Prints steps/s and the CPU-seconds per 1,000 steps of the scheduler (this process: the
//! dispatch loops and the relay) and of PostgreSQL (the benchmark database's backends and the
//! server's own processes), from `/proc`; the Kafka broker is not counted.
//!
//! Run with `cargo xtask bench -p scheduler`; docs/benchmarks.md records the figures.
//! `SEQ_BENCH_LOOPS` (default 2, as `scheduler.dispatch_concurrency`) sets the dispatch loops, `SEQ_BENCH_BATCH` (default 500)
//! their batch size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use domain::clock::{Clock, SystemClock};
use domain::db::send_jobs::JOBS_WRITTEN;
use domain::kafka::{Producer, TopicNames, ensure_topics};
use domain::testing::process_stats::{
    clock_ticks, env_number, postgres_cpu_ticks, process_cpu_ticks, ticks_between,
};
use domain::testing::{TestDatabase, count_records, test_config_for};
use scheduler::dispatch::Dispatcher;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ENROLLMENTS: i64 = 1_000_000;
const DUE: i64 = 100_000;
const MAILBOXES: i64 = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("dispatch bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let loops: usize = env_number("SEQ_BENCH_LOOPS", 2)?;
    let batch: usize = env_number("SEQ_BENCH_BATCH", 500)?;
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.database.max_connections = loops * 2 + 4;
    let pool = db.pool()?;
    let mut conn = db.connect().await?;

    let started = Instant::now();
    populate(&mut conn).await?;
    println!(
        "populated {ENROLLMENTS} enrollments ({DUE} due) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let plan =
        domain::db::dispatch::explain_claim(&mut conn, Utc::now(), i64::try_from(batch)?).await?;
    println!("claim plan:\n{plan}\n");

    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dispatcher = Dispatcher::new(pool.clone(), clock, batch, topics.email_jobs.clone());
    let mut outbox = config.outbox.clone();
    outbox.batch_size = 1_000;
    outbox.poll_interval_ms = 20;
    let relay = dispatcher.job_relay(Producer::new(&config.kafka)?, &outbox);

    let shutdown = CancellationToken::new();
    // The dispatch loops and the relay run in this process: its CPU is the scheduler's.
    let pid = std::process::id();
    let scheduler_t0 = process_cpu_ticks(pid)?;
    let postgres_t0 = postgres_cpu_ticks(&mut conn).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..loops {
        tasks.push(tokio::spawn(
            dispatcher
                .clone()
                .run(Duration::from_millis(20), shutdown.clone()),
        ));
    }
    tasks.push(tokio::spawn(relay.run(shutdown.clone())));

    // Cheap progress checks (index-only), so the measurement does not steal the CPU it
    // measures: the jobs' identity counts the rows written, the (small) table the jobs not
    // yet sent.
    let mut dispatched_at = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let written = count(&mut conn, JOBS_WRITTEN).await?;
        if written >= DUE && dispatched_at.is_none() {
            dispatched_at = Some(started.elapsed());
        }
        let pending = count(&mut conn, "SELECT count(*) AS n FROM send_jobs").await?;
        if written >= DUE && pending == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{written} jobs written and {pending} not yet published after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let scheduler_t1 = process_cpu_ticks(pid)?;
    let postgres_t1 = postgres_cpu_ticks(&mut conn).await?;
    shutdown.cancel();
    for task in tasks {
        task.await?;
    }

    let dispatched_at = dispatched_at.unwrap_or(elapsed);
    let messages = count(&mut conn, "SELECT count(*) AS n FROM messages").await?;
    // Published rows are deleted: what Kafka holds is what was published.
    let published = count_records(&config.kafka, &topics.email_jobs).await?;
    anyhow::ensure!(
        messages == DUE && published == DUE,
        "{messages} messages and {published} published jobs, expected {DUE} of each"
    );
    println!(
        "{loops} dispatch loops, batch {batch}: {DUE} steps in PostgreSQL in {:.2} s = {:.0} steps/s",
        dispatched_at.as_secs_f64(),
        DUE as f64 / dispatched_at.as_secs_f64()
    );
    println!(
        "{loops} dispatch loops, batch {batch}: {DUE} steps published to Kafka in {:.2} s = {:.0} steps/s",
        elapsed.as_secs_f64(),
        DUE as f64 / elapsed.as_secs_f64()
    );
    let ticks = clock_ticks();
    let scheduler_cpu = scheduler_t1.saturating_sub(scheduler_t0) as f64 / ticks;
    let postgres_cpu = ticks_between(&postgres_t0, &postgres_t1) as f64 / ticks;
    for (who, cpu) in [("scheduler", scheduler_cpu), ("PostgreSQL", postgres_cpu)] {
        println!(
            "  {who} CPU: {cpu:.2} s = {:.3} CPU-s per 1,000 steps ({:.2} cores)",
            cpu * 1000.0 / DUE as f64,
            cpu / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// One workspace, one active sequence sending all day every day, 100 mailboxes with room
/// for everything, 1,000,000 contacts each enrolled; 10 % due now, the rest over 30 days.
async fn populate(conn: &mut diesel_async::AsyncPgConnection) -> anyhow::Result<()> {
    let workspace = Uuid::now_v7();
    let sequence = Uuid::now_v7();
    let now = Utc::now();
    let statements = [
        "INSERT INTO workspaces (id, name) VALUES ($1, 'bench')",
        "INSERT INTO sequences (id, workspace_id, name, status, send_days, window_start, \
                                window_end, timezone, use_contact_timezone) \
         VALUES ($2, $1, 'bench', 'active', '{1,2,3,4,5,6,7}', '00:00', '23:59:59.999999', \
                 'UTC', false)",
        "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content) \
         VALUES (gen_random_uuid(), $2, 1, 1, 'Hello {{first_name}}', 'Hi'), \
                (gen_random_uuid(), $2, 2, 2, 'Re: Hello', 'Following up'), \
                (gen_random_uuid(), $2, 3, 3, 'Re: Hello', 'Last one')",
        "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, daily_limit, \
                                min_interval_seconds, max_jitter_seconds) \
         SELECT gen_random_uuid(), $1, 'sender' || g || '@bench.example', 'smtp.test', 25, \
                1000000, 0, 0 FROM generate_series(1, $4) g",
        "INSERT INTO sequence_mailboxes (sequence_id, mailbox_id) \
         SELECT $2, id FROM mailboxes WHERE workspace_id = $1",
        "INSERT INTO contacts (id, workspace_id, email, first_name) \
         SELECT gen_random_uuid(), $1, 'lead' || g || '@company' || (g % 997) || '.example', \
                'Lead' FROM generate_series(1, $5) g",
        // Due ones spread over the last hour; the others over 30 days from tomorrow.
        "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                  next_send_at) \
         SELECT gen_random_uuid(), $1, $2, c.id, 1, \
                CASE WHEN row_number() OVER () <= $6 \
                     THEN $3 - random() * interval '1 hour' \
                     ELSE $3 + interval '1 day' + random() * interval '30 days' END \
           FROM contacts c WHERE c.workspace_id = $1",
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
            .bind::<Timestamptz, _>(now)
            .bind::<BigInt, _>(MAILBOXES)
            .bind::<BigInt, _>(ENROLLMENTS)
            .bind::<BigInt, _>(DUE)
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let row: Count = diesel::sql_query(sql).get_result(conn).await?;
    Ok(row.n)
}
