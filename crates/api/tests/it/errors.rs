//! The error envelope and the protections every endpoint shares.

use serde_json::json;

use crate::support::{TestApi, assert_error, assert_field_error};

#[tokio::test]
async fn malformed_json_is_400() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/api-keys",
            Some(&tenant.key),
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await?;
    assert_error(status, &error, 400, "bad_request");
    Ok(())
}

#[tokio::test]
async fn a_body_must_be_an_object() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    // serde would read a struct from an array of its fields in order.
    let (status, error) = api
        .post("/api/v1/api-keys", &tenant.key, json!(["CRM sync"]))
        .await?;
    assert_field_error(status, &error, "body");
    let (status, error) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"contacts": [["x@example.com"]]}),
        )
        .await?;
    assert_eq!(status, 200, "{error}");
    assert_eq!(
        error["rejected"][0]["reason"],
        "item: must be a JSON object"
    );
    Ok(())
}

#[tokio::test]
async fn fields_a_client_does_not_own_are_rejected() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api
        .post(
            "/api/v1/api-keys",
            &tenant.key,
            json!({"name": "x", "workspace_id": tenant.id}),
        )
        .await?;
    assert_field_error(status, &error, "workspace_id");
    Ok(())
}

#[tokio::test]
async fn oversized_body_is_413() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.api.max_body_bytes = 1024).await?;
    let tenant = api.tenant("acme").await?;
    let big = json!({"name": "x".repeat(4096)});
    let (status, error) = api.post("/api/v1/api-keys", &tenant.key, big).await?;
    assert_error(status, &error, 413, "payload_too_large");
    Ok(())
}

#[tokio::test]
async fn unknown_route_and_malformed_id_are_404() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api.get("/api/v1/nothing-here", &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api
        .delete("/api/v1/api-keys/not-a-uuid", &tenant.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn requests_beyond_the_key_rate_limit_are_429() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| {
        c.api.rate_limit_per_second = 1;
        c.api.rate_limit_burst = 3;
    })
    .await?;
    let tenant = api.tenant("acme").await?;
    let other = api.tenant("other").await?;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.get("/api/v1/api-keys", &tenant.key).await?.0);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (status, error) = api.get("/api/v1/api-keys", &tenant.key).await?;
    if status == 429 {
        assert_error(status, &error, 429, "rate_limited");
    }
    // The limit is per key: another workspace is unaffected.
    assert_eq!(api.get("/api/v1/api-keys", &other.key).await?.0, 200);
    Ok(())
}
