use serde_json::json;

use crate::support::{TestApi, assert_error, assert_field_error};

#[tokio::test]
async fn create_list_and_revoke_keys() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let (status, created) = api
        .post("/api/v1/api-keys", &tenant.key, json!({"name": "CRM sync"}))
        .await?;
    assert_eq!(status, 201, "{created}");
    let second = created["key"].as_str().unwrap_or_default().to_owned();
    let second_id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(second, tenant.key);

    let (status, _) = api.get("/api/v1/api-keys", &second).await?;
    assert_eq!(status, 200, "the new key authenticates");

    let (status, _) = api
        .delete(&format!("/api/v1/api-keys/{second_id}"), &tenant.key)
        .await?;
    assert_eq!(status, 204);
    let (status, error) = api.get("/api/v1/api-keys", &second).await?;
    assert_error(status, &error, 401, "unauthorized");

    let (_, list) = api.get("/api/v1/api-keys", &tenant.key).await?;
    let revoked = list["data"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == second_id.as_str()))
        .map(|k| k["revoked_at"].is_string());
    assert_eq!(revoked, Some(true), "{list}");

    // Revoking twice: there is no such active key any more.
    let (status, error) = api
        .delete(&format!("/api/v1/api-keys/{second_id}"), &tenant.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn keys_are_isolated_between_workspaces() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let a = api.tenant("a").await?;
    let b = api.tenant("b").await?;
    let (_, b_keys) = api.get("/api/v1/api-keys", &b.key).await?;
    let b_key_id = b_keys["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (status, error) = api
        .delete(&format!("/api/v1/api-keys/{b_key_id}"), &a.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (status, _) = api.get("/api/v1/api-keys", &b.key).await?;
    assert_eq!(status, 200, "b's key still works");

    let (_, a_keys) = api.get("/api/v1/api-keys", &a.key).await?;
    assert_eq!(a_keys["data"].as_array().map(Vec::len), Some(1), "{a_keys}");
    Ok(())
}

#[tokio::test]
async fn missing_malformed_or_unknown_keys_are_401() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let (status, error) = api
        .request(reqwest::Method::GET, "/api/v1/api-keys", None, None)
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    let (status, error) = api.get("/api/v1/api-keys", "seq_not-a-real-key").await?;
    assert_error(status, &error, 401, "unauthorized");
    Ok(())
}

#[tokio::test]
async fn key_name_is_required() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (status, error) = api.post("/api/v1/api-keys", &tenant.key, json!({})).await?;
    assert_field_error(status, &error, "name");
    let (status, error) = api
        .post("/api/v1/api-keys", &tenant.key, json!({"name": ""}))
        .await?;
    assert_field_error(status, &error, "name");
    Ok(())
}
