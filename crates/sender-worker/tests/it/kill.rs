//! Two worker processes share 2,000 jobs; one is killed with SIGKILL mid-way. Every message
//! must end sent, failed or unknown, and the SMTP server must hold no email twice.

use std::collections::HashMap;
use std::time::Duration;

use domain::testing::poll_until;
use domain::testing::process_stats::service_command;

use crate::world::{SmtpSink, Step, World};

const MESSAGES: i64 = 2_000;

fn worker_process(world: &World) -> anyhow::Result<tokio::process::Child> {
    let config = &world.config;
    let settings = &config.sender_worker;
    Ok(service_command(env!("CARGO_BIN_EXE_sender-worker"), config)
        .env("SEQ_SENDER_WORKER__ADMIN_BIND", "127.0.0.1:0")
        .env(
            "SEQ_SENDER_WORKER__CONNECT_TIMEOUT_MS",
            settings.connect_timeout_ms.to_string(),
        )
        .env(
            "SEQ_SENDER_WORKER__COMMAND_TIMEOUT_MS",
            settings.command_timeout_ms.to_string(),
        )
        .env(
            "SEQ_SENDER_WORKER__DATA_TIMEOUT_MS",
            settings.data_timeout_ms.to_string(),
        )
        .env(
            "SEQ_SENDER_WORKER__LEASE_SECONDS",
            settings.lease_seconds.to_string(),
        )
        .env(
            "SEQ_SENDER_WORKER__REAPER_INTERVAL_MS",
            settings.reaper_interval_ms.to_string(),
        )
        .env("SEQ_TELEMETRY__LOG_FORMAT", "pretty")
        .spawn()?)
}

#[tokio::test]
async fn a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    let sink = SmtpSink::start(&[]).await?;
    let step = Step {
        subject: "Hello {{first_name|there}}",
        content: "Hi, this is message {Alpha|Beta|Gamma}.",
        thread_with_previous: false,
    };
    let mut world = World::new(sink.addr, &[step]).await?;
    // smtp-sink answers at once; short timeouts keep the killed worker's lease short.
    world.config.sender_worker.connect_timeout_ms = 3_000;
    world.config.sender_worker.command_timeout_ms = 3_000;
    world.config.sender_worker.data_timeout_ms = 3_000;
    world.config.sender_worker.lease_seconds = 20;
    // Enough partitions and mailboxes that both workers get a share of the jobs.
    world.config.kafka.partitions = 4;
    let topics_config = world.config.kafka.clone();
    domain::kafka::ensure_topics(&topics_config, &world.topics.all()).await?;
    let messages = world.enroll_many(MESSAGES, "kill", "example.net").await?;
    world.spread_over_mailboxes(19).await?;

    let mut doomed = worker_process(&world)?;
    let mut survivor = worker_process(&world)?;
    for chunk in messages.chunks(200) {
        futures::future::try_join_all(chunk.iter().map(|id| world.publish_job(*id))).await?;
    }

    // Kill one worker once a few hundred emails are out, the rest still to go.
    poll_until(Duration::from_secs(120), "300 messages sent", || async {
        world
            .count("SELECT count(*) AS n FROM messages WHERE status = 'sent'")
            .await
            .ok()
            .filter(|n| *n >= 300)
    })
    .await?;
    doomed.start_kill()?;
    doomed.wait().await?;
    let sent_at_kill = world
        .count("SELECT count(*) AS n FROM messages WHERE status = 'sent'")
        .await?;
    assert!(
        sent_at_kill < MESSAGES,
        "the kill came too late to test anything"
    );

    // The survivor takes over the partitions, and the killed worker's claims run out.
    poll_until(
        Duration::from_secs(180),
        "every message settled",
        || async {
            world
                .count(
                    "SELECT count(*) AS n FROM messages \
                  WHERE status NOT IN ('sent', 'failed', 'unknown')",
                )
                .await
                .ok()
                .filter(|n| *n == 0)
        },
    )
    .await?;
    let workers = world
        .count("SELECT count(DISTINCT worker_id) AS n FROM messages WHERE status = 'sent'")
        .await?;
    assert_eq!(workers, 2, "both workers sent some of the emails");
    let sent = world
        .count("SELECT count(*) AS n FROM messages WHERE status = 'sent'")
        .await?;
    let unknown = world
        .count("SELECT count(*) AS n FROM messages WHERE status = 'unknown'")
        .await?;
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM messages WHERE status = 'failed'")
            .await?,
        0
    );

    // What the server holds: each Message-ID once; every sent message among them.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for raw in sink.received()? {
        let id = raw
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .ok_or_else(|| anyhow::anyhow!("a dumped email without Message-ID"))?
            .trim()
            .to_owned();
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "emails received twice: {twice:?}");
    let missing: Vec<String> = world
        .headers_with_status("sent")
        .await?
        .into_iter()
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "sent but not on the server: {missing:?}"
    );
    let received = i64::try_from(seen.len())?;
    assert!(
        received >= sent && received <= sent + unknown,
        "received {received}, sent {sent}, unknown {unknown}"
    );

    survivor.start_kill()?;
    survivor.wait().await?;
    sink.stop().await
}
