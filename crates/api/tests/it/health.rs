use api::Application;
use domain::testing::{
    TestDatabase, assert_healthy_and_ready, assert_unready_without_database, test_config_for,
    test_config_with_url, unreachable_database_url,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn ready_with_dependencies_up() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let app = Application::build(test_config_for(&db)?)?;
    let base_url = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    assert_healthy_and_ready(&base_url).await?;

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn unready_when_database_unreachable() -> anyhow::Result<()> {
    let app = Application::build(test_config_with_url(&unreachable_database_url()?)?)?;
    let base_url = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    assert_unready_without_database(&base_url).await?;
    // The seed's health check says the same, as documented.
    let response = reqwest::get(format!("{base_url}/api/v1/health")).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    assert_eq!(status, 503);
    crate::contract::contract().check("GET", "/api/v1/health", status, &headers, &body)?;

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn seed_health_endpoint_answers() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let app = Application::build(test_config_for(&db)?)?;
    let base_url = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let body = domain::testing::poll_until(
        std::time::Duration::from_secs(20),
        "/api/v1/health to answer 200",
        || async {
            match domain::testing::get_json(&format!("{base_url}/api/v1/health")).await {
                Ok((200, body)) => Some(body),
                _ => None,
            }
        },
    )
    .await?;
    assert_eq!(body["status"], "ready");
    let response = reqwest::get(format!("{base_url}/api/v1/health")).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    crate::contract::contract().check("GET", "/api/v1/health", status, &headers, &bytes)?;

    shutdown.cancel();
    running.await??;
    Ok(())
}
