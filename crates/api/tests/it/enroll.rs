//! `POST /sequences/{id}/contacts`: enrolling contacts given as data or ids.

use serde_json::{Value, json};

use crate::fixtures;
use crate::support::{TestApi, assert_error, assert_field_error};

async fn sequence(api: &TestApi, key: &str) -> anyhow::Result<String> {
    let (status, seq) = api
        .post(
            "/api/v1/sequences",
            key,
            json!({"name": "s", "steps": [{"subject": "Hi {first_name}", "content": "x", "wait_hours": 1}]}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{seq}");
    Ok(seq["id"].as_str().unwrap_or_default().to_owned())
}

fn reasons(result: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = result["skipped"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| {
                    let who = x["email"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| x["contact_id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    (who, x["reason"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn contacts_given_as_data_are_created_and_enrolled_at_the_first_step() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let seq = sequence(&api, &t.key).await?;
    let body = json!({"contacts": [
        {"email": "Jane@Example.com", "first_name": "Jane", "company": "Example"},
        {"email": "joe@example.com", "first_name": "Joe", "attributes": {"plan": "pro"}},
        {"email": "jane@example.com"}
    ]});
    let (status, result) = api
        .post(&format!("/api/v1/sequences/{seq}/contacts"), &t.key, body)
        .await?;
    assert_eq!(status, 201, "{result}");
    assert_eq!(
        result["contacts_added"], 2,
        "the repeated address is one contact: {result}"
    );
    assert_eq!(result["skipped"], json!([]));

    let (_, listed) = api
        .get(&format!("/api/v1/sequences/{seq}/contacts"), &t.key)
        .await?;
    let rows = listed["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "active");
        assert_eq!(row["current_step"], 1);
        assert!(row["next_send_at"].is_string(), "{row}");
    }
    let (_, contacts) = api
        .get("/api/v1/contacts?email=jane@example.com", &t.key)
        .await?;
    assert_eq!(contacts["data"][0]["first_name"], "Jane", "{contacts}");

    // Again: nobody is enrolled twice.
    let again = json!({"contacts": [{"email": "jane@example.com"}, {"email": "joe@example.com"}]});
    let (status, result) = api
        .post(&format!("/api/v1/sequences/{seq}/contacts"), &t.key, again)
        .await?;
    assert_eq!(status, 201);
    assert_eq!(result["contacts_added"], 0);
    assert_eq!(
        reasons(&result),
        vec![
            ("jane@example.com".into(), "already_enrolled".into()),
            ("joe@example.com".into(), "already_enrolled".into())
        ]
    );
    let (_, stats) = api
        .get(&format!("/api/v1/sequences/{seq}/stats"), &t.key)
        .await?;
    assert_eq!(stats["enrollments"]["enrolled"], 2);
    Ok(())
}

#[tokio::test]
async fn each_contact_is_skipped_with_its_reason() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let other = api.tenant("other").await?;
    let seq = sequence(&api, &t.key).await?;
    let mut db = api.db().await?;
    fixtures::suppression(&mut db, &t.id, "blocked@example.com").await?;
    fixtures::suppression(&mut db, &t.id, "@competitor.test").await?;
    let existing = fixtures::contact(&mut db, &t.id, "left@example.com").await?;
    fixtures::set_contact_status(&mut db, "left@example.com", "unsubscribed").await?;
    let bounced = fixtures::contact(&mut db, &t.id, "gone@example.com").await?;
    fixtures::set_contact_status(&mut db, "gone@example.com", "bounced").await?;
    let fine = fixtures::contact(&mut db, &t.id, "fine@example.com").await?;
    let foreign = fixtures::contact(&mut db, &other.id, "theirs@example.com").await?;
    let unknown = uuid::Uuid::now_v7();

    let body = json!({
        "contacts": [
            {"email": "blocked@example.com"},
            {"email": "ceo@competitor.test"},
            {"email": "not-an-email"},
            {"email": "ok@example.com", "timezone": "Nowhere/City"},
            {"email": "new@example.com"}
        ],
        "contact_ids": [existing, bounced, fine, foreign, unknown]
    });
    let (status, result) = api
        .post(&format!("/api/v1/sequences/{seq}/contacts"), &t.key, body)
        .await?;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["contacts_added"], 2, "new@ and fine@: {result}");
    let mut expected: Vec<(String, String)> = vec![
        ("blocked@example.com".into(), "suppressed".into()),
        ("ceo@competitor.test".into(), "suppressed".into()),
        ("gone@example.com".into(), "suppressed".into()),
        ("left@example.com".into(), "unsubscribed".into()),
        ("not-an-email".into(), "invalid".into()),
        ("ok@example.com".into(), "invalid".into()),
        (foreign.to_string(), "invalid".into()),
        (unknown.to_string(), "invalid".into()),
    ];
    expected.sort();
    assert_eq!(reasons(&result), expected);
    // Another workspace's contact was not touched.
    let (_, theirs) = api
        .get(&format!("/api/v1/sequences/{seq}/contacts"), &other.key)
        .await?;
    assert_error(404, &theirs, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn enrolling_needs_a_live_sequence_of_this_workspace() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let other = api.tenant("other").await?;
    let seq = sequence(&api, &t.key).await?;
    let body = json!({"contacts": [{"email": "a@example.com"}]});
    let (status, error) = api
        .post(
            &format!("/api/v1/sequences/{seq}/contacts"),
            &other.key,
            body.clone(),
        )
        .await?;
    assert_error(status, &error, 404, "not_found");

    let (status, error) = api
        .post(
            &format!("/api/v1/sequences/{seq}/contacts"),
            &t.key,
            json!({}),
        )
        .await?;
    assert_field_error(status, &error, "contacts");
    let (status, error) = api
        .post(
            &format!("/api/v1/sequences/{seq}/contacts"),
            &t.key,
            json!({"contact_ids": ["nope"]}),
        )
        .await?;
    assert_field_error(status, &error, "contact_ids[0]");

    api.post(
        &format!("/api/v1/sequences/{seq}/archive"),
        &t.key,
        json!({}),
    )
    .await?;
    let (status, error) = api
        .post(&format!("/api/v1/sequences/{seq}/contacts"), &t.key, body)
        .await?;
    assert_error(status, &error, 409, "conflict");
    Ok(())
}

#[tokio::test]
async fn a_contact_named_twice_in_one_request_is_enrolled_once() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let seq = sequence(&api, &t.key).await?;
    let mut db = api.db().await?;
    let known = fixtures::contact(&mut db, &t.id, "known@example.com").await?;

    // By data and by id, by the same id twice, by the same address in two spellings.
    let body = json!({
        "contacts": [
            {"email": "known@example.com", "first_name": "Known"},
            {"email": "New@Example.com"},
            {"email": "new@example.com", "first_name": "second"}
        ],
        "contact_ids": [known, known]
    });
    let (status, result) = api
        .post(&format!("/api/v1/sequences/{seq}/contacts"), &t.key, body)
        .await?;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["contacts_added"], 2, "{result}");
    assert_eq!(result["skipped"], json!([]), "{result}");
    let (_, listed) = api
        .get(&format!("/api/v1/sequences/{seq}/contacts"), &t.key)
        .await?;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
    Ok(())
}

#[tokio::test]
async fn two_concurrent_requests_enroll_a_shared_contact_once() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let seq = sequence(&api, &t.key).await?;
    let emails = |range: std::ops::Range<usize>| -> Value {
        json!({"contacts": range.map(|i| json!({"email": format!("c{i}@example.com")})).collect::<Vec<_>>()})
    };
    let path = format!("/api/v1/sequences/{seq}/contacts");
    let (one, two) = tokio::join!(
        api.post(&path, &t.key, emails(0..300)),
        api.post(&path, &t.key, emails(200..500))
    );
    let ((s1, r1), (s2, r2)) = (one?, two?);
    assert_eq!((s1, s2), (201, 201), "{r1} {r2}");
    let added = |r: &Value| r["contacts_added"].as_u64().unwrap_or_default();
    assert_eq!(added(&r1) + added(&r2), 500, "{r1} {r2}");
    // The 100 shared contacts went to whichever came first; the other request names them.
    let mut already: Vec<(String, String)> = reasons(&r1);
    already.extend(reasons(&r2));
    already.sort();
    let mut expected: Vec<(String, String)> = (200..300)
        .map(|i| (format!("c{i}@example.com"), "already_enrolled".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(already, expected);
    let (_, stats) = api
        .get(&format!("/api/v1/sequences/{seq}/stats"), &t.key)
        .await?;
    assert_eq!(stats["enrollments"]["enrolled"], 500, "{stats}");
    Ok(())
}

#[tokio::test]
async fn a_request_larger_than_one_chunk_enrolls_each_contact_once() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let seq = sequence(&api, &t.key).await?;
    // More than one chunk of 10,000; the last 50 repeat the first 50 across the chunk border.
    let mut contacts: Vec<Value> = (0..10_000)
        .map(|i| json!({"email": format!("c{i}@example.com")}))
        .collect();
    contacts.extend((0..50).map(|i| json!({"email": format!("C{i}@Example.com")})));
    contacts.push(json!({"email": "broken"}));
    let (status, result) = api
        .post(
            &format!("/api/v1/sequences/{seq}/contacts"),
            &t.key,
            json!({ "contacts": contacts }),
        )
        .await?;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["contacts_added"], 10_000);
    assert_eq!(reasons(&result), vec![("broken".into(), "invalid".into())]);
    let (_, stats) = api
        .get(&format!("/api/v1/sequences/{seq}/stats"), &t.key)
        .await?;
    assert_eq!(stats["enrollments"]["enrolled"], 10_000, "{stats}");
    Ok(())
}
