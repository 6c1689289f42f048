//! A one-click unsubscribe at the real tracker travels through Kafka to the real scheduler,
//! which stops the enrollment and suppresses the address.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use domain::kafka::{TopicNames, ensure_topics};
use domain::testing::{TestDatabase, poll_until, test_config_for};
use domain::tracking_token::TrackingAction;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The ids a tracking token names.
struct Ids {
    workspace_id: Uuid,
    enrollment_id: Uuid,
    message_id: Uuid,
}

impl Ids {
    fn unsubscribe(&self) -> TrackingAction {
        TrackingAction::Unsubscribe {
            workspace_id: self.workspace_id,
            enrollment_id: self.enrollment_id,
            message_id: self.message_id,
        }
    }
}

/// A workspace with a sequence of one step, a contact enrolled in it and the step's message
/// sent an hour ago. The enrollment's next send is far off, so the scheduler leaves it alone.
async fn enrolled_and_sent(db: &TestDatabase) -> anyhow::Result<Ids> {
    let (workspace, sequence, step, mailbox, contact, enrollment, message) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let sent_at = Utc::now() - TimeDelta::hours(1);
    let next = Utc::now() + TimeDelta::days(30);
    for sql in [
        format!("INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'test')"),
        format!(
            "INSERT INTO sequences (id, workspace_id, name, status, send_days, window_start, \
                                    window_end, timezone, use_contact_timezone) \
             VALUES ('{sequence}', '{workspace}', 'test', 'active', '{{1,2,3,4,5,6,7}}', \
                     '09:00', '17:00', 'UTC', false)"
        ),
        format!(
            "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, \
                                wait_days, wait_hours, wait_minutes) \
             VALUES ('{step}', '{sequence}', 1, 1, 'Subject', 'Hello', 0, 0, 0)"
        ),
        format!(
            "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, daily_limit, \
                                    min_interval_seconds, max_jitter_seconds) \
             VALUES ('{mailbox}', '{workspace}', 'sender@example.com', 'smtp.test', 25, 100, 0, 0)"
        ),
        format!(
            "INSERT INTO contacts (id, workspace_id, email) \
             VALUES ('{contact}', '{workspace}', 'ada@example.com')"
        ),
        format!(
            "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                      next_send_at) \
             VALUES ('{enrollment}', '{workspace}', '{sequence}', '{contact}', 1, '{next}')"
        ),
        format!(
            "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                                   contact_id, mailbox_id, status, scheduled_at, sent_at) \
             VALUES ('{message}', '{workspace}', '{enrollment}', '{step}', 1, '{contact}', \
                     '{mailbox}', 'sent', '{sent_at}', '{sent_at}')"
        ),
    ] {
        db.exec(&sql).await?;
    }
    Ok(Ids {
        workspace_id: workspace,
        enrollment_id: enrollment,
        message_id: message,
    })
}

#[tokio::test]
async fn one_click_unsubscribe_stops_the_enrollment_and_suppresses_the_address()
-> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let config = test_config_for(&db)?;
    let ids = enrolled_and_sent(&db).await?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let signer = config
        .security
        .token_signer()
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("test config has no tracking key"))?;
    let tracker = tracker::Application::build(config.clone())?;
    let tracker_url = format!("http://127.0.0.1:{}", tracker.port());
    let shutdown = CancellationToken::new();
    let tracker = tokio::spawn(tracker.run_until_stopped(shutdown.clone()));
    let scheduler = scheduler::Application::build_with(
        config,
        TcpListener::bind("127.0.0.1:0")?,
        Arc::new(domain::clock::SystemClock),
    )?;
    let scheduler = tokio::spawn(scheduler.run_until_stopped(shutdown.clone()));

    // What a mail client's one-click unsubscribe sends (RFC 8058).
    let token = signer.encode(&ids.unsubscribe(), Utc::now() - TimeDelta::hours(1));
    let response = reqwest::Client::new()
        .post(format!("{tracker_url}/u/{token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await?;
    assert_eq!(response.status(), 200);

    let enrollment = ids.enrollment_id;
    poll_until(
        Duration::from_secs(60),
        "the unsubscribe applied",
        || async {
            let suppressed = db
                .count(
                    "SELECT count(*) AS n FROM suppressions \
                  WHERE email = 'ada@example.com' AND reason = 'unsubscribed'",
                )
                .await
                .ok()?;
            let stopped = db
                .count(&format!(
                    "SELECT count(*) AS n FROM enrollments \
                  WHERE id = '{enrollment}' AND status = 'unsubscribed'"
                ))
                .await
                .ok()?;
            (suppressed == 1 && stopped == 1).then_some(())
        },
    )
    .await?;
    assert_eq!(
        db.count("SELECT count(*) AS n FROM contacts WHERE status = 'unsubscribed'")
            .await?,
        1
    );

    shutdown.cancel();
    scheduler.await??;
    tracker.await?
}
