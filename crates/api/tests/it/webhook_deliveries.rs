//! An endpoint's deliveries against the real PostgreSQL: the test event, the listing with its
//! filters, pages and attempts, retries, replays and workspace isolation. The webhooks
//! service is not running here: these tests check the rows the API leaves for it (pending,
//! due by the database's clock). Every answer is checked against docs/openapi.json.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use domain::db::schema::webhook_deliveries as table;
use domain::db::webhook_deliveries::{self as db, NewDelivery};
use serde_json::{Value, json};
use uuid::{Builder, Uuid};

use crate::support::{Tenant, TestApi, assert_error, assert_field_error};
use crate::webhooks::{HOOK_URL, time_of};

async fn endpoint(api: &TestApi, tenant: &Tenant, body: Value) -> anyhow::Result<Uuid> {
    let (status, created) = api.post("/api/v1/webhooks", &tenant.key, body).await?;
    anyhow::ensure!(status == 201, "creation answered {status}: {created}");
    Ok(Uuid::parse_str(created["id"].as_str().unwrap_or_default())?)
}

/// The UUIDv7 of `second` seconds after a fixed instant, the same on every call: ids that
/// sort as the test means them to.
fn id_at(second: u64) -> Uuid {
    Builder::from_unix_timestamp_millis((1_800_000_000 + second) * 1000, &[0; 10]).into_uuid()
}

/// How a delivery should stand once it is recorded, before the API touches it.
struct Stored<'a> {
    id: Uuid,
    event_type: &'a str,
    occurred_at: DateTime<Utc>,
    status: &'a str,
    attempts: i32,
}

/// Records a delivery as the webhooks service would have left it, with `attempts` attempts
/// (stored newest first, to show that the view orders them).
async fn stored(
    api: &TestApi,
    tenant: &Tenant,
    endpoint_id: Uuid,
    delivery: Stored<'_>,
) -> anyhow::Result<()> {
    let mut conn = api.db().await?;
    db::insert(
        &mut conn,
        &NewDelivery {
            id: delivery.id,
            endpoint_id,
            workspace_id: Uuid::parse_str(&tenant.id)?,
            event_id: Uuid::now_v7(),
            event_type: delivery.event_type.to_owned(),
            payload: json!({"type": delivery.event_type,
                            "timestamp": delivery.occurred_at.to_rfc3339(),
                            "data": {"workspace_id": tenant.id}}),
            occurred_at: delivery.occurred_at,
        },
    )
    .await?;
    let id = delivery.id;
    let (next, delivered) = match delivery.status {
        "pending" => ("now() + interval '1 hour'", "NULL"),
        "delivered" => ("NULL", "now() - interval '1 minute'"),
        _ => ("NULL", "NULL"),
    };
    conn.batch_execute(&format!(
        "UPDATE webhook_deliveries SET status = '{}', attempts = {}, next_attempt_at = {next}, \
         delivered_at = {delivered} WHERE id = '{id}'",
        delivery.status, delivery.attempts
    ))
    .await?;
    for n in (1..=delivery.attempts).rev() {
        let (code, error) = if n == delivery.attempts && delivery.status == "delivered" {
            ("200", "NULL")
        } else {
            ("503", "'503 Service Unavailable'")
        };
        conn.batch_execute(&format!(
            "INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code, \
             latency_ms, error, response_body) VALUES ('{}', '{id}', \
             now() - interval '{} minutes', {code}, {}, {error}, 'attempt {n}')",
            Uuid::now_v7(),
            60 - n,
            100 + n,
        ))
        .await?;
    }
    Ok(())
}

/// A `message.sent` delivery of 5 minutes ago, `id_at(1)`, failed after `attempts`.
async fn one_failed(
    api: &TestApi,
    tenant: &Tenant,
    endpoint_id: Uuid,
    attempts: i32,
) -> anyhow::Result<()> {
    let delivery = Stored {
        id: id_at(1),
        event_type: "message.sent",
        occurred_at: Utc::now() - Duration::minutes(5),
        status: "failed",
        attempts,
    };
    stored(api, tenant, endpoint_id, delivery).await
}

/// Whether the delivery is what the webhooks service picks up: pending and due by the
/// database's clock.
async fn due_now(api: &TestApi, id: Uuid) -> anyhow::Result<bool> {
    let mut conn = api.db().await?;
    let due: i64 = table::table
        .filter(table::id.eq(id))
        .filter(table::status.eq("pending"))
        .filter(table::next_attempt_at.le(diesel::dsl::now))
        .count()
        .get_result(&mut conn)
        .await?;
    Ok(due == 1)
}

async fn status_of(api: &TestApi, id: Uuid) -> anyhow::Result<String> {
    let mut conn = api.db().await?;
    Ok(table::table
        .find(id)
        .select(table::status)
        .get_result(&mut conn)
        .await?)
}

fn ids_of(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|w| w["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A server, a workspace and two of its endpoints.
async fn two_endpoints() -> anyhow::Result<(TestApi, Tenant, Uuid, Uuid)> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let id = endpoint(&api, &tenant, json!({"url": HOOK_URL})).await?;
    let other = endpoint(&api, &tenant, json!({"url": HOOK_URL})).await?;
    Ok((api, tenant, id, other))
}

#[tokio::test]
async fn a_test_event_is_a_pending_delivery_due_now() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    // It asked for another type: a test reaches it anyway.
    let id = endpoint(
        &api,
        &tenant,
        json!({"url": HOOK_URL, "event_types": ["contact.replied"]}),
    )
    .await?;
    let before = Utc::now();
    let (status, delivery) = api
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 202, "{delivery}");
    assert_eq!(delivery["webhook_id"], json!(id));
    assert_eq!(delivery["event_type"], "webhook.test");
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["attempts"], 0);
    assert_eq!(delivery["attempt_log"], json!([]));
    assert_eq!(delivery["delivered_at"], Value::Null);
    let payload = &delivery["payload"];
    assert_eq!(payload["type"], "webhook.test");
    assert_eq!(
        payload["data"],
        json!({"workspace_id": tenant.id, "webhook_id": id})
    );
    let occurred_at = time_of(&delivery, "occurred_at")?;
    assert_eq!(time_of(payload, "timestamp")?, occurred_at);
    assert!(occurred_at >= before - Duration::seconds(1) && occurred_at <= Utc::now());
    assert_ne!(delivery["event_id"], delivery["id"]);

    let delivery_id = Uuid::parse_str(delivery["id"].as_str().unwrap_or_default())?;
    assert!(
        due_now(&api, delivery_id).await?,
        "the service would send it"
    );
    let (status, fetched) = api
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}"),
            &tenant.key,
        )
        .await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched, delivery, "stored as answered");

    // A second test is a new event.
    let (_, again) = api
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_ne!(again["event_id"], delivery["event_id"]);
    let (_, listed) = api
        .get(&format!("/api/v1/webhooks/{id}/deliveries"), &tenant.key)
        .await?;
    assert_eq!(
        ids_of(&listed),
        [again["id"].as_str(), delivery["id"].as_str()].map(|s| s.unwrap_or_default().to_owned()),
        "newest first"
    );
    Ok(())
}

#[tokio::test]
async fn a_disabled_endpoint_is_not_tested() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let id = endpoint(&api, &tenant, json!({"url": HOOK_URL, "enabled": false})).await?;
    let (status, error) = api
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_error(status, &error, 409, "conflict");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("disabled") && message.contains("enable it"),
        "{message}"
    );
    let (_, listed) = api
        .get(&format!("/api/v1/webhooks/{id}/deliveries"), &tenant.key)
        .await?;
    assert_eq!(listed["data"], json!([]), "nothing recorded");

    let (status, _) = api
        .put(
            &format!("/api/v1/webhooks/{id}"),
            &tenant.key,
            json!({"enabled": true}),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, delivery) = api
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 202, "{delivery}");
    Ok(())
}

#[tokio::test]
async fn deliveries_list_newest_first_with_filters_pages_and_attempts() -> anyhow::Result<()> {
    let (api, tenant, id, other) = two_endpoints().await?;
    let now = Utc::now();
    let rows = [
        (id_at(1), "message.sent", "delivered", 1),
        (id_at(2), "contact.replied", "failed", 3),
        (id_at(3), "message.sent", "failed", 2),
        (id_at(4), "message.sent", "pending", 0),
        (id_at(5), "contact.replied", "delivered", 2),
    ];
    for (n, (delivery_id, event_type, status, attempts)) in rows.iter().enumerate() {
        stored(
            &api,
            &tenant,
            id,
            Stored {
                id: *delivery_id,
                event_type,
                occurred_at: now - Duration::minutes(10 - n as i64),
                status,
                attempts: *attempts,
            },
        )
        .await?;
    }
    // Another endpoint's delivery, newer than all of them.
    stored(
        &api,
        &tenant,
        other,
        Stored {
            id: id_at(6),
            event_type: "message.sent",
            occurred_at: now,
            status: "failed",
            attempts: 1,
        },
    )
    .await?;
    let path = format!("/api/v1/webhooks/{id}/deliveries");
    let strings =
        |ids: &[u64]| -> Vec<String> { ids.iter().map(|n| id_at(*n).to_string()).collect() };

    let (status, all) = api.get(&path, &tenant.key).await?;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids_of(&all), strings(&[5, 4, 3, 2, 1]), "newest first");
    assert_eq!(all["next_cursor"], Value::Null);

    // Attempts oldest first, with what the service stored.
    let failed = &all["data"][3];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3);
    let log = failed["attempt_log"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bodies: Vec<&str> = log
        .iter()
        .filter_map(|a| a["response_body"].as_str())
        .collect();
    assert_eq!(bodies, ["attempt 1", "attempt 2", "attempt 3"]);
    assert_eq!(log[0]["status_code"], 503);
    assert_eq!(log[0]["latency_ms"], 101);
    assert_eq!(log[0]["error"], "503 Service Unavailable");
    let delivered = &all["data"][0];
    assert_eq!(delivered["attempt_log"][1]["status_code"], 200);
    assert_eq!(delivered["attempt_log"][1]["error"], Value::Null);
    assert!(delivered["delivered_at"].is_string(), "{delivered}");
    assert_eq!(all["data"][1]["attempt_log"], json!([]));

    for (query, expected) in [
        ("status=failed", strings(&[3, 2])),
        ("status=pending", strings(&[4])),
        ("event_type=contact.replied", strings(&[5, 2])),
        ("status=failed&event_type=message.sent", strings(&[3])),
        ("status=delivered&event_type=webhook.test", Vec::new()),
    ] {
        let (status, page) = api.get(&format!("{path}?{query}"), &tenant.key).await?;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids_of(&page), expected, "{query}");
    }

    // Pages follow the cursor, filters kept.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let (status, page) = api
            .get(&format!("{path}?limit=2&cursor={cursor}"), &tenant.key)
            .await?;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, strings(&[5, 4, 3, 2, 1]));
    let (_, first) = api
        .get(&format!("{path}?limit=1&status=failed"), &tenant.key)
        .await?;
    let cursor = first["next_cursor"].as_str().unwrap_or_default();
    let (_, second) = api
        .get(
            &format!("{path}?limit=1&status=failed&cursor={cursor}"),
            &tenant.key,
        )
        .await?;
    assert_eq!(ids_of(&second), strings(&[2]));
    assert_eq!(second["next_cursor"], Value::Null);

    let (_, others) = api
        .get(&format!("/api/v1/webhooks/{other}/deliveries"), &tenant.key)
        .await?;
    assert_eq!(ids_of(&others), strings(&[6]));
    Ok(())
}

#[tokio::test]
async fn bad_filters_are_422_naming_the_parameter() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let id = endpoint(&api, &tenant, json!({"url": HOOK_URL})).await?;
    let path = format!("/api/v1/webhooks/{id}/deliveries");
    for (query, field) in [
        ("status=sent", "status"),
        ("status=PENDING", "status"),
        ("event_type=message.snet", "event_type"),
        ("event_type=", "event_type"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let (status, error) = api.get(&format!("{path}?{query}"), &tenant.key).await?;
        assert_field_error(status, &error, field);
    }
    Ok(())
}

#[tokio::test]
async fn a_retry_makes_the_delivery_pending_and_due_now() -> anyhow::Result<()> {
    let (api, tenant, id, other) = two_endpoints().await?;
    let now = Utc::now();
    for (second, status, attempts) in [(1, "failed", 3), (2, "delivered", 1), (3, "failed", 2)] {
        stored(
            &api,
            &tenant,
            id,
            Stored {
                id: id_at(second),
                event_type: "message.sent",
                occurred_at: now - Duration::hours(1),
                status,
                attempts,
            },
        )
        .await?;
    }

    for (second, attempts) in [(1, 3), (2, 1)] {
        let delivery_id = id_at(second);
        let (status, retried) = api
            .post(
                &format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
                &tenant.key,
                json!({}),
            )
            .await?;
        assert_eq!(status, 202, "{retried}");
        assert_eq!(retried["status"], "pending");
        assert_eq!(retried["attempts"], attempts, "kept");
        assert_eq!(
            retried["attempt_log"].as_array().map(Vec::len),
            Some(attempts as usize)
        );
        assert!(retried["next_attempt_at"].is_string(), "{retried}");
        assert!(due_now(&api, delivery_id).await?);
    }
    assert_eq!(status_of(&api, id_at(3)).await?, "failed", "untouched");

    // Under another endpoint of the same workspace, or unknown: 404.
    for path in [
        format!("/api/v1/webhooks/{other}/deliveries/{}/retry", id_at(3)),
        format!("/api/v1/webhooks/{id}/deliveries/{}/retry", Uuid::now_v7()),
    ] {
        let (status, error) = api.post(&path, &tenant.key, json!({})).await?;
        assert_error(status, &error, 404, "not_found");
    }
    let (status, error) = api
        .get(
            &format!("/api/v1/webhooks/{other}/deliveries/{}", id_at(3)),
            &tenant.key,
        )
        .await?;
    assert_error(status, &error, 404, "not_found");
    assert_eq!(status_of(&api, id_at(3)).await?, "failed");
    Ok(())
}

#[tokio::test]
async fn a_replay_makes_the_deliveries_since_a_time_pending() -> anyhow::Result<()> {
    let (api, tenant, id, other) = two_endpoints().await?;
    let now = Utc::now();
    let since = now - Duration::hours(2);
    let rows = [
        (id, 1, Duration::hours(3), "delivered"),
        (id, 2, Duration::hours(1), "failed"),
        (id, 3, Duration::minutes(30), "delivered"),
        (id, 4, Duration::minutes(20), "pending"),
        (other, 5, Duration::minutes(30), "delivered"),
    ];
    for (endpoint_id, second, ago, status) in rows {
        stored(
            &api,
            &tenant,
            endpoint_id,
            Stored {
                id: id_at(second),
                event_type: "contact.replied",
                occurred_at: now - ago,
                status,
                attempts: 1,
            },
        )
        .await?;
    }
    // An event at exactly `since` is replayed too.
    stored(
        &api,
        &tenant,
        id,
        Stored {
            id: id_at(7),
            event_type: "message.sent",
            occurred_at: since,
            status: "failed",
            attempts: 4,
        },
    )
    .await?;

    let query = form_since(since);
    let (status, answer) = api
        .post(
            &format!("/api/v1/webhooks/{id}/replay?since={query}"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"replayed": 4}));
    for second in [2, 3, 4, 7] {
        assert!(due_now(&api, id_at(second)).await?, "delivery {second}");
    }
    assert_eq!(
        status_of(&api, id_at(1)).await?,
        "delivered",
        "before since"
    );
    assert_eq!(
        status_of(&api, id_at(5)).await?,
        "delivered",
        "another endpoint"
    );
    let (_, replayed) = api
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries/{}", id_at(7)),
            &tenant.key,
        )
        .await?;
    assert_eq!(replayed["attempts"], 4, "kept");

    // An offset other than Z, encoded.
    let paris = chrono::FixedOffset::east_opt(7200).ok_or_else(|| anyhow::anyhow!("offset"))?;
    let since = (now - Duration::hours(1))
        .with_timezone(&paris)
        .to_rfc3339();
    assert!(since.ends_with("+02:00"), "{since}");
    let (status, answer) = api
        .post(
            &format!(
                "/api/v1/webhooks/{other}/replay?since={}",
                since.replace('+', "%2B")
            ),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"replayed": 1}));
    Ok(())
}

/// `since` as a query value.
fn form_since(since: DateTime<Utc>) -> String {
    since
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B")
}

#[tokio::test]
async fn a_replay_needs_a_since_and_one_in_the_future_replays_nothing() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let id = endpoint(&api, &tenant, json!({"url": HOOK_URL})).await?;
    one_failed(&api, &tenant, id, 1).await?;
    let future = form_since(Utc::now() + Duration::hours(1));
    for query in [
        String::new(),
        "?since=".to_owned(),
        "?since=yesterday".to_owned(),
        "?since=2026-03-02".to_owned(),
    ] {
        let (status, error) = api
            .post(
                &format!("/api/v1/webhooks/{id}/replay{query}"),
                &tenant.key,
                json!({}),
            )
            .await?;
        assert_field_error(status, &error, "since");
    }
    let (status, replayed) = api
        .post(
            &format!("/api/v1/webhooks/{id}/replay?since={future}"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!((status, &replayed), (202, &json!({"replayed": 0})));
    assert_eq!(
        status_of(&api, id_at(1)).await?,
        "failed",
        "nothing replayed"
    );
    Ok(())
}

#[tokio::test]
async fn another_workspaces_deliveries_are_not_found() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let acme = api.tenant("acme").await?;
    let globex = api.tenant("globex").await?;
    let id = endpoint(&api, &acme, json!({"url": HOOK_URL})).await?;
    let theirs = endpoint(&api, &globex, json!({"url": HOOK_URL})).await?;
    one_failed(&api, &acme, id, 2).await?;
    let delivery = id_at(1);
    let since = form_since(Utc::now() - Duration::days(1));
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let routes = [
        (post.clone(), id, "/test".to_owned()),
        (get.clone(), id, "/deliveries".to_owned()),
        (get.clone(), id, format!("/deliveries/{delivery}")),
        (post.clone(), id, format!("/deliveries/{delivery}/retry")),
        (post.clone(), id, format!("/replay?since={since}")),
        // Their own endpoint with acme's delivery.
        (get.clone(), theirs, format!("/deliveries/{delivery}")),
        (
            post.clone(),
            theirs,
            format!("/deliveries/{delivery}/retry"),
        ),
    ];
    for (method, endpoint_id, tail) in &routes {
        let path = format!("/api/v1/webhooks/{endpoint_id}{tail}");
        let body = (*method == post).then(|| json!({}));
        let (status, error) = api
            .request(method.clone(), &path, Some(&globex.key), body.as_ref())
            .await?;
        assert_error(status, &error, 404, "not_found");
    }
    let (_, theirs_listed) = api
        .get(
            &format!("/api/v1/webhooks/{theirs}/deliveries"),
            &globex.key,
        )
        .await?;
    assert_eq!(theirs_listed["data"], json!([]));
    assert_eq!(status_of(&api, delivery).await?, "failed", "untouched");

    // Without a key: 401 on every route.
    for (method, endpoint_id, tail) in routes.iter().take(5) {
        let path = format!("/api/v1/webhooks/{endpoint_id}{tail}");
        let (status, error) = api.request(method.clone(), &path, None, None).await?;
        assert_error(status, &error, 401, "unauthorized");
    }
    assert_eq!(status_of(&api, delivery).await?, "failed");
    Ok(())
}

#[tokio::test]
async fn disabling_parks_the_pending_deliveries_and_enabling_makes_them_due() -> anyhow::Result<()>
{
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let id = endpoint(&api, &tenant, json!({"url": HOOK_URL})).await?;
    let (pending, delivered) = (id_at(1), id_at(2));
    for (delivery, status) in [(pending, "pending"), (delivered, "delivered")] {
        let stored_as = Stored {
            id: delivery,
            event_type: "message.sent",
            occurred_at: Utc::now() - Duration::hours(1),
            status,
            attempts: 1,
        };
        stored(&api, &tenant, id, stored_as).await?;
    }
    let parked = |delivery: Uuid| {
        let api = &api;
        async move {
            let mut conn = api.db().await?;
            let next: Option<DateTime<Utc>> = table::table
                .find(delivery)
                .select(table::next_attempt_at)
                .get_result(&mut conn)
                .await?;
            anyhow::Ok(next.is_none())
        }
    };
    let path = format!("/api/v1/webhooks/{id}");
    let (status, _) = api
        .put(&path, &tenant.key, json!({"enabled": false}))
        .await?;
    assert_eq!(status, 200);
    assert!(
        parked(pending).await?,
        "a disabled endpoint's delivery waits, parked"
    );
    assert_eq!(status_of(&api, pending).await?, "pending");

    let (status, _) = api
        .put(&path, &tenant.key, json!({"enabled": true}))
        .await?;
    assert_eq!(status, 200);
    assert!(due_now(&api, pending).await?, "enabled again: due now");
    assert_eq!(status_of(&api, delivered).await?, "delivered");
    assert!(!due_now(&api, delivered).await?);
    Ok(())
}
