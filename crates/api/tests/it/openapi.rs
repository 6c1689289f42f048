use crate::support::TestApi;

#[tokio::test]
async fn spec_and_swagger_ui_are_public() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let (status, spec) = api
        .request(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(spec["swagger"], "2.0");
    assert!(
        spec["paths"]["/api/v1/api-keys"]["post"].is_object(),
        "{spec}"
    );
    let (status, v3) = api
        .request(reqwest::Method::GET, "/api/v1/openapi-v3.json", None, None)
        .await?;
    assert_eq!(status, 200);
    assert!(
        v3["openapi"].as_str().unwrap_or_default().starts_with("3."),
        "{v3}"
    );

    let client = reqwest::Client::new();
    for path in ["/swagger/index.html", "/api/v1/swagger/index.html"] {
        let response = client.get(format!("{}{path}", api.base_url)).send().await?;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await?.contains("swagger"), "{path}");
    }
    let (status, _) = api
        .request(reqwest::Method::GET, "/swagger/no-such-file.js", None, None)
        .await?;
    assert_eq!(status, 404, "unknown files are 404, not a panic");
    Ok(())
}
