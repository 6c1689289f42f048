use domain::testing::{
    TestDatabase, assert_healthy_and_ready, assert_unready_without_database, test_config_for,
    test_config_with_url, unreachable_database_url,
};
use scheduler::Application;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn ready_with_dependencies_up() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let app = Application::build(test_config_for(&db)?)?;
    let base_url = format!("http://127.0.0.1:{}", app.admin_port());
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
    let base_url = format!("http://127.0.0.1:{}", app.admin_port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    assert_unready_without_database(&base_url).await?;

    shutdown.cancel();
    running.await??;
    Ok(())
}
