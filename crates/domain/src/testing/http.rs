//! HTTP checks shared by the services' health tests.

use std::time::Duration;

use super::poll_until;

/// `GET url`, returning the status and the JSON body (Null when the body is not JSON).
pub async fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// `GET url`, returning the status and the body as text (a service's `/metrics`).
pub async fn get_text(url: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The checks every service's health endpoints must pass with dependencies up.
pub async fn assert_healthy_and_ready(base_url: &str) -> anyhow::Result<()> {
    let (status, body) = get_json(&format!("{base_url}/healthz")).await?;
    anyhow::ensure!(status == 200, "/healthz answered {status}: {body}");
    // Kafka may still be electing the test topics' leaders; readiness must come within bounds.
    let body = poll_until(Duration::from_secs(20), "/readyz to answer 200", || async {
        match get_json(&format!("{base_url}/readyz")).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await?;
    anyhow::ensure!(body["status"] == "ready", "unexpected /readyz body: {body}");
    anyhow::ensure!(body["checks"]["database"]["ok"] == true, "{body}");
    anyhow::ensure!(body["checks"]["kafka"]["ok"] == true, "{body}");
    let metrics = reqwest::get(format!("{base_url}/metrics")).await?;
    anyhow::ensure!(
        metrics.status() == 200,
        "/metrics answered {}",
        metrics.status()
    );
    Ok(())
}

/// `/readyz` must be 503 naming the database when it cannot be reached.
pub async fn assert_unready_without_database(base_url: &str) -> anyhow::Result<()> {
    let (status, body) = get_json(&format!("{base_url}/readyz")).await?;
    anyhow::ensure!(status == 503, "/readyz answered {status}: {body}");
    anyhow::ensure!(body["status"] == "unavailable", "{body}");
    anyhow::ensure!(body["checks"]["database"]["ok"] == false, "{body}");
    let reason = body["checks"]["database"]["reason"]
        .as_str()
        .unwrap_or_default();
    anyhow::ensure!(
        reason.contains("database"),
        "reason should name the database: {body}"
    );
    // Liveness does not depend on the database: Kubernetes must not restart the pod for it.
    let (status, _) = get_json(&format!("{base_url}/healthz")).await?;
    anyhow::ensure!(status == 200, "/healthz answered {status}");
    Ok(())
}
