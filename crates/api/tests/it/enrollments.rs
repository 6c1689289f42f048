use serde_json::{Value, json};

use crate::fixtures;
use crate::support::{Tenant, TestApi, assert_error, assert_field_error};

struct Setup {
    tenant: Tenant,
    sequence: Value,
    mailbox: uuid::Uuid,
}

async fn setup(api: &TestApi) -> anyhow::Result<Setup> {
    let tenant = api.tenant("acme").await?;
    let (_, sequence) = api
        .post(
            "/api/v1/sequences",
            &tenant.key,
            json!({"name": "s", "steps": [{"subject": "A", "content": "a"}, {"subject": "B", "content": "b", "wait_days": 2}]}),
        )
        .await?;
    let mailbox = fixtures::mailbox(&mut api.db().await?, &tenant.id).await?;
    Ok(Setup {
        tenant,
        sequence,
        mailbox,
    })
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn list_and_act_on_enrollments() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let key = &s.tenant.key;
    let seq = id(&s.sequence);
    let mut db = api.db().await?;
    let mut enrollments = Vec::new();
    for i in 0..3 {
        let contact =
            fixtures::contact(&mut db, &s.tenant.id, &format!("p{i}@example.com")).await?;
        enrollments.push(fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 1).await?);
    }

    let (status, page) = api
        .get(&format!("/api/v1/sequences/{seq}/contacts?limit=2"), key)
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["data"][0]["email"], "p0@example.com");
    assert_eq!(page["data"][0]["status"], "active");
    assert_eq!(page["data"][0]["current_step"], 1);
    let cursor = page["next_cursor"].as_str().unwrap_or_default();
    let (_, rest) = api
        .get(
            &format!("/api/v1/sequences/{seq}/contacts?limit=2&cursor={cursor}"),
            key,
        )
        .await?;
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(1));
    assert!(rest["next_cursor"].is_null());

    let e = enrollments[0];
    let (status, paused) = api
        .post(&format!("/api/v1/enrollments/{e}/pause"), key, json!({}))
        .await?;
    assert_eq!(
        (status, paused["status"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    let (status, resumed) = api
        .post(&format!("/api/v1/enrollments/{e}/resume"), key, json!({}))
        .await?;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("active")));
    assert_eq!(resumed["current_step"], 1, "resume keeps the place");
    let (status, stopped) = api
        .post(&format!("/api/v1/enrollments/{e}/stop"), key, json!({}))
        .await?;
    assert_eq!((status, stopped["status"].as_str()), (200, Some("stopped")));
    assert!(stopped["stop_reason"].is_string());
    let (status, error) = api
        .post(&format!("/api/v1/enrollments/{e}/resume"), key, json!({}))
        .await?;
    assert_error(status, &error, 409, "conflict");

    let (_, stopped_only) = api
        .get(
            &format!("/api/v1/sequences/{seq}/contacts?status=stopped"),
            key,
        )
        .await?;
    assert_eq!(stopped_only["data"].as_array().map(Vec::len), Some(1));
    let (status, error) = api
        .get(
            &format!("/api/v1/sequences/{seq}/contacts?status=nope"),
            key,
        )
        .await?;
    assert_field_error(status, &error, "status");
    Ok(())
}

#[tokio::test]
async fn resume_never_resends_a_sent_step() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let seq = id(&s.sequence);
    let step_a = s.sequence["steps"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut db = api.db().await?;
    let contact = fixtures::contact(&mut db, &s.tenant.id, "p@example.com").await?;
    // Step A went out; the enrollment now waits for B (position 2).
    let e = fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 2).await?;
    fixtures::sent_message(&mut db, &s.tenant.id, e, contact, s.mailbox, &step_a).await?;
    api.post(
        &format!("/api/v1/enrollments/{e}/pause"),
        &s.tenant.key,
        json!({}),
    )
    .await?;
    let (_, resumed) = api
        .post(
            &format!("/api/v1/enrollments/{e}/resume"),
            &s.tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(resumed["current_step"], 2, "resumes at B, not A: {resumed}");
    Ok(())
}

#[tokio::test]
async fn timeline_lists_events_in_order() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let seq = id(&s.sequence);
    let step_a = s.sequence["steps"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut db = api.db().await?;
    let contact = fixtures::contact(&mut db, &s.tenant.id, "p@example.com").await?;
    let e = fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 2).await?;
    let m = fixtures::sent_message(&mut db, &s.tenant.id, e, contact, s.mailbox, &step_a).await?;
    for kind in ["sent", "opened", "replied"] {
        fixtures::event(&mut db, &s.tenant.id, e, m, kind, None).await?;
    }
    let (status, timeline) = api
        .get(&format!("/api/v1/enrollments/{e}/events"), &s.tenant.key)
        .await?;
    assert_eq!(status, 200, "{timeline}");
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["event_type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["sent", "opened", "replied"]);
    assert_eq!(timeline["events"][0]["step_order"], 1);
    assert_eq!(timeline["enrollment"]["email"], "p@example.com");
    Ok(())
}

#[tokio::test]
async fn enrollments_are_isolated_between_workspaces() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let other = api.tenant("other").await?;
    let seq = id(&s.sequence);
    let mut db = api.db().await?;
    let contact = fixtures::contact(&mut db, &s.tenant.id, "p@example.com").await?;
    let e = fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 1).await?;
    for (status, body) in [
        api.get(&format!("/api/v1/sequences/{seq}/contacts"), &other.key)
            .await?,
        api.get(&format!("/api/v1/enrollments/{e}"), &other.key)
            .await?,
        api.get(&format!("/api/v1/enrollments/{e}/events"), &other.key)
            .await?,
        api.post(
            &format!("/api/v1/enrollments/{e}/pause"),
            &other.key,
            json!({}),
        )
        .await?,
        api.post(
            &format!("/api/v1/enrollments/{e}/stop"),
            &other.key,
            json!({}),
        )
        .await?,
        api.get(&format!("/api/v1/sequences/{seq}/messages"), &other.key)
            .await?,
        api.get(&format!("/api/v1/sequences/{seq}/stats"), &other.key)
            .await?,
    ] {
        assert_error(status, &body, 404, "not_found");
    }
    let (_, mine) = api
        .get(&format!("/api/v1/enrollments/{e}"), &s.tenant.key)
        .await?;
    assert_eq!(mine["status"], "active", "untouched by the other workspace");
    Ok(())
}

#[tokio::test]
async fn messages_are_listed_with_their_state() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let seq = id(&s.sequence);
    let step_a = s.sequence["steps"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut db = api.db().await?;
    let contact = fixtures::contact(&mut db, &s.tenant.id, "p@example.com").await?;
    let e = fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 2).await?;
    let m = fixtures::sent_message(&mut db, &s.tenant.id, e, contact, s.mailbox, &step_a).await?;
    let (status, page) = api
        .get(&format!("/api/v1/sequences/{seq}/messages"), &s.tenant.key)
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["id"], m.to_string());
    assert_eq!(page["data"][0]["status"], "sent");
    assert_eq!(page["data"][0]["email"], "p@example.com");
    assert_eq!(page["data"][0]["step_order"], 1);
    let (_, queued) = api
        .get(
            &format!("/api/v1/sequences/{seq}/messages?status=queued"),
            &s.tenant.key,
        )
        .await?;
    assert_eq!(queued["data"].as_array().map(Vec::len), Some(0));
    let (status, error) = api
        .get(
            &format!("/api/v1/sequences/{seq}/messages?status=lost"),
            &s.tenant.key,
        )
        .await?;
    assert_field_error(status, &error, "status");
    Ok(())
}

#[tokio::test]
async fn stats_count_unique_outcomes_with_bots_apart() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let s = setup(&api).await?;
    let seq = id(&s.sequence);
    let step_a = s.sequence["steps"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut db = api.db().await?;
    let mut messages = Vec::new();
    for i in 0..4 {
        let contact =
            fixtures::contact(&mut db, &s.tenant.id, &format!("p{i}@example.com")).await?;
        let e = fixtures::enrollment(&mut db, &s.tenant.id, &seq, contact, 2).await?;
        let m =
            fixtures::sent_message(&mut db, &s.tenant.id, e, contact, s.mailbox, &step_a).await?;
        fixtures::event(&mut db, &s.tenant.id, e, m, "sent", None).await?;
        messages.push((e, m));
    }
    let (e0, m0) = messages[0];
    let (e1, m1) = messages[1];
    // Two human opens and a bot open of one email: one human open, one bot open.
    fixtures::event(&mut db, &s.tenant.id, e0, m0, "opened", Some(false)).await?;
    fixtures::event(&mut db, &s.tenant.id, e0, m0, "opened", Some(false)).await?;
    fixtures::event(&mut db, &s.tenant.id, e0, m0, "opened", Some(true)).await?;
    fixtures::event(&mut db, &s.tenant.id, e1, m1, "opened", Some(true)).await?;
    fixtures::event(&mut db, &s.tenant.id, e0, m0, "clicked", Some(false)).await?;
    fixtures::event(&mut db, &s.tenant.id, e1, m1, "replied", None).await?;
    fixtures::set_enrollment_status(&mut db, e1, "replied").await?;

    let (status, stats) = api
        .get(&format!("/api/v1/sequences/{seq}/stats"), &s.tenant.key)
        .await?;
    assert_eq!(status, 200, "{stats}");
    let step = &stats["steps"][0]["counts"];
    assert_eq!(step["sent"], 4, "{stats}");
    assert_eq!(step["opened"], json!({"human": 1, "bot": 2}));
    assert_eq!(step["clicked"], json!({"human": 1, "bot": 0}));
    assert_eq!(step["replied"], 1);
    assert_eq!(step["rates"]["open_rate"], 0.25);
    assert_eq!(step["rates"]["reply_rate"], 0.25);
    assert_eq!(
        stats["steps"][1]["counts"]["sent"], 0,
        "step B not sent yet"
    );
    assert_eq!(stats["totals"]["sent"], 4);
    assert_eq!(stats["enrollments"]["enrolled"], 4);
    assert_eq!(stats["enrollments"]["active"], 3);
    assert_eq!(stats["enrollments"]["replied"], 1);
    Ok(())
}
