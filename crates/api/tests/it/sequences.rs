use serde_json::{Value, json};

use crate::fixtures;
use crate::support::{TestApi, assert_conflicting_field, assert_error, assert_field_error};

/// The seed README's example request, byte for byte.
const SEED_EXAMPLE: &str = r#"{"name": "Welcome Sequence", "open_tracking_enabled": true, "click_tracking_enabled": true, "steps": [{"step_order": 0, "subject": "Welcome!", "content": "Hi {name}, welcome!", "wait_days": 0}]}"#;

/// A two-step sequence as the seed's API describes them.
fn two_steps() -> Value {
    json!({
        "name": "Cold Outreach Q1",
        "open_tracking_enabled": true,
        "click_tracking_enabled": true,
        "steps": [
            {
                "step_order": 1,
                "subject": "Quick question about {company}",
                "content": "Hi {first_name}, I noticed your company...",
                "wait_days": 0
            },
            {
                "step_order": 2,
                "subject": "Following up",
                "content": "Hi {first_name}, just following up on my previous email...",
                "wait_days": 3
            }
        ]
    })
}

fn str_of<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn step_subjects(sequence: &Value) -> Vec<(i64, String)> {
    sequence["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["step_order"].as_i64().unwrap_or(0),
                        s["subject"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seed_example_is_accepted_as_written() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, seq) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/sequences",
            Some(&t.key),
            "application/json",
            SEED_EXAMPLE.as_bytes().to_vec(),
        )
        .await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(seq["name"], "Welcome Sequence");
    assert_eq!(
        seq["steps"][0]["step_order"], 0,
        "stored and echoed as sent"
    );
    assert_eq!(seq["steps"][0]["content"], "Hi {name}, welcome!");
    assert_eq!(seq["warnings"], json!([]), "`name` is a built-in variable");

    // The same numbering through the steps endpoint.
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let (status, step) = api
        .raw(
            reqwest::Method::POST,
            &format!("{base}/steps"),
            Some(&t.key),
            "application/json",
            br#"{"step_order": 1, "subject": "", "content": "Hi {name}, any questions?", "wait_days": 2}"#.to_vec(),
        )
        .await?;
    assert_eq!(status, 201, "{step}");
    assert_eq!(step["step_order"], 1);
    assert_eq!(step["thread_with_previous"], true);
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        step_subjects(&now),
        vec![(0, "Welcome!".into()), (1, "".into())]
    );
    Ok(())
}

#[tokio::test]
async fn step_order_keys_order_the_steps_as_sent() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let body = json!({"name": "keys", "steps": [
        {"step_order": 20, "subject": "B", "content": "b"},
        {"step_order": 5, "subject": "A", "content": "a"},
        {"subject": "C", "content": "c"},
    ]});
    let (status, seq) = api.post("/api/v1/sequences", &t.key, body).await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(
        step_subjects(&seq),
        vec![(5, "A".into()), (20, "B".into()), (21, "C".into())],
        "ordered by key; a step without one goes after the others"
    );
    assert_eq!(seq["steps"][0]["thread_with_previous"], false, "A is first");
    assert_eq!(seq["steps"][1]["thread_with_previous"], true);

    let (status, error) = api
        .post(
            "/api/v1/sequences",
            &t.key,
            json!({"name": "dup", "steps": [
                {"step_order": 3, "subject": "x", "content": "x"},
                {"step_order": 3, "subject": "y", "content": "y"},
                {"step_order": -1, "subject": "z", "content": "z"},
            ]}),
        )
        .await?;
    assert_field_error(status, &error, "steps[1].step_order");
    assert_field_error(status, &error, "steps[2].step_order");
    Ok(())
}

#[tokio::test]
async fn seed_example_creates_a_draft_with_step_ids_and_defaults() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, seq) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(seq["name"], "Cold Outreach Q1");
    assert_eq!(seq["status"], "draft");
    assert_eq!(seq["open_tracking_enabled"], true);
    assert_eq!(
        seq["track_url_text_links"], false,
        "links showing a URL stay untracked by default"
    );
    assert_eq!(seq["stop_on_reply"], true);
    assert_eq!(seq["unsubscribe_link"], true);
    assert_eq!(
        seq["sending_window"]["days"],
        json!(["mon", "tue", "wed", "thu", "fri"])
    );
    assert_eq!(seq["sending_window"]["start_time"], "09:00");
    assert_eq!(seq["steps"].as_array().map(Vec::len), Some(2));
    assert!(!str_of(&seq, "/steps/0/id").is_empty());
    assert_eq!(seq["steps"][0]["thread_with_previous"], false);
    assert_eq!(
        seq["steps"][1]["thread_with_previous"], true,
        "later steps reply in the thread"
    );
    assert_eq!(seq["steps"][1]["wait_days"], 3);

    let (status, fetched) = api
        .get(
            &format!("/api/v1/sequences/{}", seq["id"].as_str().unwrap_or("")),
            &t.key,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(fetched, seq);
    Ok(())
}

#[tokio::test]
async fn every_field_round_trips() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let mailbox = fixtures::mailbox(&mut api.db().await?, &t.id).await?;
    let body = json!({
        "name": "Full",
        "stop_on_reply": false,
        "unsubscribe_link": false,
        "tracking_domain": "track.acme.test",
        "mailbox_ids": [mailbox],
        "sending_window": {
            "days": ["tue", "mon"], "start_time": "08:30", "end_time": "12:00",
            "timezone": "Europe/Paris", "use_contact_timezone": false, "business_days_only": true
        },
        "steps": [{
            "subject": "{Hi|Hello} {{first_name|there}}", "content": "Body {{company}}",
            "wait_days": 0, "wait_hours": 2, "wait_minutes": 30,
            "variants": [{"subject": "A", "content": "a", "weight": 3}, {"subject": "B", "content": "b", "weight": 1}]
        }]
    });
    let (status, seq) = api.post("/api/v1/sequences", &t.key, body).await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(seq["mailbox_ids"], json!([mailbox]));
    assert_eq!(seq["tracking_domain"], "track.acme.test");
    assert_eq!(seq["sending_window"]["days"], json!(["mon", "tue"]));
    assert_eq!(seq["sending_window"]["timezone"], "Europe/Paris");
    assert_eq!(seq["sending_window"]["business_days_only"], true);
    assert_eq!(seq["steps"][0]["step_order"], 1);
    assert_eq!(seq["steps"][0]["wait_hours"], 2);
    assert_eq!(seq["steps"][0]["variants"][0]["weight"], 3);
    Ok(())
}

#[tokio::test]
async fn invalid_bodies_name_each_field() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let body = json!({
        "name": "",
        "sending_window": {"days": ["funday"], "start_time": "25:00", "timezone": "Mars/Olympus"},
        "mailbox_ids": [uuid::Uuid::nil()],
        "steps": [
            {"subject": "Hi {{first_name", "content": "ok", "wait_days": -1},
            {"step_order": -1, "subject": "x", "content": "line one\n{oops here}"}
        ]
    });
    let (status, error) = api.post("/api/v1/sequences", &t.key, body).await?;
    for field in [
        "name",
        "sending_window.days[0]",
        "sending_window.start_time",
        "sending_window.timezone",
        "steps[0].subject",
        "steps[0].wait_days",
        "steps[1].step_order",
        "steps[1].content",
    ] {
        assert_field_error(status, &error, field);
    }
    let text = error.to_string();
    assert!(
        text.contains("line 2, column 1"),
        "template errors carry their position: {text}"
    );

    let (status, error) = api
        .post(
            "/api/v1/sequences",
            &t.key,
            json!({"name": "x", "status": "active"}),
        )
        .await?;
    assert_field_error(status, &error, "status");

    // Mailboxes must be this workspace's: a valid body that does not fit the workspace.
    let (status, error) = api
        .post(
            "/api/v1/sequences",
            &t.key,
            json!({"name": "x", "mailbox_ids": [uuid::Uuid::now_v7()]}),
        )
        .await?;
    assert_conflicting_field(status, &error, "mailbox_ids[0]");
    Ok(())
}

#[tokio::test]
async fn list_pages_through_and_filters_by_status() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, seq) = api
            .post(
                "/api/v1/sequences",
                &t.key,
                json!({"name": format!("s{i}")}),
            )
            .await?;
        ids.push(seq["id"].as_str().unwrap_or_default().to_owned());
    }
    api.post(
        &format!("/api/v1/sequences/{}/archive", ids[1]),
        &t.key,
        json!({}),
    )
    .await?;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/sequences?limit=2&cursor={c}"),
            None => "/api/v1/sequences?limit=2".to_owned(),
        };
        let (status, page) = api.get(&path, &t.key).await?;
        assert_eq!(status, 200, "{page}");
        for s in page["data"].as_array().into_iter().flatten() {
            seen.push(s["id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every sequence once, in creation order");

    let (_, archived) = api.get("/api/v1/sequences?status=archived", &t.key).await?;
    assert_eq!(archived["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(archived["data"][0]["id"], ids[1].as_str());
    let (status, error) = api.get("/api/v1/sequences?status=bogus", &t.key).await?;
    assert_field_error(status, &error, "status");
    let (status, error) = api.get("/api/v1/sequences?limit=0", &t.key).await?;
    assert_field_error(status, &error, "limit");
    Ok(())
}

#[tokio::test]
async fn update_changes_only_given_settings() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (_, seq) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    let path = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let (status, updated) = api
        .put(
            &path,
            &t.key,
            json!({"name": "Renamed", "sending_window": {"end_time": "18:30"}}),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["open_tracking_enabled"], true, "untouched");
    assert_eq!(updated["sending_window"]["end_time"], "18:30");
    assert_eq!(updated["sending_window"]["start_time"], "09:00");

    let (status, forced) = api
        .put(&path, &t.key, json!({"track_url_text_links": true}))
        .await?;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["track_url_text_links"], true);
    assert_eq!(forced["name"], "Renamed", "untouched");
    let (_, fetched) = api.get(&path, &t.key).await?;
    assert_eq!(fetched["track_url_text_links"], true, "stored");
    let (status, error) = api
        .put(&path, &t.key, json!({"track_url_text_links": "yes"}))
        .await?;
    assert_field_error(status, &error, "track_url_text_links");

    let (status, error) = api
        .put(
            &path,
            &t.key,
            json!({"sending_window": {"end_time": "08:00"}}),
        )
        .await?;
    // Before the stored start: the body alone is fine.
    assert_conflicting_field(status, &error, "sending_window.end_time");
    let (status, error) = api
        .put(
            &path,
            &t.key,
            json!({"sending_window": {"start_time": "10:00", "end_time": "08:00"}}),
        )
        .await?;
    assert_field_error(status, &error, "sending_window.end_time");
    let (status, moved) = api
        .put(
            &path,
            &t.key,
            json!({"sending_window": {"start_time": "07:00"}}),
        )
        .await?;
    assert_eq!(status, 200, "{moved}");
    let (status, moved) = api
        .put(
            &path,
            &t.key,
            json!({"sending_window": {"end_time": "08:00"}}),
        )
        .await?;
    assert_eq!(
        status, 200,
        "an end after the stored start, before the default one: {moved}"
    );
    let (status, error) = api.put(&path, &t.key, json!({"steps": []})).await?;
    assert_field_error(status, &error, "steps");
    Ok(())
}

#[tokio::test]
async fn lifecycle_rules() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (_, empty) = api
        .post("/api/v1/sequences", &t.key, json!({"name": "empty"}))
        .await?;
    let (status, error) = api
        .post(
            &format!("/api/v1/sequences/{}/activate", str_of(&empty, "/id")),
            &t.key,
            json!({}),
        )
        .await?;
    assert_error(status, &error, 409, "conflict");

    let (_, seq) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let (status, error) = api
        .post(&format!("{base}/activate"), &t.key, json!({}))
        .await?;
    assert_error(status, &error, 409, "conflict");
    assert!(error.to_string().contains("mailbox"), "{error}");

    let mailbox = fixtures::mailbox(&mut api.db().await?, &t.id).await?;
    api.put(&base, &t.key, json!({"mailbox_ids": [mailbox]}))
        .await?;
    let (status, active) = api
        .post(&format!("{base}/activate"), &t.key, json!({}))
        .await?;
    assert_eq!(
        (status, active["status"].as_str()),
        (200, Some("active")),
        "{active}"
    );
    let (_, again) = api
        .post(&format!("{base}/activate"), &t.key, json!({}))
        .await?;
    assert_eq!(
        again["status"], "active",
        "repeating a transition is a no-op"
    );
    let (_, paused) = api
        .post(&format!("{base}/pause"), &t.key, json!({}))
        .await?;
    assert_eq!(paused["status"], "paused");
    let (_, archived) = api
        .post(&format!("{base}/archive"), &t.key, json!({}))
        .await?;
    assert_eq!(archived["status"], "archived");

    let (status, error) = api
        .post(&format!("{base}/activate"), &t.key, json!({}))
        .await?;
    assert_error(status, &error, 409, "conflict");
    let (status, error) = api.put(&base, &t.key, json!({"name": "nope"})).await?;
    assert_error(status, &error, 409, "conflict");
    let (status, error) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"subject": "s", "content": "c"}),
        )
        .await?;
    assert_error(status, &error, 409, "conflict");
    Ok(())
}

#[tokio::test]
async fn delete_only_without_enrollments() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (_, draft) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    let (status, _) = api
        .delete(
            &format!("/api/v1/sequences/{}", str_of(&draft, "/id")),
            &t.key,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = api
        .get(
            &format!("/api/v1/sequences/{}", str_of(&draft, "/id")),
            &t.key,
        )
        .await?;
    assert_eq!(status, 404);

    let (_, used) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    let mut db = api.db().await?;
    let contact = fixtures::contact(&mut db, &t.id, "p@example.com").await?;
    fixtures::enrollment(&mut db, &t.id, str_of(&used, "/id"), contact, 1).await?;
    let (status, error) = api
        .delete(
            &format!("/api/v1/sequences/{}", str_of(&used, "/id")),
            &t.key,
        )
        .await?;
    assert_error(status, &error, 409, "conflict");
    Ok(())
}

#[tokio::test]
async fn step_edits_follow_the_rules_for_contacts_mid_sequence() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let body = json!({"name": "rules", "steps": [
        {"step_order": 10, "subject": "A", "content": "a"},
        {"step_order": 20, "subject": "B", "content": "b"},
        {"step_order": 30, "subject": "C", "content": "c"}
    ]});
    let (_, seq) = api.post("/api/v1/sequences", &t.key, body).await?;
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let step_a = str_of(&seq, "/steps/0/id").to_owned();
    let step_b = str_of(&seq, "/steps/1/id").to_owned();
    let mut db = api.db().await?;
    let mailbox = fixtures::mailbox(&mut db, &t.id).await?;
    let c1 = fixtures::contact(&mut db, &t.id, "one@example.com").await?;
    let c2 = fixtures::contact(&mut db, &t.id, "two@example.com").await?;
    let waiting_for_b = fixtures::enrollment(&mut db, &t.id, str_of(&seq, "/id"), c1, 2).await?;
    let waiting_for_a = fixtures::enrollment(&mut db, &t.id, str_of(&seq, "/id"), c2, 1).await?;
    fixtures::sent_message(&mut db, &t.id, waiting_for_b, c1, mailbox, &step_a).await?;

    // Insert N between A and B: the contact due for B keeps B; the one before gets N later.
    let (status, n) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"step_order": 15, "subject": "N", "content": "n"}),
        )
        .await?;
    assert_eq!(status, 201, "{n}");
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        step_subjects(&now),
        vec![
            (10, "A".into()),
            (15, "N".into()),
            (20, "B".into()),
            (30, "C".into())
        ]
    );
    assert_eq!(
        fixtures::current_step(&mut db, waiting_for_b).await?,
        3,
        "still B"
    );
    assert_eq!(
        fixtures::current_step(&mut db, waiting_for_a).await?,
        1,
        "still A, then N"
    );

    // Remove B: the contact waiting for it goes on to C.
    let (status, _) = api
        .delete(&format!("{base}/steps/{step_b}"), &t.key)
        .await?;
    assert_eq!(status, 204);
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        step_subjects(&now),
        vec![(10, "A".into()), (15, "N".into()), (30, "C".into())]
    );
    assert_eq!(
        fixtures::current_step(&mut db, waiting_for_b).await?,
        3,
        "now C"
    );

    // Content edits are fine; moving is not once contacts are enrolled.
    let c_id = str_of(&now, "/steps/2/id").to_owned();
    let (status, edited) = api
        .put(
            &format!("{base}/steps/{c_id}"),
            &t.key,
            json!({"content": "new c", "wait_hours": 5}),
        )
        .await?;
    assert_eq!(
        (status, edited["content"].as_str()),
        (200, Some("new c")),
        "{edited}"
    );
    let (status, error) = api
        .put(
            &format!("{base}/steps/{c_id}"),
            &t.key,
            json!({"step_order": 1}),
        )
        .await?;
    assert_error(status, &error, 409, "conflict");
    // A new key that keeps the step where it is changes nothing for anyone: allowed.
    let (status, rekeyed) = api
        .put(
            &format!("{base}/steps/{c_id}"),
            &t.key,
            json!({"step_order": 40}),
        )
        .await?;
    assert_eq!(
        (status, &rekeyed["step_order"]),
        (200, &json!(40)),
        "{rekeyed}"
    );

    // A step that was emailed is kept as history when removed: its message survives.
    let (status, _) = api
        .delete(&format!("{base}/steps/{step_a}"), &t.key)
        .await?;
    assert_eq!(status, 204);
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        step_subjects(&now),
        vec![(15, "N".into()), (40, "C".into())]
    );
    let kept: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM messages)",
        )),
        &mut db,
    )
    .await?;
    assert_eq!(kept, 1);
    Ok(())
}

#[tokio::test]
async fn steps_can_be_reordered_before_anyone_is_enrolled() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let body = json!({"name": "order", "steps": [
        {"step_order": 10, "subject": "A", "content": "a"},
        {"step_order": 20, "subject": "B", "content": "b"},
        {"step_order": 30, "subject": "C", "content": "c"}
    ]});
    let (_, seq) = api.post("/api/v1/sequences", &t.key, body).await?;
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let c = str_of(&seq, "/steps/2/id").to_owned();
    let (status, moved) = api
        .put(
            &format!("{base}/steps/{c}"),
            &t.key,
            json!({"step_order": 15}),
        )
        .await?;
    assert_eq!(status, 200, "{moved}");
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        step_subjects(&now),
        vec![(10, "A".into()), (15, "C".into()), (20, "B".into())]
    );

    // A step moved to the front stops being a reply; asking for one there is an error.
    let b = str_of(&now, "/steps/2/id").to_owned();
    let (status, front) = api
        .put(
            &format!("{base}/steps/{b}"),
            &t.key,
            json!({"step_order": 0}),
        )
        .await?;
    assert_eq!(status, 200, "{front}");
    assert_eq!(front["thread_with_previous"], false);
    let (status, error) = api
        .put(
            &format!("{base}/steps/{b}"),
            &t.key,
            json!({"thread_with_previous": true}),
        )
        .await?;
    assert_conflicting_field(status, &error, "thread_with_previous");
    // Keys are unique: one another step has is a conflict, a negative one invalid.
    let (status, error) = api
        .put(
            &format!("{base}/steps/{b}"),
            &t.key,
            json!({"step_order": 15}),
        )
        .await?;
    assert_conflicting_field(status, &error, "step_order");
    let (status, error) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"step_order": 10, "subject": "x", "content": "x"}),
        )
        .await?;
    assert_conflicting_field(status, &error, "step_order");
    let (status, error) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"step_order": -3, "subject": "x", "content": "x"}),
        )
        .await?;
    assert_field_error(status, &error, "step_order");
    let (status, added) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"subject": "D", "content": "d"}),
        )
        .await?;
    assert_eq!(
        (status, &added["step_order"]),
        (201, &json!(16)),
        "after the last key"
    );
    let (status, error) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"subject": "x", "content": "{{"}),
        )
        .await?;
    assert_field_error(status, &error, "content");
    Ok(())
}

#[tokio::test]
async fn sequences_are_isolated_between_workspaces() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let a = api.tenant("a").await?;
    let b = api.tenant("b").await?;
    let (_, seq) = api.post("/api/v1/sequences", &a.key, two_steps()).await?;
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let step = str_of(&seq, "/steps/0/id").to_owned();

    for (status, body) in [
        api.get(&base, &b.key).await?,
        api.put(&base, &b.key, json!({"name": "stolen"})).await?,
        api.delete(&base, &b.key).await?,
        api.post(&format!("{base}/activate"), &b.key, json!({}))
            .await?,
        api.post(
            &format!("{base}/steps"),
            &b.key,
            json!({"subject": "x", "content": "x"}),
        )
        .await?,
        api.put(
            &format!("{base}/steps/{step}"),
            &b.key,
            json!({"content": "x"}),
        )
        .await?,
        api.delete(&format!("{base}/steps/{step}"), &b.key).await?,
    ] {
        assert_error(status, &body, 404, "not_found");
    }
    let (_, list) = api.get("/api/v1/sequences", &b.key).await?;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    let (_, still) = api.get(&base, &a.key).await?;
    assert_eq!(still, seq, "nothing changed");
    Ok(())
}

#[tokio::test]
async fn stop_on_auto_reply_defaults_to_false_and_can_be_turned_on() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, seq) = api.post("/api/v1/sequences", &t.key, two_steps()).await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(seq["stop_on_auto_reply"], false, "{seq}");
    assert_eq!(seq["stop_on_reply"], true, "{seq}");
    let path = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));

    let (status, updated) = api
        .put(&path, &t.key, json!({"stop_on_auto_reply": true}))
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["stop_on_auto_reply"], true, "{updated}");
    assert_eq!(updated["stop_on_reply"], true, "untouched: {updated}");
    let (status, fetched) = api.get(&path, &t.key).await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["stop_on_auto_reply"], true, "{fetched}");

    // An update that does not name it keeps it.
    let (status, renamed) = api.put(&path, &t.key, json!({"name": "Renamed"})).await?;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["stop_on_auto_reply"], true, "{renamed}");

    // Given at creation, it is kept.
    let mut body = two_steps();
    body["stop_on_auto_reply"] = json!(true);
    let (status, created) = api.post("/api/v1/sequences", &t.key, body).await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["stop_on_auto_reply"], true, "{created}");

    let (status, error) = api
        .put(&path, &t.key, json!({"stop_on_auto_reply": "yes"}))
        .await?;
    assert!(
        (400..500).contains(&status),
        "a non-boolean is refused: {status} {error}"
    );
    Ok(())
}

#[tokio::test]
async fn variables_no_contact_can_fill_are_warned_about_not_refused() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, _) = api
        .post(
            "/api/v1/contacts",
            &t.key,
            json!({"email": "ada@example.com", "attributes": {"plan": "pro"}}),
        )
        .await?;
    assert_eq!(status, 201);
    let body = json!({"name": "vars", "steps": [{
        "subject": "Hi {name}",
        "content": "{{first_name}}: {{plan}} {{nickname}} {{nick2|friend}}",
        "variants": [{"subject": "{{ps}}", "content": "x", "weight": 1}],
    }]});
    let (status, seq) = api.post("/api/v1/sequences", &t.key, body).await?;
    assert_eq!(status, 201, "{seq}");
    let warned = |value: &Value| -> Vec<(String, String)> {
        value["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|w| {
                        (
                            str_of(w, "/field").to_owned(),
                            str_of(w, "/variable").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        warned(&seq),
        vec![
            ("steps[0].content".into(), "nickname".into()),
            ("steps[0].variants[0].subject".into(), "ps".into())
        ],
        "built-ins, known attributes and variables with a fallback are fine"
    );
    assert_eq!(
        warned(&seq["steps"][0]),
        vec![
            ("content".into(), "nickname".into()),
            ("variants[0].subject".into(), "ps".into())
        ]
    );

    // Once a contact has the attribute, the warning goes.
    let (status, _) = api
        .post(
            "/api/v1/contacts",
            &t.key,
            json!({"email": "bob@example.com", "attributes": {"nickname": "Bobby"}}),
        )
        .await?;
    assert_eq!(status, 201);
    let base = format!("/api/v1/sequences/{}", str_of(&seq, "/id"));
    let (_, now) = api.get(&base, &t.key).await?;
    assert_eq!(
        warned(&now),
        vec![("steps[0].variants[0].subject".into(), "ps".into())]
    );

    // The steps endpoints warn too, about the step's own fields.
    let (status, step) = api
        .post(
            &format!("{base}/steps"),
            &t.key,
            json!({"subject": "", "content": "P.S. {{coupon}}"}),
        )
        .await?;
    assert_eq!(status, 201, "{step}");
    assert_eq!(warned(&step), vec![("content".into(), "coupon".into())]);
    Ok(())
}

#[tokio::test]
async fn step_order_keys_leave_room_for_steps_given_without_one() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let steps = |top: i64| {
        json!({"name": "top", "steps": [
            {"step_order": top, "subject": "A", "content": "a"},
            {"subject": "B", "content": "b"},
            {"subject": "C", "content": "c"},
        ]})
    };
    let (status, seq) = api
        .post("/api/v1/sequences", &t.key, steps(1_000_000_000))
        .await?;
    assert_eq!(status, 201, "{seq}");
    assert_eq!(
        step_subjects(&seq),
        vec![
            (1_000_000_000, "A".into()),
            (1_000_000_001, "B".into()),
            (1_000_000_002, "C".into())
        ]
    );
    let (status, error) = api
        .post("/api/v1/sequences", &t.key, steps(i64::from(i32::MAX)))
        .await?;
    assert_field_error(status, &error, "steps[0].step_order");
    Ok(())
}
