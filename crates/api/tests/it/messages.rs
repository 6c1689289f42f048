//! The workspace's messages and a person's answer for `unknown` ones: listing,
//! `POST /messages/{id}/resolve` with both outcomes, idempotency, 409s, 404s and 422s.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures;
use crate::support::{Tenant, TestApi, assert_error, assert_field_error};

/// A workspace with a two-step sequence and a mailbox.
struct Setup {
    tenant: Tenant,
    sequence_id: String,
    step_a: String,
    mailbox: Uuid,
}

async fn setup(api: &TestApi, name: &str) -> anyhow::Result<Setup> {
    let tenant = api.tenant(name).await?;
    let (status, sequence) = api
        .post(
            "/api/v1/sequences",
            &tenant.key,
            json!({"name": "s", "steps": [{"subject": "A", "content": "a"},
                                          {"subject": "B", "content": "b", "wait_days": 2}]}),
        )
        .await?;
    assert_eq!(status, 201, "{sequence}");
    let mailbox = fixtures::mailbox(&mut api.db().await?, &tenant.id).await?;
    Ok(Setup {
        tenant,
        sequence_id: text(&sequence["id"]),
        step_a: text(&sequence["steps"][0]["id"]),
        mailbox,
    })
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A contact of the setup's workspace enrolled at step 1, with a message of step A in
/// `status`: (enrollment, message).
async fn message_in(api: &TestApi, s: &Setup, status: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let mut db = api.db().await?;
    let email = format!("p-{}@example.com", Uuid::now_v7().simple());
    let contact = fixtures::contact(&mut db, &s.tenant.id, &email).await?;
    let enrollment =
        fixtures::enrollment(&mut db, &s.tenant.id, &s.sequence_id, contact, 1).await?;
    let message = fixtures::message(
        &mut db,
        &s.tenant.id,
        (enrollment, contact, s.mailbox),
        &s.step_a,
        status,
    )
    .await?;
    Ok((enrollment, message))
}

async fn resolve(
    api: &TestApi,
    key: &str,
    message: impl std::fmt::Display,
    outcome: &str,
) -> anyhow::Result<(u16, Value)> {
    api.post(
        &format!("/api/v1/messages/{message}/resolve"),
        key,
        json!({ "outcome": outcome }),
    )
    .await
}

async fn resolved_events(api: &TestApi, key: &str, enrollment: Uuid) -> anyhow::Result<Vec<Value>> {
    let (status, timeline) = api
        .get(&format!("/api/v1/enrollments/{enrollment}/events"), key)
        .await?;
    assert_eq!(status, 200, "{timeline}");
    Ok(timeline["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event_type"] == "resolved")
        .cloned()
        .collect())
}

/// Records waiting in the outbox for this message.
async fn outbox_records(api: &TestApi, message: Uuid) -> anyhow::Result<i64> {
    api.database()
        .count(&format!(
            "SELECT count(*) AS n FROM outbox WHERE payload -> 'payload' ->> 'message_id' = '{message}'"
        ))
        .await
}

async fn key_id(api: &TestApi, key: &str) -> anyhow::Result<String> {
    let (_, keys) = api.get("/api/v1/api-keys", key).await?;
    Ok(text(&keys["data"][0]["id"]))
}

#[tokio::test]
async fn unknown_messages_are_listed_across_the_workspace_only() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api, "acme").await?;
    let second = {
        let mut db = api.db().await?;
        let (_, sequence) = api
            .post(
                "/api/v1/sequences",
                &s.tenant.key,
                json!({"name": "other", "steps": [{"subject": "C", "content": "c"}]}),
            )
            .await?;
        let contact = fixtures::contact(&mut db, &s.tenant.id, "q@example.com").await?;
        let enrollment =
            fixtures::enrollment(&mut db, &s.tenant.id, &text(&sequence["id"]), contact, 1).await?;
        fixtures::message(
            &mut db,
            &s.tenant.id,
            (enrollment, contact, s.mailbox),
            &text(&sequence["steps"][0]["id"]),
            "unknown",
        )
        .await?
    };
    let (_, first) = message_in(&api, &s, "unknown").await?;
    let (_, sent) = message_in(&api, &s, "sent").await?;
    let other = setup(&api, "other").await?;
    let (_, elsewhere) = message_in(&api, &other, "unknown").await?;

    let (status, page) = api
        .get("/api/v1/messages?status=unknown&limit=1", &s.tenant.key)
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["id"], second.to_string(), "{page}");
    assert_eq!(page["data"][0]["status"], "unknown");
    assert_eq!(page["data"][0]["resolution"], Value::Null);
    let cursor = text(&page["next_cursor"]);
    let (_, rest) = api
        .get(
            &format!("/api/v1/messages?status=unknown&limit=1&cursor={cursor}"),
            &s.tenant.key,
        )
        .await?;
    assert_eq!(rest["data"][0]["id"], first.to_string(), "{rest}");
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["next_cursor"], Value::Null, "{rest}");

    let (_, all) = api.get("/api/v1/messages", &s.tenant.key).await?;
    let ids: Vec<String> = all["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| text(&m["id"]))
        .collect();
    assert_eq!(
        ids,
        [second, first, sent].map(|id| id.to_string()),
        "every message of the workspace, none of another's"
    );
    let (_, theirs) = api
        .get("/api/v1/messages?status=unknown", &other.tenant.key)
        .await?;
    assert_eq!(theirs["data"][0]["id"], elsewhere.to_string());
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(1));

    let (status, error) = api
        .get("/api/v1/messages?status=lost", &s.tenant.key)
        .await?;
    assert_field_error(status, &error, "status");
    let (status, error) = api.get("/api/v1/messages?limit=0", &s.tenant.key).await?;
    assert_field_error(status, &error, "limit");
    Ok(())
}

#[tokio::test]
async fn resolving_as_sent_announces_the_send_once_and_audits_it() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api, "acme").await?;
    let key = &s.tenant.key;
    let (enrollment, message) = message_in(&api, &s, "unknown").await?;

    let (status, resolved) = resolve(&api, key, message, "sent").await?;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "sent");
    assert_eq!(resolved["resolution"], "sent");
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    assert!(resolved["sent_at"].is_string(), "{resolved}");

    // The scheduler learns of it as of any send: a `sent` event on email-events, keyed by
    // the enrollment, with the step's position and the Message-ID.
    let announced = api
        .database()
        .count(&format!(
            "SELECT count(*) AS n FROM outbox \
              WHERE topic LIKE '%email-events' AND message_key = '{enrollment}' \
                AND payload ->> 'type' = 'sent' \
                AND payload -> 'payload' ->> 'message_id' = '{message}' \
                AND payload -> 'payload' ->> 'enrollment_id' = '{enrollment}' \
                AND (payload -> 'payload' ->> 'step_order')::int = 1 \
                AND payload -> 'payload' ->> 'message_id_header' = '<{message}@example.com>' \
                AND payload ->> 'workspace_id' = '{}'",
            s.tenant.id
        ))
        .await?;
    assert_eq!(announced, 1);
    assert_eq!(
        fixtures::current_step(&mut api.db().await?, enrollment).await?,
        1,
        "the API does not move the enrollment: the scheduler does, from the event"
    );
    let audit = resolved_events(&api, key, enrollment).await?;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "sent");
    assert_eq!(audit[0]["message_id"], message.to_string());
    assert_eq!(audit[0]["step_order"], resolved["step_order"]);
    assert_eq!(
        audit[0]["resolved_by"],
        format!("api_key:{}", key_id(&api, key).await?)
    );

    // Again: the same answer, nothing more announced or audited.
    let (status, again) = resolve(&api, key, message, "sent").await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, resolved);
    assert_eq!(outbox_records(&api, message).await?, 1);
    assert_eq!(resolved_events(&api, key, enrollment).await?.len(), 1);

    // Another answer now conflicts.
    let (status, error) = resolve(&api, key, message, "not_sent").await?;
    assert_error(status, &error, 409, "conflict");
    let (_, listed) = api.get("/api/v1/messages?status=sent", key).await?;
    assert_eq!(
        listed["data"][0], resolved,
        "unchanged by the refused answer"
    );
    Ok(())
}

#[tokio::test]
async fn resolving_as_not_sent_queues_a_retry_of_the_same_message() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api, "acme").await?;
    let key = &s.tenant.key;
    let (enrollment, message) = message_in(&api, &s, "unknown").await?;

    let (status, resolved) = resolve(&api, key, message, "not_sent").await?;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "retrying");
    assert_eq!(resolved["resolution"], "not_sent");
    assert_eq!(
        resolved["attempts"], 1,
        "the scheduler counts the next attempt"
    );
    assert_eq!(
        resolved["message_id_header"],
        format!("<{message}@example.com>")
    );
    assert_eq!(resolved["sent_at"], Value::Null);
    let due_now = api
        .database()
        .count(&format!(
            "SELECT count(*) AS n FROM messages \
              WHERE id = '{message}' AND retry_at = resolved_at AND retry_at <= now()"
        ))
        .await?;
    assert_eq!(due_now, 1, "due for the scheduler's next round");
    assert_eq!(
        outbox_records(&api, message).await?,
        0,
        "nothing to announce"
    );
    let audit = resolved_events(&api, key, enrollment).await?;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "not_sent");

    let (status, again) = resolve(&api, key, message, "not_sent").await?;
    assert_eq!((status, &again), (200, &resolved));
    assert_eq!(resolved_events(&api, key, enrollment).await?.len(), 1);
    let (status, error) = resolve(&api, key, message, "sent").await?;
    assert_error(status, &error, 409, "conflict");

    // The retry went out and became unknown again: it can be resolved again.
    api.database()
        .exec(&format!(
            "UPDATE messages SET status = 'unknown', attempts = 2, retry_at = NULL \
              WHERE id = '{message}'"
        ))
        .await?;
    let (status, second) = resolve(&api, key, message, "not_sent").await?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["status"], "retrying");
    assert_eq!(resolved_events(&api, key, enrollment).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn only_unknown_messages_are_resolved() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api, "acme").await?;
    let key = &s.tenant.key;
    for status in [
        "queued",
        "sending",
        "sent",
        "failed",
        "bounced",
        "cancelled",
        "retrying",
    ] {
        let (enrollment, message) = message_in(&api, &s, status).await?;
        for outcome in ["sent", "not_sent"] {
            let (code, error) = resolve(&api, key, message, outcome).await?;
            assert_error(code, &error, 409, "conflict");
            assert!(
                text(&error["error"]["message"]).contains(status),
                "names the state: {error}"
            );
        }
        let (_, listed) = api
            .get(&format!("/api/v1/messages?status={status}"), key)
            .await?;
        assert_eq!(listed["data"][0]["resolution"], Value::Null, "{status}");
        assert!(resolved_events(&api, key, enrollment).await?.is_empty());
    }
    assert_eq!(
        api.database()
            .count("SELECT count(*) AS n FROM outbox")
            .await?,
        0
    );
    Ok(())
}

#[tokio::test]
async fn another_workspace_s_message_is_not_found_and_bad_outcomes_are_named() -> anyhow::Result<()>
{
    let api = TestApi::start().await?;
    let s = setup(&api, "acme").await?;
    let (_, message) = message_in(&api, &s, "unknown").await?;
    let other = api.tenant("other").await?;

    let (status, error) = resolve(&api, &other.key, message, "sent").await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = resolve(&api, &s.tenant.key, Uuid::now_v7(), "sent").await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = resolve(&api, &s.tenant.key, "not-an-id", "sent").await?;
    assert_error(status, &error, 404, "not_found");

    let path = format!("/api/v1/messages/{message}/resolve");
    for body in [
        json!({"outcome": "delivered"}),
        json!({"outcome": "Sent"}),
        json!({"outcome": 1}),
        json!({}),
    ] {
        let (status, error) = api.post(&path, &s.tenant.key, body.clone()).await?;
        assert_field_error(status, &error, "outcome");
    }
    let (status, error) = api
        .post(
            &path,
            &s.tenant.key,
            json!({"outcome": "sent", "status": "sent"}),
        )
        .await?;
    assert_field_error(status, &error, "status");

    let (_, listed) = api
        .get("/api/v1/messages?status=unknown", &s.tenant.key)
        .await?;
    assert_eq!(
        listed["data"][0]["id"],
        message.to_string(),
        "still unknown after all that"
    );
    Ok(())
}
