//! What the API shows and lets a client set of a mailbox's health: the reputation guard's
//! thresholds (validated fractions), a pause by the guard and its one-call resume, and the
//! automatic re-check schedule of a mailbox in `error`.

use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{TestApi, assert_field_error};

fn plain_mailbox(email: &str, port: u16) -> Value {
    json!({
        "email": email,
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
    })
}

fn path_of(body: &Value) -> String {
    format!(
        "/api/v1/mailboxes/{}",
        body["id"].as_str().unwrap_or_default()
    )
}

#[tokio::test]
async fn reputation_thresholds_have_defaults_and_are_fractions() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let (status, defaults) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            plain_mailbox("ana@acme.example", 25),
        )
        .await?;
    assert_eq!(status, 201, "{defaults}");
    assert_eq!(defaults["max_bounce_rate"], 0.05);
    assert_eq!(defaults["max_complaint_rate"], 0.003);
    assert_eq!(defaults["check_failures"], 0);
    assert!(defaults["next_check_at"].is_null());

    let mut body = plain_mailbox("bo@acme.example", 25);
    body["max_bounce_rate"] = json!(0.1);
    body["max_complaint_rate"] = json!(0);
    let (status, chosen) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    assert_eq!(status, 201, "{chosen}");
    assert_eq!(chosen["max_bounce_rate"], 0.1);
    assert_eq!(chosen["max_complaint_rate"], 0.0);

    let path = path_of(&chosen);
    let (status, updated) = api
        .put(&path, &tenant.key, json!({"max_complaint_rate": 1}))
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["max_complaint_rate"], 1.0);
    assert_eq!(updated["max_bounce_rate"], 0.1, "omitted keeps its value");

    // Outside 0..1: a 422 naming each field, on create and update; nothing is stored.
    let mut body = plain_mailbox("cy@acme.example", 25);
    body["max_bounce_rate"] = json!(1.5);
    body["max_complaint_rate"] = json!(-0.001);
    let (status, error) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    assert_field_error(status, &error, "max_bounce_rate");
    assert_field_error(status, &error, "max_complaint_rate");
    for field in ["max_bounce_rate", "max_complaint_rate"] {
        let (status, error) = api.put(&path, &tenant.key, json!({field: 2})).await?;
        assert_field_error(status, &error, field);
        let (status, error) = api.put(&path, &tenant.key, json!({field: "5%"})).await?;
        assert_field_error(status, &error, field);
    }
    let (_, unchanged) = api.get(&path, &tenant.key).await?;
    assert_eq!(unchanged, updated);
    Ok(())
}

#[tokio::test]
async fn a_mailbox_the_guard_paused_shows_why_and_resumes_with_one_call() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (_, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            plain_mailbox("ana@acme.example", 25),
        )
        .await?;
    let path = path_of(&created);
    // What the scheduler's reputation guard writes.
    api.db()
        .await?
        .batch_execute(&format!(
            "UPDATE mailboxes SET status = 'paused', status_reason = 'bounce rate 4/50 over 5%' \
              WHERE id = '{}'",
            created["id"].as_str().unwrap_or_default()
        ))
        .await?;

    let (_, paused) = api.get(&path, &tenant.key).await?;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["status_reason"], "bounce rate 4/50 over 5%");

    let (status, resumed) = api
        .put(&path, &tenant.key, json!({"status": "active"}))
        .await?;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "active");
    assert!(resumed["status_reason"].is_null());
    Ok(())
}

#[tokio::test]
async fn a_mailbox_in_error_shows_its_next_check_and_a_verify_starts_it_over() -> anyhow::Result<()>
{
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let (_, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            plain_mailbox("ana@acme.example", closed),
        )
        .await?;
    let path = path_of(&created);
    let (_, verified) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(verified["status"], "error", "{verified}");

    // What the sender worker's re-checks write after three failures.
    api.db()
        .await?
        .batch_execute(&format!(
            "UPDATE mailboxes SET next_check_at = '2026-03-02T12:00:00Z', check_failures = 3 \
              WHERE id = '{}'",
            created["id"].as_str().unwrap_or_default()
        ))
        .await?;
    let (_, failing) = api.get(&path, &tenant.key).await?;
    assert_eq!(failing["status"], "error");
    assert_eq!(failing["next_check_at"], "2026-03-02T12:00:00Z");
    assert_eq!(failing["check_failures"], 3);

    // A person's verify starts the schedule over (the worker gives it its first wait).
    let (_, again) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(again["status"], "error", "{again}");
    let (_, restarted) = api.get(&path, &tenant.key).await?;
    assert!(restarted["next_check_at"].is_null(), "{restarted}");
    assert_eq!(restarted["check_failures"], 0);

    // And any change of status by a person clears it too.
    api.db()
        .await?
        .batch_execute(&format!(
            "UPDATE mailboxes SET next_check_at = '2026-03-02T12:00:00Z', check_failures = 1 \
              WHERE id = '{}'",
            created["id"].as_str().unwrap_or_default()
        ))
        .await?;
    let (status, disabled) = api
        .put(&path, &tenant.key, json!({"status": "disabled"}))
        .await?;
    assert_eq!(status, 200, "{disabled}");
    assert!(disabled["next_check_at"].is_null());
    assert_eq!(disabled["check_failures"], 0);
    Ok(())
}
