//! The input rules every endpoint shares: no NUL anywhere (PostgreSQL text cannot hold one),
//! no control characters in single-line fields and query parameters, each refused with a 422
//! naming the field; and every error, the framework's own included, in the one envelope.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApi, assert_error, assert_field_error};

const NUL: &str = "a\u{0}b";
const INJECTION: &str = "Bob\r\nBcc: v@x.invalid";

fn sequence(name: &str, subject: &str, content: &str, variant: &str) -> Value {
    json!({
        "name": name,
        "steps": [{
            "step_order": 1, "subject": subject, "content": content, "wait_days": 0,
            "variants": [{"subject": "v", "content": variant, "weight": 1}],
        }],
    })
}

#[tokio::test]
async fn a_nul_in_any_json_field_is_a_422_naming_it() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, created) = api
        .post(
            "/api/v1/sequences",
            &t.key,
            sequence("S", "Hi", "Body", "V"),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let step = created["steps"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let cases: Vec<(reqwest::Method, String, Value, &str)> = vec![
        (
            reqwest::Method::POST,
            "/api/v1/api-keys".into(),
            json!({"name": NUL}),
            "name",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sequences".into(),
            sequence(NUL, "Hi", "Body", "V"),
            "name",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sequences".into(),
            sequence("S", NUL, "Body", "V"),
            "steps[0].subject",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sequences".into(),
            sequence("S", "Hi", NUL, "V"),
            "steps[0].content",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sequences".into(),
            sequence("S", "Hi", "Body", NUL),
            "steps[0].variants[0].content",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/sequences/{id}"),
            json!({"name": NUL}),
            "name",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/sequences/{id}/steps"),
            json!({"subject": "x", "content": NUL}),
            "content",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/sequences/{id}/steps/{step}"),
            json!({"subject": NUL}),
            "subject",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/contacts".into(),
            json!({"email": "a@example.com", "attributes": {"pl\u{0}an": "x"}}),
            "attributes",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/contacts".into(),
            json!({"email": "a@example.com", "attributes": {"plan": NUL}}),
            "attributes.plan",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/suppressions".into(),
            json!({"email": NUL}),
            "email",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, error) = api
            .request(method.clone(), &path, Some(&t.key), Some(&body))
            .await?;
        assert_eq!(status, 422, "{method} {path} {body}: {error}");
        assert_field_error(status, &error, field);
    }
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(&json!({"name": NUL})),
        )
        .await?;
    assert_field_error(status, &error, "name");

    // Nothing was stored: the sequence still has its one step and name.
    let (_, after) = api.get(&format!("/api/v1/sequences/{id}"), &t.key).await?;
    assert_eq!(after["name"], "S");
    assert_eq!(after["steps"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn an_escaped_backslash_before_u0000_is_plain_text() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    let (status, key) = api
        .post(
            "/api/v1/api-keys",
            &t.key,
            json!({"name": "C:\\u0000 path"}),
        )
        .await?;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["name"], "C:\\u0000 path");
    Ok(())
}

#[tokio::test]
async fn a_control_character_in_a_query_parameter_is_a_422_naming_it() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    for (path, field) in [
        ("/api/v1/contacts?email=%00", "email"),
        ("/api/v1/suppressions?email=%00", "email"),
        ("/api/v1/suppressions?domain=%00", "domain"),
        ("/api/v1/sequences?status=%00", "status"),
        ("/api/v1/contacts?email=a%0D%0Ab", "email"),
        ("/api/v1/mailboxes?cursor=%00", "cursor"),
    ] {
        let (status, error) = api.get(path, &t.key).await?;
        assert_field_error(status, &error, field);
    }
    // A value of the wrong type names the parameter, in the API's words.
    let (status, error) = api.get("/api/v1/contacts?limit=abc", &t.key).await?;
    assert_field_error(status, &error, "limit");
    let message = error["error"]["details"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !message.contains("deserialize") && !message.contains("digit"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn line_breaks_are_refused_in_single_line_fields() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    for field in ["first_name", "last_name", "company", "title"] {
        let (status, error) = api
            .post(
                "/api/v1/contacts",
                &t.key,
                json!({"email": "bob@example.com", field: INJECTION}),
            )
            .await?;
        assert_field_error(status, &error, field);
    }
    let (status, created) = api
        .post(
            "/api/v1/contacts",
            &t.key,
            json!({"email": "bob@example.com"}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let contact = created["id"].as_str().unwrap_or_default();
    let (status, error) = api
        .put(
            &format!("/api/v1/contacts/{contact}"),
            &t.key,
            json!({"first_name": "Bob\tby"}),
        )
        .await?;
    assert_field_error(status, &error, "first_name");

    // Inline contacts of an enrollment follow the same rules: the contact is skipped.
    let (_, seq) = api
        .post(
            "/api/v1/sequences",
            &t.key,
            sequence("S", "Hi", "Body", "V"),
        )
        .await?;
    let seq = seq["id"].as_str().unwrap_or_default();
    let (status, result) = api
        .post(
            &format!("/api/v1/sequences/{seq}/contacts"),
            &t.key,
            json!({"contacts": [{"email": "eve@example.com", "first_name": INJECTION}]}),
        )
        .await?;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["contacts_added"], 0, "{result}");
    let detail = result["skipped"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("first_name"), "{result}");

    for (body, field) in [
        (json!({"name": "two\nlines"}), "name"),
        (sequence("S", "Hi\tthere", "Body", "V"), "steps[0].subject"),
    ] {
        let (status, error) = api.post("/api/v1/sequences", &t.key, body).await?;
        assert_field_error(status, &error, field);
    }
    // Bodies and attribute values are free text: line breaks are content there.
    let (status, created) = api
        .post(
            "/api/v1/contacts",
            &t.key,
            json!({"email": "carol@example.com", "attributes": {"note": "line one\nline two"}}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");

    // A CSV cell with a line break in a name column rejects its row only.
    let csv = "email,first_name\r\nann@example.com,Ann\r\nbob2@example.com,\"Bob\r\nBcc: v@x.invalid\"\r\n";
    let (status, result) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/contacts/import",
            Some(&t.key),
            "text/csv",
            csv.as_bytes().to_vec(),
        )
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], 1, "{result}");
    assert_eq!(result["rejected"][0]["row"], 3, "{result}");
    Ok(())
}

#[tokio::test]
async fn framework_errors_use_the_envelope() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.api.max_uri_bytes = 2048).await?;
    let t = api.tenant("acme").await?;
    let (status, error) = api
        .request(
            reqwest::Method::PATCH,
            "/api/v1/sequences",
            Some(&t.key),
            None,
        )
        .await?;
    assert_error(status, &error, 405, "method_not_allowed");
    let (status, error) = api
        .request(
            reqwest::Method::DELETE,
            "/api/v1/api-keys",
            Some(&t.key),
            None,
        )
        .await?;
    assert_error(status, &error, 405, "method_not_allowed");
    let (status, error) = api.get("/nothing/here", &t.key).await?;
    assert_error(status, &error, 404, "not_found");

    let long = format!("/api/v1/contacts?email={}", "a".repeat(4096));
    let (status, error) = api.get(&long, &t.key).await?;
    assert_error(status, &error, 414, "uri_too_long");
    Ok(())
}

/// What the server answers to `request` sent as it is over a new connection: the status and
/// the JSON body.
async fn raw_exchange(api: &TestApi, request: &[u8]) -> anyhow::Result<(u16, Value)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = api.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    // The server may answer and close before it read everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no response head: {text:?}"))?;
    let status = head.split(' ').nth(1).unwrap_or_default().parse()?;
    anyhow::ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    Ok((status, serde_json::from_str(body)?))
}

#[tokio::test]
async fn requests_the_http_layer_cannot_parse_get_the_envelope_too() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let t = api.tenant("acme").await?;
    // Beyond api.max_uri_bytes, beyond the 64 KiB the HTTP layer parses, beyond its 128 KiB head.
    for size in [10_000, 100_000, 140_000] {
        let request = format!(
            "GET /api/v1/contacts?email={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\n\r\n",
            "a".repeat(size),
            t.key
        );
        let (status, error) = raw_exchange(&api, request.as_bytes())
            .await
            .map_err(|e| anyhow::anyhow!("{size}: {e}"))?;
        assert_error(status, &error, 414, "uri_too_long");
    }
    let (status, error) = raw_exchange(&api, b"NOT HTTP AT ALL\r\n\r\n").await?;
    assert_error(status, &error, 400, "bad_request");
    let huge_header = format!(
        "GET /api/v1/contacts HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(140_000)
    );
    let (status, error) = raw_exchange(&api, huge_header.as_bytes()).await?;
    assert_error(status, &error, 431, "request_header_fields_too_large");
    // The connection-level wrapper leaves ordinary exchanges alone.
    let (status, page) = raw_exchange(
        &api,
        format!(
            "GET /api/v1/contacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
            t.key
        )
        .as_bytes(),
    )
    .await?;
    assert_eq!((status, &page["data"]), (200, &json!([])));
    Ok(())
}
