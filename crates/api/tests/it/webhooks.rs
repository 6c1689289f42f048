//! Webhook endpoints against the real PostgreSQL: the signing secret shown once and stored
//! encrypted, partial updates, the URL rules of the outbound guard, workspace isolation and
//! secret rotation. Every answer is checked against docs/openapi.json by the test client.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use diesel_async::SimpleAsyncConnection;
use domain::crypto::SecretCipher;
use domain::db::webhook_endpoints::{self as db, previous_secret_context, secret_context};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{ENCRYPTION_KEYS, Tenant, TestApi, assert_error, assert_field_error};

pub(crate) const HOOK_URL: &str = "https://hooks.acme.example/sequences";

fn id_of(body: &Value) -> String {
    body["id"].as_str().unwrap_or_default().to_owned()
}

fn test_cipher() -> anyhow::Result<SecretCipher> {
    Ok(SecretCipher::from_spec(&SecretString::from(
        ENCRYPTION_KEYS.to_owned(),
    ))?)
}

/// The secret of an answer, checked to be `whsec_` and the base64 of 32 bytes.
fn secret_of(body: &Value) -> anyhow::Result<String> {
    let secret = body["secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no secret in {body}"))?;
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| anyhow::anyhow!("{secret} does not start with whsec_"))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    assert_eq!(bytes.len(), 32, "32 random bytes");
    Ok(secret.to_owned())
}

/// No signing secret, nor any field named like one, in `body`.
fn assert_no_secret(body: &Value, secrets: &[&str]) {
    let text = body.to_string();
    assert!(!text.contains("whsec_"), "a secret leaked into {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked into {text}");
    }
    let items = match body["data"].as_array() {
        Some(items) => items.clone(),
        None => vec![body.clone()],
    };
    for item in items {
        assert!(item.get("secret").is_none(), "{item}");
    }
}

async fn stored_row(
    api: &TestApi,
    tenant: &Tenant,
    id: &str,
) -> anyhow::Result<db::WebhookEndpoint> {
    let mut conn = api.db().await?;
    db::find(
        &mut conn,
        Uuid::parse_str(&tenant.id)?,
        Uuid::parse_str(id)?,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("webhook endpoint {id} is not in the database"))
}

async fn create(api: &TestApi, tenant: &Tenant, body: Value) -> anyhow::Result<Value> {
    let (status, created) = api.post("/api/v1/webhooks", &tenant.key, body).await?;
    anyhow::ensure!(status == 201, "creation answered {status}: {created}");
    Ok(created)
}

pub(crate) fn time_of(body: &Value, field: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = body[field]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no {field} in {body}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

#[tokio::test]
async fn the_secret_is_shown_once_and_stored_encrypted() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let created = create(&api, &tenant, json!({"url": "https://Hooks.Acme.Example"})).await?;
    let id = id_of(&created);
    assert_eq!(created["url"], "https://hooks.acme.example/", "normalised");
    assert_eq!(created["event_types"], json!([]), "all event types");
    assert_eq!(created["enabled"], true);
    for field in [
        "description",
        "disabled_reason",
        "failing_since",
        "previous_secret_expires_at",
    ] {
        assert_eq!(created[field], Value::Null, "{field}: {created}");
    }
    let secret = secret_of(&created)?;

    // The column holds ciphertext bound to this endpoint, which decrypts to the shown secret.
    let row = stored_row(&api, &tenant, &id).await?;
    assert!(
        !row.secret_encrypted
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "plaintext stored"
    );
    let cipher = test_cipher()?;
    let context = secret_context(row.id);
    assert_eq!(
        cipher
            .decrypt(&row.secret_encrypted, &context)?
            .expose_secret(),
        secret
    );
    assert!(
        cipher
            .decrypt(&row.secret_encrypted, &previous_secret_context(row.id))
            .is_err(),
        "a ciphertext only decrypts for its own column"
    );
    assert!(row.previous_secret_encrypted.is_none());

    // A second endpoint gets a secret of its own; neither is shown again.
    let other = create(
        &api,
        &tenant,
        json!({"url": "http://127.0.0.1:9/hook", "enabled": false,
               "event_types": ["contact.replied"], "description": "local relay"}),
    )
    .await?;
    let other_secret = secret_of(&other)?;
    assert_ne!(other_secret, secret);
    assert_eq!(other["enabled"], false);

    let (status, fetched) = api
        .get(&format!("/api/v1/webhooks/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["url"], created["url"]);
    assert_no_secret(&fetched, &[&secret, &other_secret]);
    let (status, listed) = api.get("/api/v1/webhooks", &tenant.key).await?;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|w| w["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [id.as_str(), id_of(&other).as_str()], "creation order");
    assert_no_secret(&listed, &[&secret, &other_secret]);

    // Pages follow the cursor.
    let (_, first) = api.get("/api/v1/webhooks?limit=1", &tenant.key).await?;
    assert_eq!(first["data"][0]["id"], json!(id));
    let cursor = first["next_cursor"].as_str().unwrap_or_default();
    let (_, second) = api
        .get(
            &format!("/api/v1/webhooks?limit=1&cursor={cursor}"),
            &tenant.key,
        )
        .await?;
    assert_eq!(second["data"][0]["id"], json!(id_of(&other)));
    assert_eq!(second["next_cursor"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn put_is_a_partial_update_and_delete_removes() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let created = create(
        &api,
        &tenant,
        json!({"url": HOOK_URL, "description": "CRM sync",
               "event_types": ["message.sent", "contact.replied"]}),
    )
    .await?;
    let id = id_of(&created);
    let path = format!("/api/v1/webhooks/{id}");

    let (status, updated) = api
        .put(&path, &tenant.key, json!({"enabled": false}))
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["url"], HOOK_URL, "kept");
    assert_eq!(updated["description"], "CRM sync", "kept");
    assert_eq!(
        updated["event_types"],
        json!(["message.sent", "contact.replied"]),
        "kept"
    );

    let (status, updated) = api
        .put(
            &path,
            &tenant.key,
            json!({"description": null, "event_types": [],
                   "url": "https://crm.acme.example/in?source=seq"}),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["description"], Value::Null);
    assert_eq!(updated["event_types"], json!([]));
    assert_eq!(updated["url"], "https://crm.acme.example/in?source=seq");
    assert_eq!(updated["enabled"], false, "kept");
    assert_no_secret(&updated, &[]);

    // An endpoint the platform disabled (410 Gone) comes back when a person enables it,
    // its failing period restarted.
    api.db()
        .await?
        .batch_execute(&format!(
            "UPDATE webhook_endpoints SET disabled_reason = 'the receiver answered 410 Gone', \
             failing_since = now() - interval '5 days' WHERE id = '{id}'"
        ))
        .await?;
    let (_, disabled) = api.get(&path, &tenant.key).await?;
    assert_eq!(
        disabled["disabled_reason"],
        "the receiver answered 410 Gone"
    );
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    let (status, enabled) = api
        .put(&path, &tenant.key, json!({"enabled": true}))
        .await?;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    assert_eq!(enabled["failing_since"], Value::Null);
    let row = stored_row(&api, &tenant, &id).await?;
    assert!(row.enabled && row.disabled_reason.is_none() && row.failing_since.is_none());

    let (status, _) = api.delete(&path, &tenant.key).await?;
    assert_eq!(status, 204);
    let (status, error) = api.get(&path, &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.delete(&path, &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (_, listed) = api.get("/api/v1/webhooks", &tenant.key).await?;
    assert_eq!(listed["data"], json!([]));
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let long_url = format!("https://hooks.acme.example/{}", "a".repeat(2000));
    let cases = [
        (json!({"url": "ftp://hooks.acme.example/in"}), "url"),
        (json!({"url": "hooks.acme.example/in"}), "url"),
        (json!({"url": "http://hooks.acme.example/in"}), "url"),
        (
            json!({"url": "https://jane:pw@hooks.acme.example/in"}),
            "url",
        ),
        (json!({"url": "https://hooks.acme.example/in#top"}), "url"),
        (json!({"url": long_url}), "url"),
        // The test server allows loopback only: other private addresses are refused.
        (json!({"url": "https://169.254.169.254/latest"}), "url"),
        (json!({"url": "http://10.0.0.1/hook"}), "url"),
        (
            json!({"url": HOOK_URL, "event_types": ["message.sent", "message.snet"]}),
            "event_types[1]",
        ),
        (
            json!({"url": HOOK_URL, "event_types": ["contact.replied", "contact.replied"]}),
            "event_types[1]",
        ),
        (
            json!({"url": HOOK_URL, "description": "d".repeat(501)}),
            "description",
        ),
        (json!({"url": HOOK_URL, "secret": "whsec_chosen"}), "secret"),
    ];
    for (body, field) in &cases {
        let (status, error) = api
            .post("/api/v1/webhooks", &tenant.key, body.clone())
            .await?;
        assert_field_error(status, &error, field);
    }
    let (_, listed) = api.get("/api/v1/webhooks", &tenant.key).await?;
    assert_eq!(listed["data"], json!([]), "nothing was stored");

    // The longest description passes; updates are checked the same way.
    let created = create(
        &api,
        &tenant,
        json!({"url": HOOK_URL, "description": "d".repeat(500)}),
    )
    .await?;
    let path = format!("/api/v1/webhooks/{}", id_of(&created));
    for (body, field) in &cases {
        let (status, error) = api.put(&path, &tenant.key, body.clone()).await?;
        assert_field_error(status, &error, field);
    }
    let (_, unchanged) = api.get(&path, &tenant.key).await?;
    assert_eq!(unchanged["url"], HOOK_URL);
    Ok(())
}

#[tokio::test]
async fn http_is_accepted_only_to_allowed_networks() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| {
        c.security.allowed_private_networks = vec!["10.20.0.0/16".to_owned()];
    })
    .await?;
    let tenant = api.tenant("acme").await?;
    for url in ["http://10.20.3.4:8080/hook", "https://10.20.3.4/hook"] {
        let created = create(&api, &tenant, json!({"url": url})).await?;
        assert_eq!(created["url"], url);
    }
    for url in [
        "http://10.21.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "http://8.8.8.8/hook",
        "http://hooks.acme.example/hook",
    ] {
        let (status, error) = api
            .post("/api/v1/webhooks", &tenant.key, json!({"url": url}))
            .await?;
        assert_field_error(status, &error, "url");
    }
    Ok(())
}

#[tokio::test]
async fn another_workspaces_endpoints_are_not_found() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let acme = api.tenant("acme").await?;
    let globex = api.tenant("globex").await?;
    let created = create(&api, &acme, json!({"url": HOOK_URL})).await?;
    let path = format!("/api/v1/webhooks/{}", id_of(&created));

    let (status, error) = api.get(&path, &globex.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api
        .put(&path, &globex.key, json!({"enabled": false}))
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api
        .post(&format!("{path}/rotate-secret"), &globex.key, json!({}))
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.delete(&path, &globex.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (_, listed) = api.get("/api/v1/webhooks", &globex.key).await?;
    assert_eq!(listed["data"], json!([]));

    let (status, intact) = api.get(&path, &acme.key).await?;
    assert_eq!(status, 200, "{intact}");
    assert_eq!(intact["enabled"], true);
    let row = stored_row(&api, &acme, &id_of(&created)).await?;
    assert!(row.previous_secret_encrypted.is_none(), "not rotated");
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_the_previous_secret_for_a_day() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let created = create(&api, &tenant, json!({"url": HOOK_URL})).await?;
    let first = secret_of(&created)?;
    let id = id_of(&created);
    let path = format!("/api/v1/webhooks/{id}");
    let cipher = test_cipher()?;
    let uuid = Uuid::parse_str(&id)?;

    let before = Utc::now();
    let (status, rotated) = api
        .post(&format!("{path}/rotate-secret"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{rotated}");
    let second = secret_of(&rotated)?;
    assert_ne!(second, first);
    let expires_at = time_of(&rotated, "previous_secret_expires_at")?;
    assert!(
        expires_at >= before + Duration::hours(24)
            && expires_at <= Utc::now() + Duration::hours(24),
        "the overlap is 24 h: {expires_at}"
    );

    let row = stored_row(&api, &tenant, &id).await?;
    assert_eq!(
        cipher
            .decrypt(&row.secret_encrypted, &secret_context(uuid))?
            .expose_secret(),
        second
    );
    let previous = row.previous_secret_encrypted.unwrap_or_default();
    assert_eq!(
        cipher
            .decrypt(&previous, &previous_secret_context(uuid))?
            .expose_secret(),
        first
    );
    assert!(cipher.decrypt(&previous, &secret_context(uuid)).is_err());
    assert_eq!(row.previous_secret_expires_at, Some(expires_at));

    let (_, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(time_of(&fetched, "previous_secret_expires_at")?, expires_at);
    assert_no_secret(&fetched, &[&first, &second]);

    // Rotating again: the secret it replaces is the one that keeps signing.
    let (status, again) = api
        .post(&format!("{path}/rotate-secret"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{again}");
    let third = secret_of(&again)?;
    assert!(third != first && third != second);
    let row = stored_row(&api, &tenant, &id).await?;
    let previous = row.previous_secret_encrypted.unwrap_or_default();
    assert_eq!(
        cipher
            .decrypt(&previous, &previous_secret_context(uuid))?
            .expose_secret(),
        second
    );

    // A rotation that ended is not shown.
    api.db()
        .await?
        .batch_execute(&format!(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 \
             minute' WHERE id = '{id}'"
        ))
        .await?;
    let (_, ended) = api.get(&path, &tenant.key).await?;
    assert_eq!(ended["previous_secret_expires_at"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn without_a_key_it_is_401() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let created = create(&api, &tenant, json!({"url": HOOK_URL})).await?;
    let path = format!("/api/v1/webhooks/{}", id_of(&created));
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/v1/webhooks".to_owned(), None),
        (
            reqwest::Method::POST,
            "/api/v1/webhooks".to_owned(),
            Some(json!({"url": HOOK_URL})),
        ),
        (reqwest::Method::GET, path.clone(), None),
        (
            reqwest::Method::PUT,
            path.clone(),
            Some(json!({"enabled": false})),
        ),
        (reqwest::Method::DELETE, path.clone(), None),
        (
            reqwest::Method::POST,
            format!("{path}/rotate-secret"),
            Some(json!({})),
        ),
    ] {
        for token in [None, Some("sk_not_a_key")] {
            let (status, error) = api
                .request(method.clone(), &path, token, body.as_ref())
                .await?;
            assert_error(status, &error, 401, "unauthorized");
        }
    }
    let (_, intact) = api.get(&path, &tenant.key).await?;
    assert_eq!(intact["enabled"], true);
    Ok(())
}

#[tokio::test]
async fn without_encryption_keys_secrets_are_refused_with_503() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.security.encryption_keys = String::new().into()).await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api
        .post("/api/v1/webhooks", &tenant.key, json!({"url": HOOK_URL}))
        .await?;
    assert_error(status, &error, 503, "encryption_not_configured");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("security.encryption_keys")),
        "{error}"
    );
    // A bad field is still a 422 first.
    let (status, error) = api
        .post(
            "/api/v1/webhooks",
            &tenant.key,
            json!({"url": "ftp://hooks.acme.example/"}),
        )
        .await?;
    assert_field_error(status, &error, "url");

    // An endpoint stored while the server had keys can be read and changed, not rotated.
    let id = Uuid::now_v7();
    let mut conn = api.db().await?;
    db::insert(
        &mut conn,
        &db::NewEndpoint {
            id,
            workspace_id: Uuid::parse_str(&tenant.id)?,
            values: db::EndpointValues {
                url: HOOK_URL.to_owned(),
                description: None,
                event_types: Vec::new(),
                enabled: true,
                disabled_reason: None,
            },
            secret_encrypted: test_cipher()?.encrypt(
                &SecretString::from("whsec_x".to_owned()),
                &secret_context(id),
            )?,
        },
    )
    .await?;
    let path = format!("/api/v1/webhooks/{id}");
    let (status, updated) = api
        .put(&path, &tenant.key, json!({"enabled": false}))
        .await?;
    assert_eq!(status, 200, "{updated}");
    let (status, error) = api
        .post(&format!("{path}/rotate-secret"), &tenant.key, json!({}))
        .await?;
    assert_error(status, &error, 503, "encryption_not_configured");
    Ok(())
}
