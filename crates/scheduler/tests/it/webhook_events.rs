//! What applying events announces on `webhook-events`: one outbox record per recorded event,
//! keyed by enrollment, plus the enrollment's completion or stop, and nothing on a replay.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use domain::events::{
    Client, EmailEvent, EmailRetry, Inbound, MessageRef, RetryRequest, WebhookEvent,
};
use domain::kafka::Envelope;
use scheduler::retries::{self, Outcome};
use serde_json::json;
use uuid::Uuid;

use crate::outcomes::{
    WEBHOOK_EVENTS, apply, envelope, one_dispatched_step, one_sent_step, sent, webhooks,
};
use crate::world::{World, at};

/// The records waiting in the outbox for `topic`, in the order they will be published.
pub async fn announced_on(
    world: &World,
    topic: &str,
) -> anyhow::Result<Vec<(String, Envelope<WebhookEvent>)>> {
    world.outbox_records(topic).await
}

/// Gives the world's workspace an enabled webhook endpoint that wants `event_types` (empty:
/// everything): the scheduler announces only what such an endpoint wants.
pub async fn subscribe(world: &World, event_types: &[&str]) -> anyhow::Result<()> {
    let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
    diesel::sql_query(
        "INSERT INTO webhook_endpoints (id, workspace_id, url, event_types, secret_encrypted) \
         VALUES (gen_random_uuid(), $1, 'https://hooks.example/in', $2, '\\x00')",
    )
    .bind::<diesel::sql_types::Uuid, _>(world.workspace_id)
    .bind::<diesel::sql_types::Array<Text>, _>(&types)
    .execute(&mut world.conn().await?)
    .await?;
    Ok(())
}

async fn announced(world: &World) -> anyhow::Result<Vec<(String, Envelope<WebhookEvent>)>> {
    announced_on(world, WEBHOOK_EVENTS).await
}

fn types(announced: &[(String, Envelope<WebhookEvent>)]) -> Vec<&str> {
    announced
        .iter()
        .map(|(_, e)| e.body.event_type.as_str())
        .collect()
}

async fn contact_of(world: &World, enrollment: Uuid) -> anyhow::Result<serde_json::Value> {
    #[derive(diesel::QueryableByName)]
    struct Contact {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        email: String,
    }
    let contact: Contact = diesel::sql_query(
        "SELECT c.id, c.email FROM contacts c JOIN enrollments e ON e.contact_id = c.id \
          WHERE e.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(enrollment)
    .get_result(&mut world.conn().await?)
    .await?;
    Ok(json!({"id": contact.id, "email": contact.email}))
}

/// The fields every `data` has, for the enrollment's first message.
async fn common(
    world: &World,
    enrollment: Uuid,
    message: Option<Uuid>,
) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "workspace_id": world.workspace_id,
        "enrollment_id": enrollment,
        "sequence_id": world.sequence_id,
        "step_order": 1,
        "message_id": message,
        "contact": contact_of(world, enrollment).await?,
    }))
}

fn with(mut data: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    if let (Some(data), serde_json::Value::Object(more)) = (data.as_object_mut(), more) {
        data.extend(more);
    }
    data
}

#[tokio::test]
async fn sent_clicked_and_bounced_are_announced_once_each() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    subscribe(&world, &[]).await?;
    let common = common(&world, enrollment, Some(message)).await?;
    let key = enrollment.to_string();
    let refs = MessageRef {
        message_id: message,
        enrollment_id: enrollment,
    };

    let sent = envelope(&world, now, sent(message, enrollment, 1));
    assert!(apply(&world, &sent).await?);
    assert!(!apply(&world, &sent).await?, "a redelivery");
    let records = announced(&world).await?;
    assert_eq!(types(&records), ["message.sent"]);
    let (record_key, record) = &records[0];
    assert_eq!(record_key, &key);
    assert_eq!(
        (record.id, record.occurred_at, record.workspace_id),
        (sent.id, now, world.workspace_id)
    );
    assert_eq!(
        record.body.data,
        with(
            common.clone(),
            json!({"message_id_header": format!("<{message}@example.com>")})
        )
    );

    let clicked_at = now + chrono::TimeDelta::seconds(2);
    let clicked = envelope(
        &world,
        clicked_at,
        EmailEvent::Clicked {
            message: refs.clone(),
            url: "https://example.com/pricing".to_owned(),
            is_bot: true,
            bot_reason: Some("click within 2 s of delivery".to_owned()),
            client: Client {
                user_agent: Some("Scanner/1.0".to_owned()),
                client_ip: Some("203.0.113.0".to_owned()),
            },
        },
    );
    assert!(apply(&world, &clicked).await?);
    assert!(!apply(&world, &clicked).await?);
    let records = announced(&world).await?;
    assert_eq!(types(&records), ["message.sent", "message.clicked"]);
    let (record_key, record) = &records[1];
    assert_eq!((record_key, record.id), (&key, clicked.id));
    assert_eq!(record.occurred_at, clicked_at);
    assert_eq!(
        record.body.data,
        with(
            common.clone(),
            json!({"url": "https://example.com/pricing", "is_bot": true,
                   "bot_reason": "click within 2 s of delivery"})
        )
    );

    // A hard bounce also stops the enrollment (the contact is suppressed).
    let bounced = envelope(
        &world,
        now,
        EmailEvent::Bounced {
            message: refs,
            hard: true,
            diagnostic: Some("550 5.1.1 no such user".to_owned()),
        },
    );
    assert!(apply(&world, &bounced).await?);
    assert!(!apply(&world, &bounced).await?);
    let records = announced(&world).await?;
    assert_eq!(
        types(&records),
        [
            "message.sent",
            "message.clicked",
            "message.bounced",
            "enrollment.stopped"
        ]
    );
    assert!(records.iter().all(|(k, _)| k == &key));
    assert_eq!(records[2].1.id, bounced.id);
    assert_eq!(
        records[2].1.body.data,
        with(
            common.clone(),
            json!({"bounce_type": "hard", "diagnostic": "550 5.1.1 no such user"})
        )
    );
    assert_eq!(
        records[3].1.body.data,
        with(
            common,
            json!({"status": "bounced", "reason": "hard_bounce"})
        )
    );
    assert_ne!(records[3].1.id, bounced.id);
    Ok(())
}

#[tokio::test]
async fn a_reply_that_stops_the_enrollment_announces_both() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    subscribe(&world, &[]).await?;
    world
        .exec("UPDATE sequences SET stop_on_reply = true")
        .await?;
    let received_at = now + chrono::TimeDelta::hours(1);
    let reply = envelope(
        &world,
        received_at,
        EmailEvent::Replied {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            inbound: Inbound {
                inbound_message_id: Some("<reply@example.com>".to_owned()),
                from: Some("prospect@example.com".to_owned()),
                subject: Some("Re: Quick question".to_owned()),
            },
        },
    );
    assert!(apply(&world, &reply).await?);
    assert!(!apply(&world, &reply).await?, "a redelivery");
    assert_eq!(world.enrollment(enrollment).await?.status, "replied");

    let records = announced(&world).await?;
    assert_eq!(types(&records), ["contact.replied", "enrollment.stopped"]);
    let common = common(&world, enrollment, Some(message)).await?;
    let (key, replied) = &records[0];
    assert_eq!((key, replied.id), (&enrollment.to_string(), reply.id));
    assert_eq!(
        replied.body.data,
        with(
            common.clone(),
            json!({"from": "prospect@example.com", "subject": "Re: Quick question",
                   "received_at": received_at})
        )
    );
    let (key, stopped) = &records[1];
    assert_eq!(key, &enrollment.to_string());
    assert_eq!(stopped.occurred_at, received_at);
    assert_eq!(
        stopped.body.data,
        with(common, json!({"status": "replied", "reason": "replied"}))
    );
    Ok(())
}

#[tokio::test]
async fn the_last_step_sent_also_announces_the_completion() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0)], now).await?;
    subscribe(&world, &[]).await?;
    let sent = envelope(&world, now, sent(message, enrollment, 1));
    assert!(apply(&world, &sent).await?);
    assert!(!apply(&world, &sent).await?);
    assert_eq!(world.enrollment(enrollment).await?.status, "completed");
    // A second `sent` of the same step under another id (a stale producer) is recorded, but
    // the enrollment was completed already.
    let stale = envelope(&world, now, sent.body.clone());
    assert!(apply(&world, &stale).await?);

    let records = announced(&world).await?;
    assert_eq!(
        types(&records),
        ["message.sent", "enrollment.completed", "message.sent"]
    );
    let (key, completed) = &records[1];
    assert_eq!(key, &enrollment.to_string());
    assert_eq!(
        completed.body.data,
        common(&world, enrollment, Some(message)).await?
    );
    Ok(())
}

#[tokio::test]
async fn retries_used_up_announce_the_failure_and_the_stop() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_dispatched_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    subscribe(&world, &[]).await?;
    let mut record = Envelope::new(
        world.workspace_id,
        EmailRetry::Retry(RetryRequest {
            message_id: message,
            enrollment_id: enrollment,
            mailbox_id: world.mailboxes[0],
            attempt: 1,
            not_before: None,
            error: "421 try again later".to_owned(),
        }),
    );
    record.occurred_at = now;
    let EmailRetry::Retry(request) = record.body.clone();
    let no_retries: [Duration; 0] = [];
    for expected in [Outcome::Failed, Outcome::Ignored] {
        let mut conn = world.conn().await?;
        let outcome = conn
            .transaction(async |tx| {
                retries::apply(tx, &record, &request, &no_retries, &webhooks()).await
            })
            .await?;
        assert_eq!(outcome, expected);
    }

    let records = announced(&world).await?;
    assert_eq!(types(&records), ["message.failed", "enrollment.stopped"]);
    let common = common(&world, enrollment, Some(message)).await?;
    assert_eq!(records[0].1.id, record.id);
    assert_eq!(
        records[0].1.body.data,
        with(common.clone(), json!({"reason": "421 try again later"}))
    );
    assert_eq!(
        records[1].1.body.data,
        with(
            common,
            json!({"status": "failed", "reason": "retries_exhausted"})
        )
    );
    assert!(records.iter().all(|(k, _)| k == &enrollment.to_string()));
    Ok(())
}

#[tokio::test]
async fn only_what_an_enabled_endpoint_wants_is_announced() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0)], now).await?;
    let refs = MessageRef {
        message_id: message,
        enrollment_id: enrollment,
    };
    let opened = |at| {
        envelope(
            &world,
            at,
            EmailEvent::Opened {
                message: refs.clone(),
                is_bot: false,
                bot_reason: None,
                client: Client::default(),
            },
        )
    };

    // No endpoint: the event is recorded and applied, nothing is written for it.
    assert!(apply(&world, &opened(now)).await?);
    assert!(announced(&world).await?.is_empty());

    // A disabled endpoint wants nothing.
    subscribe(&world, &[]).await?;
    world
        .exec("UPDATE webhook_endpoints SET enabled = false")
        .await?;
    assert!(apply(&world, &opened(now)).await?);
    assert!(announced(&world).await?.is_empty());

    // One that wants sends gets the send, not the completion nor an open.
    subscribe(&world, &["message.sent"]).await?;
    let sent = envelope(&world, now, sent(message, enrollment, 1));
    assert!(apply(&world, &sent).await?);
    assert_eq!(world.enrollment(enrollment).await?.status, "completed");
    assert!(apply(&world, &opened(now)).await?);
    let records = announced(&world).await?;
    assert_eq!(types(&records), ["message.sent"]);
    assert_eq!(records[0].1.id, sent.id);
    assert_eq!(
        world.count("SELECT count(*) AS n FROM events").await?,
        4,
        "every event recorded"
    );
    Ok(())
}
