use domain::kafka::health::KafkaProbe;
use domain::service::readiness::Readiness;
use domain::testing::{TestDatabase, test_config_for};

#[tokio::test]
async fn ready_when_database_migrated_and_kafka_up() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let config = test_config_for(&db)?;
    let readiness = Readiness::new(db.pool()?, KafkaProbe::new(&config.kafka)?);
    let report = readiness.check().await;
    assert!(report.is_ready(), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn unready_naming_kafka_when_it_is_unreachable() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    config.kafka.brokers = closed.to_string();
    let readiness = Readiness::new(db.pool()?, KafkaProbe::new(&config.kafka)?);
    let report = readiness.check().await;
    assert!(!report.is_ready());
    assert!(report.checks.database.ok, "{report:?}");
    assert!(!report.checks.kafka.ok);
    let reason = report.checks.kafka.reason.unwrap_or_default();
    assert!(reason.contains("kafka"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn unready_naming_migrations_when_some_are_pending() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let config = test_config_for(&db)?;
    let readiness = Readiness::new(db.pool()?, KafkaProbe::new(&config.kafka)?);
    let report = readiness.check().await;
    assert!(!report.checks.database.ok);
    let reason = report.checks.database.reason.unwrap_or_default();
    assert!(reason.contains("migrations not applied"), "{reason}");
    Ok(())
}
