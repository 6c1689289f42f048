//! Contact write throughput through the real HTTP API and PostgreSQL.
//!
//! Run with `cargo xtask bench -p api` (infrastructure up, `DATABASE_URL` and `KAFKA_BROKERS`
//! set). Starts the api in-process on its own database cloned from the migrated template,
//! then times, each in a fresh workspace:
//!
//! - `POST /api/v1/contacts` with 10 batches of 10,000 contacts (100,000 new contacts);
//! - `POST /api/v1/contacts/import` of a 100,000-row CSV (new contacts), the figure that
//!   must stay above 50,000 rows/s;
//! - the same CSV again into the same workspace (100,000 updates).
//!
//! Results are printed as rows per second; docs/benchmarks.md records them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::Application;
use domain::testing::{TestDatabase, test_config_for};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const ROWS: usize = 100_000;
const BATCH: usize = 10_000;
const FLOOR_ROWS_PER_SECOND: f64 = 50_000.0;

struct Server {
    base_url: String,
    client: reqwest::Client,
}

impl Server {
    async fn workspace(&self, name: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/api/v1/workspaces", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name }))
            .send()
            .await?;
        let body: Value = response.json().await?;
        body["api_key"]["key"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("workspace creation failed: {body}"))
    }

    /// Sends a request and returns the elapsed time and the JSON answer (which must be 2xx).
    async fn timed(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(Duration, Value)> {
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(status.is_success(), "answered {status}: {body}");
        Ok((elapsed, body))
    }
}

fn contact(i: usize) -> Value {
    json!({
        "email": format!("contact{i}@example{}.com", i % 97),
        "first_name": format!("First{i}"),
        "last_name": format!("Last{i}"),
        "company": format!("Company {}", i % 1000),
        "title": "Head of Growth",
        "timezone": "Europe/Paris",
        "attributes": {"plan": "pro", "city": "Lyon"}
    })
}

fn csv(rows: usize) -> String {
    let mut csv = String::with_capacity(rows * 120);
    csv.push_str("email,first_name,last_name,company,title,timezone,plan,city\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "contact{i}@example{}.com,First{i},Last{i},Company {},Head of Growth,Europe/Paris,pro,Lyon\n",
            i % 97,
            i % 1000
        ));
    }
    csv
}

fn report(what: &str, rows: usize, elapsed: Duration) -> f64 {
    let rate = rows as f64 / elapsed.as_secs_f64();
    println!(
        "{what:<48} {rows:>7} rows in {:>7.3} s = {rate:>9.0} rows/s",
        elapsed.as_secs_f64()
    );
    rate
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("DATABASE_URL").is_none() {
        println!("import bench skipped: DATABASE_URL is not set (run `cargo xtask bench`)");
        return Ok(());
    }
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    config.api.admin_token = ADMIN_TOKEN.to_owned().into();
    config.api.rate_limit_per_second = 1000;
    config.api.rate_limit_burst = 1000;
    let app = Application::build(config)?;
    let server = Server {
        base_url: format!("http://127.0.0.1:{}", app.port()),
        client: reqwest::Client::new(),
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // (a) JSON batches.
    let key = server.workspace("bench-batches").await?;
    let mut total = Duration::ZERO;
    for batch in 0..ROWS / BATCH {
        let contacts: Vec<Value> = (batch * BATCH..(batch + 1) * BATCH).map(contact).collect();
        let request = server
            .client
            .post(format!("{}/api/v1/contacts", server.base_url))
            .bearer_auth(&key)
            .json(&json!({ "contacts": contacts }));
        let (elapsed, body) = server.timed(request).await?;
        anyhow::ensure!(body["inserted"] == BATCH, "unexpected batch result: {body}");
        total += elapsed;
    }
    report("POST /contacts, 10 batches of 10,000 (insert)", ROWS, total);

    // (b) CSV import of new contacts, then (c) the same file again (updates).
    let file = csv(ROWS);
    println!("CSV file: {} bytes", file.len());
    let key = server.workspace("bench-import").await?;
    let mut import_rate = 0.0;
    for (what, field) in [
        ("POST /contacts/import, 100,000 rows (insert)", "inserted"),
        ("POST /contacts/import, same file (update)", "updated"),
    ] {
        let request = server
            .client
            .post(format!("{}/api/v1/contacts/import", server.base_url))
            .bearer_auth(&key)
            .header("content-type", "text/csv")
            .body(file.clone());
        let (elapsed, body) = server.timed(request).await?;
        anyhow::ensure!(body[field] == ROWS, "unexpected import result: {body}");
        let rate = report(what, ROWS, elapsed);
        if field == "inserted" {
            import_rate = rate;
        }
    }

    shutdown.cancel();
    let _ = running.await;
    if import_rate < FLOOR_ROWS_PER_SECOND {
        println!("WARNING: CSV import below the floor of {FLOOR_ROWS_PER_SECOND} rows/s");
    }
    Ok(())
}
