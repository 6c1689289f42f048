//! Enrollment throughput through the real HTTP API and PostgreSQL: one
//! `POST /api/v1/sequences/{id}/contacts` with 100,000 new contacts given as data (each is
//! validated, upserted as a contact, checked against suppressions and enrolled), then the
//! same request again (100,000 `already_enrolled`). Each line also gives the CPU seconds per
//! 1,000 rows of this process (the api in-process, plus the small HTTP client) and of
//! PostgreSQL (this database's backends and the server's own processes), read from `/proc`.
//!
//! Run with `cargo xtask bench -p api --bench enroll`; docs/benchmarks.md records the figures.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::Application;
use domain::testing::process_stats::{
    clock_ticks, postgres_cpu_ticks, process_cpu_ticks, ticks_between,
};
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

    let mut stats_conn = db.connect().await?;
    let body = json!({ "contacts": (0..ROWS).map(contact).collect::<Vec<_>>() }).to_string();
    println!("request body: {} bytes", body.len());
    for (what, expected_added) in [
        ("enroll 100,000 new contacts in one request", ROWS),
        ("the same request again (all already enrolled)", 0),
    ] {
        let api_t0 = process_cpu_ticks(std::process::id())?;
        let postgres_t0 = postgres_cpu_ticks(&mut stats_conn).await?;
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
        let api_cpu = process_cpu_ticks(std::process::id())?.saturating_sub(api_t0);
        let postgres_cpu = ticks_between(&postgres_t0, &postgres_cpu_ticks(&mut stats_conn).await?);
        anyhow::ensure!(status.as_u16() == 201, "answered {status}: {result}");
        anyhow::ensure!(
            result["contacts_added"] == expected_added,
            "unexpected result: {}",
            result["contacts_added"]
        );
        report(what, elapsed, api_cpu, postgres_cpu);
    }

    shutdown.cancel();
    running.await??;
    Ok(())
}

fn report(what: &str, elapsed: Duration, api_ticks: u64, postgres_ticks: u64) {
    let per_1000 = |t: u64| t as f64 / clock_ticks() * 1000.0 / ROWS as f64;
    println!(
        "{what:<50} {ROWS:>7} rows in {:>7.3} s = {:>9.0} rows/s; CPU-s per 1,000 rows: \
         api {:.3}, PostgreSQL {:.3}",
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64(),
        per_1000(api_ticks),
        per_1000(postgres_ticks)
    );
}
