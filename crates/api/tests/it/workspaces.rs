use serde_json::json;

use crate::support::{ADMIN_TOKEN, TestApi, assert_error, assert_field_error};

#[tokio::test]
async fn admin_creates_a_workspace_and_its_first_key_works() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let (status, body) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(&json!({"name": "Acme", "tracking_base_url": "https://t.acme.test"})),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["workspace"]["name"], "Acme");
    let key = body["api_key"]["key"].as_str().unwrap_or_default();
    assert!(key.starts_with("seq_"), "{body}");
    assert!(key.starts_with(body["api_key"]["prefix"].as_str().unwrap_or("-")));

    let (status, keys) = api.get("/api/v1/api-keys", key).await?;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(1));
    assert!(
        keys["data"][0].get("key").is_none(),
        "key material must never be listed: {keys}"
    );
    Ok(())
}

#[tokio::test]
async fn workspace_creation_needs_the_admin_token() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let body = json!({"name": "Acme"});
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            None,
            Some(&body),
        )
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some("wrong-token-wrong-token-wrong"),
            Some(&body),
        )
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    // An API key is not an admin token.
    let tenant = api.tenant("first").await?;
    let (status, error) = api.post("/api/v1/workspaces", &tenant.key, body).await?;
    assert_error(status, &error, 401, "unauthorized");
    Ok(())
}

#[tokio::test]
async fn workspace_creation_is_disabled_without_an_admin_token() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.api.admin_token = String::new().into()).await?;
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(""),
            Some(&json!({"name": "x"})),
        )
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled")
    );
    Ok(())
}

#[tokio::test]
async fn workspace_fields_are_validated() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(&json!({"name": " ", "tracking_base_url": "ftp://x"})),
        )
        .await?;
    assert_field_error(status, &error, "name");
    assert_field_error(status, &error, "tracking_base_url");
    Ok(())
}
