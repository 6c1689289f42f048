//! Mailboxes against the real PostgreSQL and the real test mail server (GreenMail).
//!
//! GreenMail runs with authentication disabled (any login succeeds, checked by hand against
//! users created through its REST API with a password), so rejected logins are tested
//! against small scripted servers on 127.0.0.1 below, which also echo the credentials back
//! to prove that no form of the password reaches a response.

use base64::Engine as _;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use domain::crypto::SecretCipher;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::support::{
    ENCRYPTION_KEYS, TestApi, assert_conflicting_field, assert_error, assert_field_error,
};

const SMTP_PASSWORD: &str = "smtp-Pa55word-never-shown";
const IMAP_PASSWORD: &str = "imap-Pa55word-never-shown";

/// `(host, port)` of a `SEQ_TEST_*` address.
fn test_addr(var: &str) -> anyhow::Result<(String, u16)> {
    let addr = std::env::var(var).map_err(|_| {
        anyhow::anyhow!("{var} is not set: run the tests through `cargo xtask test`")
    })?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{var}={addr} is not host:port"))?;
    Ok((host.to_owned(), port.parse()?))
}

/// A mailbox on the test mail server, SMTP and IMAP in plaintext (as GreenMail serves them).
fn greenmail_mailbox(email: &str) -> anyhow::Result<Value> {
    let (smtp_host, smtp_port) = test_addr("SEQ_TEST_SMTP_ADDR")?;
    let (imap_host, imap_port) = test_addr("SEQ_TEST_IMAP_ADDR")?;
    Ok(json!({
        "email": email,
        "from_name": "Ana from Acme",
        "smtp": {
            "host": smtp_host, "port": smtp_port, "security": "none",
            "username": email, "password": SMTP_PASSWORD,
        },
        "imap": {
            "host": imap_host, "port": imap_port, "security": "none",
            "username": email, "password": IMAP_PASSWORD,
        },
    }))
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

fn id_of(body: &Value) -> String {
    body["id"].as_str().unwrap_or_default().to_owned()
}

/// The password, and the base64 forms SMTP AUTH sends it in, appear nowhere in `body`.
fn assert_no_secret(body: &Value, username: &str, password: &str) {
    let text = body.to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        password.to_owned(),
        b64.encode(password),
        b64.encode(format!("\0{username}\0{password}")),
    ] {
        assert!(!text.contains(&secret), "a secret leaked into {text}");
    }
}

async fn stored_row(api: &TestApi, id: &str) -> anyhow::Result<domain::db::mailboxes::Mailbox> {
    let mut conn = api.db().await?;
    let id = Uuid::parse_str(id)?;
    let workspace_id: Uuid = {
        use diesel::QueryDsl as _;
        use domain::db::schema::mailboxes;
        mailboxes::table
            .find(id)
            .select(mailboxes::workspace_id)
            .first(&mut conn)
            .await?
    };
    domain::db::mailboxes::find(&mut conn, workspace_id, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("mailbox {id} is not in the database"))
}

fn test_cipher() -> anyhow::Result<SecretCipher> {
    Ok(SecretCipher::from_spec(&SecretString::from(
        ENCRYPTION_KEYS.to_owned(),
    ))?)
}

#[tokio::test]
async fn create_get_list_update_and_delete() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let mut body = greenmail_mailbox("Ana.Sales@Acme.Example")?;
    body["warmup"] = json!({"enabled": true, "start_limit": 10});
    body["timezone"] = json!("Europe/Paris");
    let (status, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created);
    assert_eq!(created["email"], "ana.sales@acme.example", "lower-cased");
    assert_eq!(created["from_name"], "Ana from Acme");
    assert_eq!(created["smtp"]["security"], "none");
    assert_eq!(created["smtp"]["password_set"], true);
    assert_eq!(created["imap"]["password_set"], true);
    assert!(created["smtp"].get("password").is_none(), "{created}");
    assert_eq!(created["daily_limit"], 30, "default daily limit");
    assert_eq!(created["min_interval_seconds"], 120);
    assert_eq!(created["jitter_seconds"], 60);
    assert_eq!(created["status"], "active");
    assert_eq!(created["timezone"], "Europe/Paris");
    assert_eq!(created["warmup"]["enabled"], true);
    assert_eq!(created["warmup"]["start_limit"], 10);
    assert_eq!(created["warmup"]["daily_increase"], 2);
    assert!(created["warmup"]["started_on"].is_string(), "{created}");

    let (status, fetched) = api
        .get(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(fetched, created);

    // Two more, then page through all three two at a time.
    for email in ["b@acme.example", "c@acme.example"] {
        let (status, body) = api
            .post("/api/v1/mailboxes", &tenant.key, greenmail_mailbox(email)?)
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, first) = api.get("/api/v1/mailboxes?limit=2", &tenant.key).await?;
    assert_eq!(status, 200, "{first}");
    let emails = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|m| m["email"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(emails(&first), ["ana.sales@acme.example", "b@acme.example"]);
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    assert!(!cursor.is_empty(), "{first}");
    let (_, second) = api
        .get(
            &format!("/api/v1/mailboxes?limit=2&cursor={cursor}"),
            &tenant.key,
        )
        .await?;
    assert_eq!(emails(&second), ["c@acme.example"]);
    assert!(second["next_cursor"].is_null(), "{second}");

    // Partial update: only what is given changes; the omitted password stays stored.
    let before = stored_row(&api, &id).await?;
    let (status, updated) = api
        .put(
            &format!("/api/v1/mailboxes/{id}"),
            &tenant.key,
            json!({
                "from_name": null,
                "daily_limit": 80,
                "jitter_seconds": 0,
                "status": "paused",
                "smtp": {"port": 2525},
                "warmup": {"enabled": false},
            }),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["from_name"].is_null());
    assert_eq!(updated["daily_limit"], 80);
    assert_eq!(updated["jitter_seconds"], 0);
    assert_eq!(updated["min_interval_seconds"], 120, "unchanged");
    assert_eq!(updated["status"], "paused");
    assert_eq!(updated["smtp"]["port"], 2525);
    assert_eq!(
        updated["smtp"]["host"], created["smtp"]["host"],
        "unchanged"
    );
    assert_eq!(updated["smtp"]["password_set"], true);
    assert_eq!(updated["warmup"]["enabled"], false);
    assert!(updated["warmup"]["started_on"].is_null());
    let after = stored_row(&api, &id).await?;
    assert_eq!(
        after.smtp_password_encrypted,
        before.smtp_password_encrypted
    );
    assert_eq!(
        after.imap_password_encrypted,
        before.imap_password_encrypted
    );

    // Removing IMAP and SMTP authentication.
    let (status, updated) = api
        .put(
            &format!("/api/v1/mailboxes/{id}"),
            &tenant.key,
            json!({"imap": null, "smtp": {"username": null}}),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["imap"].is_null(), "{updated}");
    assert!(updated["smtp"]["username"].is_null(), "{updated}");
    assert_eq!(updated["smtp"]["password_set"], false);
    let after = stored_row(&api, &id).await?;
    assert!(after.smtp_password_encrypted.is_none() && after.imap_password_encrypted.is_none());

    let (status, _) = api
        .delete(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 204);
    let (status, error) = api
        .get(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api
        .delete(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (_, list) = api.get("/api/v1/mailboxes", &tenant.key).await?;
    assert_eq!(emails(&list), ["b@acme.example", "c@acme.example"]);
    Ok(())
}

#[tokio::test]
async fn passwords_are_encrypted_at_rest_and_never_returned() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let email = "secret.keeper@acme.example";
    let mut bodies = Vec::new();

    let (status, created) = api
        .post("/api/v1/mailboxes", &tenant.key, greenmail_mailbox(email)?)
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created);
    bodies.push(created);
    bodies.push(
        api.get(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
            .await?
            .1,
    );
    bodies.push(api.get("/api/v1/mailboxes", &tenant.key).await?.1);
    bodies.push(
        api.post(
            &format!("/api/v1/mailboxes/{id}/verify"),
            &tenant.key,
            json!({}),
        )
        .await?
        .1,
    );

    // The columns hold ciphertext bound to this mailbox, which decrypts with the server's key.
    let row = stored_row(&api, &id).await?;
    let cipher = test_cipher()?;
    let smtp = row.smtp_password_encrypted.clone().unwrap_or_default();
    let imap = row.imap_password_encrypted.clone().unwrap_or_default();
    for (stored, plain) in [(&smtp, SMTP_PASSWORD), (&imap, IMAP_PASSWORD)] {
        assert!(!stored.is_empty());
        assert!(
            !stored.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "plaintext stored"
        );
    }
    let smtp_context = format!("mailboxes.smtp_password:{id}");
    let imap_context = format!("mailboxes.imap_password:{id}");
    assert_eq!(
        cipher.decrypt(&smtp, &smtp_context)?.expose_secret(),
        SMTP_PASSWORD
    );
    assert_eq!(
        cipher.decrypt(&imap, &imap_context)?.expose_secret(),
        IMAP_PASSWORD
    );
    assert!(
        cipher.decrypt(&smtp, &imap_context).is_err(),
        "a ciphertext only decrypts for its own column"
    );

    // A new password replaces the stored one, still encrypted.
    let (status, updated) = api
        .put(
            &format!("/api/v1/mailboxes/{id}"),
            &tenant.key,
            json!({"smtp": {"password": "rotated-Pa55word"}}),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    bodies.push(updated);
    let row = stored_row(&api, &id).await?;
    let smtp = row.smtp_password_encrypted.unwrap_or_default();
    assert_eq!(
        cipher.decrypt(&smtp, &smtp_context)?.expose_secret(),
        "rotated-Pa55word"
    );

    for body in &bodies {
        assert_no_secret(body, email, SMTP_PASSWORD);
        assert_no_secret(body, email, IMAP_PASSWORD);
        assert_no_secret(body, email, "rotated-Pa55word");
    }
    Ok(())
}

#[tokio::test]
async fn another_workspace_sees_nothing() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let a = api.tenant("a").await?;
    let b = api.tenant("b").await?;
    let (status, theirs) = api
        .post(
            "/api/v1/mailboxes",
            &b.key,
            greenmail_mailbox("b@b.example")?,
        )
        .await?;
    assert_eq!(status, 201, "{theirs}");
    let path = format!("/api/v1/mailboxes/{}", id_of(&theirs));

    let (status, error) = api.get(&path, &a.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.put(&path, &a.key, json!({"daily_limit": 1})).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api
        .post(&format!("{path}/verify"), &a.key, json!({}))
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.delete(&path, &a.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (_, list) = api.get("/api/v1/mailboxes", &a.key).await?;
    assert_eq!(list["data"], json!([]), "{list}");

    let (status, still) = api.get(&path, &b.key).await?;
    assert_eq!(status, 200);
    assert_eq!(still, theirs, "untouched by the other workspace");
    // The same address is free in another workspace.
    let (status, body) = api
        .post(
            "/api/v1/mailboxes",
            &a.key,
            greenmail_mailbox("b@b.example")?,
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_422_naming_each() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let post = |body: Value| api.post("/api/v1/mailboxes", &tenant.key, body);

    // Every field check of one request is reported at once.
    let mut body = greenmail_mailbox("ana@acme.example")?;
    body["email"] = json!("not-an-email");
    body["smtp"]["port"] = json!(0);
    body["timezone"] = json!("Mars/Olympus_Mons");
    body["daily_limit"] = json!(0);
    body["min_interval_seconds"] = json!(-1);
    body["imap"]["host"] = json!("imap.example.com/path");
    let (status, error) = post(body).await?;
    for field in [
        "email",
        "smtp.port",
        "timezone",
        "daily_limit",
        "min_interval_seconds",
        "imap.host",
    ] {
        assert_field_error(status, &error, field);
    }

    type Change = fn(&mut Value);
    let cases: [(&str, Change); 8] = [
        ("smtp.security", |b| b["smtp"]["security"] = json!("ssl")),
        ("status", |b| b["status"] = json!("error")),
        ("workspace_id", |b| {
            b["workspace_id"] = json!(Uuid::now_v7())
        }),
        ("smtp.password", |b| {
            b["smtp"]["password"] = json!("line\r\nbreak")
        }),
        ("smtp.username", |b| {
            if let Some(smtp) = b["smtp"].as_object_mut() {
                smtp.remove("username");
            }
        }),
        ("daily_limit", |b| b["daily_limit"] = json!(1_000_000)),
        ("smtp.port", |b| b["smtp"]["port"] = json!(70000)),
        ("from_name", |b| {
            b["from_name"] = json!("Ana\r\nBcc: x@evil.example")
        }),
    ];
    for (field, change) in cases {
        let mut body = greenmail_mailbox("ana@acme.example")?;
        change(&mut body);
        let (status, error) = post(body).await?;
        assert_field_error(status, &error, field);
    }

    // Updates check the same way, and what needs the stored row too.
    let (_, created) = post(json!({
        "email": "plain@acme.example",
        "smtp": {"host": "127.0.0.1", "port": 25, "security": "none"},
    }))
    .await?;
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));
    let updates = [
        ("daily_limit", json!({"daily_limit": 0})),
        ("status", json!({"status": "error"})),
        ("timezone", json!({"timezone": "Nowhere/Land"})),
        ("smtp.security", json!({"smtp": {"security": "ssl"}})),
        ("id", json!({"id": Uuid::now_v7()})),
    ];
    for (field, body) in updates {
        let (status, error) = api.put(&path, &tenant.key, body).await?;
        assert_field_error(status, &error, field);
    }
    // Valid bodies that need settings this mailbox does not have: 409.
    let conflicts = [
        ("smtp.password", json!({"smtp": {"username": "someone"}})),
        ("smtp.username", json!({"smtp": {"password": "pw"}})),
        (
            "imap.password",
            json!({"imap": {"host": "imap.acme.example", "port": 993, "security": "tls", "username": "u"}}),
        ),
        ("imap.host", json!({"imap": {"port": 993}})),
    ];
    for (field, body) in conflicts {
        let (status, error) = api.put(&path, &tenant.key, body).await?;
        assert_conflicting_field(status, &error, field);
    }
    let (_, unchanged) = api.get(&path, &tenant.key).await?;
    assert_eq!(unchanged, created, "rejected updates change nothing");
    Ok(())
}

#[tokio::test]
async fn duplicate_email_in_a_workspace_is_409() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, _) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox("ana@acme.example")?,
        )
        .await?;
    assert_eq!(status, 201);
    let (status, error) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox(" ANA@Acme.example ")?,
        )
        .await?;
    assert_error(status, &error, 409, "conflict");

    let (_, other) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox("bob@acme.example")?,
        )
        .await?;
    let (status, error) = api
        .put(
            &format!("/api/v1/mailboxes/{}", id_of(&other)),
            &tenant.key,
            json!({"email": "Ana@acme.example"}),
        )
        .await?;
    assert_error(status, &error, 409, "conflict");
    Ok(())
}

#[tokio::test]
async fn verify_succeeds_against_the_test_mail_server() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let email = "verified@acme.example";
    let (_, created) = api
        .post("/api/v1/mailboxes", &tenant.key, greenmail_mailbox(email)?)
        .await?;
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));

    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["smtp"], json!({"ok": true}), "{result}");
    assert_eq!(result["imap"], json!({"ok": true}), "{result}");
    assert_eq!(result["status"], "active");

    // SMTP only: imap is null in the result.
    let (status, _) = api.put(&path, &tenant.key, json!({"imap": null})).await?;
    assert_eq!(status, 200);
    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["smtp"]["ok"], true, "{result}");
    assert!(result["imap"].is_null(), "{result}");
    Ok(())
}

#[tokio::test]
async fn verify_against_a_closed_port_fails_cleanly_and_marks_the_mailbox() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let email = "broken@acme.example";
    let port = closed_port().await?;
    let mut body = greenmail_mailbox(email)?;
    body["smtp"]["port"] = json!(port);
    body["imap"]["port"] = json!(port);
    let (_, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));

    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["smtp"]["ok"], false, "{result}");
    assert_eq!(result["imap"]["ok"], false, "{result}");
    let smtp_error = result["smtp"]["error"].as_str().unwrap_or_default();
    let imap_error = result["imap"]["error"].as_str().unwrap_or_default();
    assert!(
        smtp_error.contains(&format!("127.0.0.1:{port}")),
        "{smtp_error}"
    );
    assert!(
        smtp_error.to_lowercase().contains("connect"),
        "{smtp_error}"
    );
    assert!(imap_error.contains("could not connect"), "{imap_error}");
    assert_eq!(result["status"], "error");
    assert!(
        result["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("SMTP check failed")),
        "{result}"
    );
    assert_no_secret(&result, email, SMTP_PASSWORD);
    assert_no_secret(&result, email, IMAP_PASSWORD);
    let (_, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(fetched["status"], "error");
    assert_eq!(fetched["status_reason"], result["status_reason"]);
    assert_no_secret(&fetched, email, SMTP_PASSWORD);

    // Fixing the settings makes the mailbox active again; verify then confirms.
    let (smtp_host, smtp_port) = test_addr("SEQ_TEST_SMTP_ADDR")?;
    let (status, fixed) = api
        .put(
            &path,
            &tenant.key,
            json!({"smtp": {"host": smtp_host, "port": smtp_port}, "imap": null}),
        )
        .await?;
    assert_eq!(status, 200, "{fixed}");
    assert_eq!(fixed["status"], "active");
    assert!(fixed["status_reason"].is_null());
    let (_, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(result["smtp"]["ok"], true, "{result}");
    assert_eq!(result["status"], "active");

    // A paused mailbox stays paused whatever the outcome.
    let (status, _) = api
        .put(
            &path,
            &tenant.key,
            json!({"status": "paused", "smtp": {"port": port}}),
        )
        .await?;
    assert_eq!(status, 200);
    let (_, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(result["smtp"]["ok"], false, "{result}");
    assert_eq!(result["status"], "paused");
    Ok(())
}

#[tokio::test]
async fn verify_against_servers_that_do_not_speak_the_protocol() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    // SMTP pointed at an HTTP-like server, IMAP pointed at GreenMail's SMTP port.
    let http_port = scripted_server(
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        None,
    )
    .await?;
    let (smtp_host, smtp_port) = test_addr("SEQ_TEST_SMTP_ADDR")?;
    let mut body = greenmail_mailbox("confused@acme.example")?;
    body["smtp"]["port"] = json!(http_port);
    body["imap"]["host"] = json!(smtp_host);
    body["imap"]["port"] = json!(smtp_port);
    let (_, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    let (status, result) = api
        .post(
            &format!("/api/v1/mailboxes/{}/verify", id_of(&created)),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["smtp"]["ok"], false, "{result}");
    assert_eq!(result["imap"]["ok"], false, "{result}");
    assert!(
        result["smtp"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an SMTP server")),
        "{result}"
    );
    assert!(
        result["imap"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an IMAP server")),
        "{result}"
    );
    assert_eq!(result["status"], "error");
    Ok(())
}

#[tokio::test]
async fn rejected_logins_are_reported_without_the_password() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    // Both servers reject the login and echo back what the client sent.
    let smtp_port = scripted_server(
        "220 fake.test ESMTP\r\n",
        Some(|line| {
            if line.starts_with("EHLO") {
                "250-fake.test\r\n250 AUTH PLAIN LOGIN\r\n".to_owned()
            } else if line.starts_with("AUTH") {
                format!("535 5.7.8 rejected: {line}\r\n")
            } else if line.starts_with("QUIT") {
                "221 bye\r\n".to_owned()
            } else {
                "250 ok\r\n".to_owned()
            }
        }),
    )
    .await?;
    let imap_port = scripted_server(
        "* OK fake IMAP ready\r\n",
        Some(|line| {
            let (tag, command) = line.split_once(' ').unwrap_or((line, ""));
            if command.to_uppercase().starts_with("LOGIN") {
                format!("{tag} NO [AUTHENTICATIONFAILED] rejected: {command}\r\n")
            } else if command.to_uppercase().starts_with("LOGOUT") {
                format!("* BYE\r\n{tag} OK\r\n")
            } else {
                format!("{tag} BAD unknown\r\n")
            }
        }),
    )
    .await?;
    let email = "rejected@acme.example";
    let mut body = greenmail_mailbox(email)?;
    body["smtp"]["host"] = json!("127.0.0.1");
    body["smtp"]["port"] = json!(smtp_port);
    body["imap"]["host"] = json!("127.0.0.1");
    body["imap"]["port"] = json!(imap_port);
    let (_, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));

    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{result}");
    let smtp_error = result["smtp"]["error"].as_str().unwrap_or_default();
    let imap_error = result["imap"]["error"].as_str().unwrap_or_default();
    assert_eq!(result["smtp"]["ok"], false, "{result}");
    assert!(smtp_error.contains("535"), "{smtp_error}");
    assert!(
        smtp_error.contains("[redacted]"),
        "the echo was scrubbed: {smtp_error}"
    );
    assert_eq!(result["imap"]["ok"], false, "{result}");
    assert!(imap_error.contains("login rejected"), "{imap_error}");
    assert!(
        imap_error.contains("[redacted]"),
        "the echo was scrubbed: {imap_error}"
    );
    assert_no_secret(&result, email, SMTP_PASSWORD);
    assert_no_secret(&result, email, IMAP_PASSWORD);
    let (_, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(fetched["status"], "error");
    assert_no_secret(&fetched, email, SMTP_PASSWORD);
    assert_no_secret(&fetched, email, IMAP_PASSWORD);
    Ok(())
}

#[tokio::test]
async fn without_encryption_keys_passwords_are_refused_with_503() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.security.encryption_keys = String::new().into()).await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox("ana@acme.example")?,
        )
        .await?;
    assert_error(status, &error, 503, "encryption_not_configured");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("security.encryption_keys")),
        "{error}"
    );
    // A bad field is still a 422 first.
    let mut body = greenmail_mailbox("ana@acme.example")?;
    body["daily_limit"] = json!(0);
    let (status, error) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    assert_field_error(status, &error, "daily_limit");

    // Without passwords there is nothing to encrypt.
    let (smtp_host, smtp_port) = test_addr("SEQ_TEST_SMTP_ADDR")?;
    let (status, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            json!({
                "email": "relay@acme.example",
                "smtp": {"host": smtp_host, "port": smtp_port, "security": "none"},
            }),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));
    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(result["smtp"]["ok"], true, "{result}");
    let (status, error) = api
        .put(
            &path,
            &tenant.key,
            json!({"smtp": {"username": "u", "password": "p"}}),
        )
        .await?;
    assert_error(status, &error, 503, "encryption_not_configured");
    Ok(())
}

#[tokio::test]
async fn a_mailbox_that_sent_messages_is_not_deleted() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (_, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox("sender@acme.example")?,
        )
        .await?;
    let mailbox_id = Uuid::parse_str(&id_of(&created))?;
    let workspace_id = Uuid::parse_str(&tenant.id)?;

    // A message sent from it, with the rows it needs, written the way the scheduler would.
    let (contact, sequence, step, enrollment, message) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let mut conn = api.db().await?;
    conn.batch_execute(&format!(
        "INSERT INTO contacts (id, workspace_id, email) VALUES ('{contact}', '{workspace_id}', 'p@prospect.example');
         INSERT INTO sequences (id, workspace_id, name) VALUES ('{sequence}', '{workspace_id}', 's');
         INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content) VALUES ('{step}', '{sequence}', 1, 1, 'hi', 'hello');
         INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, mailbox_id)
             VALUES ('{enrollment}', '{workspace_id}', '{sequence}', '{contact}', '{mailbox_id}');
         INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, contact_id, mailbox_id, status, scheduled_at)
             VALUES ('{message}', '{workspace_id}', '{enrollment}', '{step}', 1, '{contact}', '{mailbox_id}', 'sent', now())"
    ))
    .await?;

    let path = format!("/api/v1/mailboxes/{mailbox_id}");
    let (status, error) = api.delete(&path, &tenant.key).await?;
    assert_error(status, &error, 409, "conflict");
    let (status, _) = api.get(&path, &tenant.key).await?;
    assert_eq!(status, 200, "still there");
    let (status, disabled) = api
        .put(&path, &tenant.key, json!({"status": "disabled"}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(disabled["status"], "disabled");
    Ok(())
}

/// A line-based server on 127.0.0.1: sends `greeting`, then answers each line with
/// `reply(line)`, or hangs up right after the greeting when `reply` is None. Runs until the
/// test's runtime ends.
async fn scripted_server(
    greeting: &'static str,
    reply: Option<fn(&str) -> String>,
) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                if write.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let Some(reply) = reply else { return };
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write.write_all(reply(&line).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn the_inbox_watch_state_is_shown_and_reset_by_new_imap_settings() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            greenmail_mailbox("watched@acme.example")?,
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created);
    let path = format!("/api/v1/mailboxes/{id}");
    assert_eq!(
        created["imap"].get("watch"),
        Some(&Value::Null),
        "no watcher saw it yet: {created}"
    );
    let (status, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(
        fetched["imap"].get("watch"),
        Some(&Value::Null),
        "{fetched}"
    );

    let mut conn = api.db().await?;
    conn.batch_execute(&format!(
        "INSERT INTO inbox_watches (mailbox_id, status, last_error, consecutive_failures) \
         VALUES ('{id}', 'error', 'could not connect: refused', 3)"
    ))
    .await?;
    let expected = json!({
        "status": "error",
        "last_error": "could not connect: refused",
        "consecutive_failures": 3,
        "last_checked_at": null,
    });
    let (status, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["imap"]["watch"], expected, "{fetched}");
    let (status, list) = api.get("/api/v1/mailboxes", &tenant.key).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"][0]["imap"]["watch"], expected, "{list}");

    // A change that is not about IMAP keeps the watcher's state.
    let (status, updated) = api
        .put(&path, &tenant.key, json!({"daily_limit": 40}))
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["imap"]["watch"], expected, "{updated}");

    // New IMAP settings: the watch row is dropped and the inbox read afresh.
    let (status, updated) = api
        .put(
            &path,
            &tenant.key,
            json!({"imap": {"host": "imap.acme.example"}}),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["imap"]["host"], "imap.acme.example", "{updated}");
    assert_eq!(
        updated["imap"].get("watch"),
        Some(&Value::Null),
        "{updated}"
    );
    let (status, fetched) = api.get(&path, &tenant.key).await?;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(
        fetched["imap"].get("watch"),
        Some(&Value::Null),
        "{fetched}"
    );
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM inbox_watches WHERE mailbox_id = '{id}'"
    ))
    .get_result(&mut conn)
    .await?;
    assert_eq!(rows.n, 0, "the watch row is deleted");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The outbound guard: the platform does not connect to private networks for a tenant
// (`security.allowed_private_networks` empty unless a test says otherwise).
// ---------------------------------------------------------------------------------------

/// An api that allows no private network (the test configuration allows loopback).
async fn strict_api() -> anyhow::Result<TestApi> {
    TestApi::start_with(|c| c.security.allowed_private_networks.clear()).await
}

const REFUSED: &str = "refused: resolves to a private address";

#[tokio::test]
async fn hosts_given_as_private_addresses_are_422_naming_the_field() -> anyhow::Result<()> {
    let api = strict_api().await?;
    let tenant = api.tenant("acme").await?;
    let literals = [
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "127.0.0.1",
        "127.1",
        "[::1]",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "fd00::1",
        "fe80::1",
        "224.0.0.1",
        "255.255.255.255",
    ];
    for literal in literals {
        for field in ["smtp.host", "imap.host"] {
            let mut body = greenmail_mailbox(&format!("{}@acme.example", Uuid::now_v7()))?;
            let (section, _) = field.split_once('.').unwrap_or_default();
            body[section]["host"] = json!(literal);
            let (status, error) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
            assert_field_error(status, &error, field);
            assert!(
                error.to_string().contains("not a public address"),
                "{literal}: {error}"
            );
        }
    }

    // Updates too; public addresses and names pass (names are judged when resolved).
    let (status, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            json!({
                "email": "public@acme.example",
                "smtp": {"host": "8.8.8.8", "port": 25, "security": "none"},
            }),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));
    for (field, body) in [
        ("smtp.host", json!({"smtp": {"host": "169.254.169.254"}})),
        (
            "imap.host",
            json!({"imap": {"host": "[fd00::25]", "port": 993, "security": "tls",
                            "username": "u", "password": "p"}}),
        ),
    ] {
        let (status, error) = api.put(&path, &tenant.key, body).await?;
        assert_field_error(status, &error, field);
    }
    for host in [
        "2606:4700::1111",
        "[2606:4700::1111]",
        "localhost",
        "smtp.acme.example",
    ] {
        let (status, updated) = api
            .put(&path, &tenant.key, json!({"smtp": {"host": host}}))
            .await?;
        assert_eq!(status, 200, "{host}: {updated}");
    }
    let (_, unchanged) = api.get(&path, &tenant.key).await?;
    assert_eq!(unchanged["smtp"]["host"], "smtp.acme.example");
    Ok(())
}

#[tokio::test]
async fn the_allowlist_lets_its_networks_be_stored() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| {
        c.security.allowed_private_networks = vec!["10.20.0.0/16".to_owned()];
    })
    .await?;
    let tenant = api.tenant("acme").await?;
    let mailbox = |host: &str| {
        json!({
            "email": format!("{}@acme.example", Uuid::now_v7()),
            "smtp": {"host": host, "port": 25, "security": "none"},
        })
    };
    let (status, created) = api
        .post("/api/v1/mailboxes", &tenant.key, mailbox("10.20.3.4"))
        .await?;
    assert_eq!(status, 201, "{created}");
    let (status, error) = api
        .post("/api/v1/mailboxes", &tenant.key, mailbox("10.21.0.1"))
        .await?;
    assert_field_error(status, &error, "smtp.host");
    Ok(())
}

#[tokio::test]
async fn verify_refuses_a_host_that_resolves_to_loopback_and_connects_nowhere() -> anyhow::Result<()>
{
    let api = strict_api().await?;
    let tenant = api.tenant("acme").await?;
    // Servers "listening" on loopback: nothing may reach them.
    let smtp = std::net::TcpListener::bind("127.0.0.1:0")?;
    let imap = std::net::TcpListener::bind("127.0.0.1:0")?;
    smtp.set_nonblocking(true)?;
    imap.set_nonblocking(true)?;
    let email = "internal@acme.example";
    let mut body = greenmail_mailbox(email)?;
    body["smtp"]["host"] = json!("localhost");
    body["smtp"]["port"] = json!(smtp.local_addr()?.port());
    body["imap"]["host"] = json!("localhost");
    body["imap"]["port"] = json!(imap.local_addr()?.port());
    let (status, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    assert_eq!(status, 201, "names are judged when resolved: {created}");
    let path = format!("/api/v1/mailboxes/{}", id_of(&created));

    let (status, result) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{result}");
    for check in ["smtp", "imap"] {
        assert_eq!(result[check]["ok"], false, "{result}");
        let error = result[check]["error"].as_str().unwrap_or_default();
        assert!(error.contains(REFUSED), "{check}: {error}");
        assert!(!error.contains("127.0.0.1"), "names no address: {error}");
    }
    assert_eq!(result["status"], "error");
    assert!(
        result["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains(REFUSED)),
        "{result}"
    );
    assert!(smtp.accept().is_err(), "the SMTP port was connected to");
    assert!(imap.accept().is_err(), "the IMAP port was connected to");
    assert_no_secret(&result, email, SMTP_PASSWORD);
    assert_no_secret(&result, email, IMAP_PASSWORD);
    // Counted for the operator (the recorder is shared by the tests of this process).
    let metrics = reqwest::get(format!("{}/metrics", api.base_url))
        .await?
        .text()
        .await?;
    for purpose in ["smtp", "imap"] {
        let counter = format!("outbound_connections_refused_total{{purpose=\"{purpose}\"}}");
        assert!(metrics.contains(&counter), "{metrics}");
    }
    Ok(())
}

#[tokio::test]
async fn verify_connects_to_an_allowed_network_by_name() -> anyhow::Result<()> {
    // The test configuration allows 127.0.0.0/8 and ::1/128: GreenMail, named `localhost`.
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let mut body = greenmail_mailbox("named@acme.example")?;
    body["smtp"]["host"] = json!("localhost");
    body["imap"]["host"] = json!("localhost");
    let (_, created) = api.post("/api/v1/mailboxes", &tenant.key, body).await?;
    let (status, result) = api
        .post(
            &format!("/api/v1/mailboxes/{}/verify", id_of(&created)),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["smtp"], json!({"ok": true}), "{result}");
    assert_eq!(result["imap"], json!({"ok": true}), "{result}");
    assert_eq!(result["status"], "active");
    Ok(())
}
