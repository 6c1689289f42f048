//! Enrollment throughput through the real HTTP API and PostgreSQL: one
//! `POST /api/v1/sequences/{id}/contacts` with 100,000 new contacts given as data (each is
//! validated, upserted as a contact, checked against suppressions and enrolled), then the
//! same request again (100,000 `already_enrolled`).
//!
//! Run with `cargo xtask bench -p api --bench enroll`; docs/benchmarks.md records the figures.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::Application;
use domain::testing::{TestDatabase, test_config_for};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const ROWS: usize = 100_000;

fn contact(i: usize) -> Value {
    json!({
        "email": format!("lead{i}@company{}.example", i % 997),
        "first_name": format!("First{i}"),
        "last_name": format!("Last{i}"),
        "company": format!("Company {}", i % 997),
        "timezone": "America/New_York",
        "attributes": {"segment": "smb"}
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("enroll bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.api.admin_token = ADMIN_TOKEN.to_owned().into();
    config.api.max_body_bytes = 64 << 20;
    let app = Application::build(config)?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();

    let created: Value = client
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let key = created["api_key"]["key"]
        .as_str()
        .context("no key")?
        .to_owned();
    let sequence: Value = client
        .post(format!("{base}/api/v1/sequences"))
        .bearer_auth(&key)
        .json(&json!({"name": "bench", "steps": [{"subject": "Hi {first_name}", "content": "x"}]}))
        .send()
        .await?
        .json()
        .await?;
    let sequence_id = sequence["id"].as_str().context("no sequence")?.to_owned();

    let body = json!({ "contacts": (0..ROWS).map(contact).collect::<Vec<_>>() }).to_string();
    println!("request body: {} bytes", body.len());
    for (what, expected_added) in [
        ("enroll 100,000 new contacts in one request", ROWS),
        ("the same request again (all already enrolled)", 0),
    ] {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/sequences/{sequence_id}/contacts"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let status = response.status();
        let result: Value = response.json().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(status.as_u16() == 201, "answered {status}: {result}");
        anyhow::ensure!(
            result["contacts_added"] == expected_added,
            "unexpected result: {}",
            result["contacts_added"]
        );
        report(what, elapsed);
    }

    shutdown.cancel();
    running.await??;
    Ok(())
}

fn report(what: &str, elapsed: Duration) {
    println!(
        "{what:<50} {ROWS:>7} rows in {:>7.3} s = {:>9.0} rows/s",
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64()
    );
}
