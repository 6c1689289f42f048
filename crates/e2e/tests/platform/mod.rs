//! The platform as users reach it: the api, scheduler and sender worker (or every service)
//! running in this process on a test database and topic prefix, GreenMail as the mail
//! server, and a workspace with its first API key.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use domain::clock::{Clock, SystemClock};
use domain::config::Config;
use domain::kafka::{TopicNames, ensure_topics};
use domain::testing::{TestDatabase, test_config_for};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Patience for anything that crosses services (Kafka, SMTP).
pub const WAIT: Duration = Duration::from_secs(90);
const ADMIN_TOKEN: &str = "e2e-platform-admin-token-0123456789";

pub struct Platform {
    pub db: TestDatabase,
    /// `http://127.0.0.1:<port>`.
    pub api_url: String,
    /// `http://127.0.0.1:<port>`, the configuration's `tracker.public_url`, when the tracker
    /// runs ([`Platform::start_all`]).
    pub tracker_url: Option<String>,
    /// The workspace's API key.
    pub key: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl Platform {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`Platform::start`], with `configure` applied to the services' configuration.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_services(configure, false).await
    }

    /// Every service: also the tracker (on a loopback port that is its `tracker.public_url`,
    /// so the emails' links lead to it), the inbox watcher and the webhooks service.
    pub async fn start_all(configure: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_services(configure, true).await
    }

    async fn start_services(
        configure: impl FnOnce(&mut Config),
        all: bool,
    ) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        let tracker_listener = if all {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            config.tracker.public_url = format!("http://{}", listener.local_addr()?);
            Some(listener)
        } else {
            None
        };
        config.api.admin_token = ADMIN_TOKEN.to_owned().into();
        config.scheduler.poll_interval_ms = 100;
        config.outbox.poll_interval_ms = 50;
        config.sender_worker.connect_timeout_ms = 10_000;
        config.sender_worker.command_timeout_ms = 10_000;
        config.sender_worker.data_timeout_ms = 10_000;
        configure(&mut config);
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;

        let shutdown = CancellationToken::new();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let api = api::Application::build_with_listener(
            config.clone(),
            TcpListener::bind("127.0.0.1:0")?,
        )?;
        let api_url = format!("http://127.0.0.1:{}", api.port());
        let sender = sender_worker::Application::build_with(
            config.clone(),
            TcpListener::bind("127.0.0.1:0")?,
            Arc::clone(&clock),
        )?;
        let mut services = Vec::new();
        let mut tracker_url = None;
        if let Some(listener) = tracker_listener {
            let tracker = tracker::Application::build_with_listener(config.clone(), listener)?;
            tracker_url = Some(config.tracker.public_url.clone());
            let watcher = inbox_watcher::Application::build_with(
                config.clone(),
                TcpListener::bind("127.0.0.1:0")?,
            )?;
            let webhooks = webhooks::Application::build_with(
                config.clone(),
                TcpListener::bind("127.0.0.1:0")?,
            )?;
            services.extend([
                (
                    "tracker",
                    tokio::spawn(tracker.run_until_stopped(shutdown.clone())),
                ),
                (
                    "inbox watcher",
                    tokio::spawn(watcher.run_until_stopped(shutdown.clone())),
                ),
                (
                    "webhooks",
                    tokio::spawn(webhooks.run_until_stopped(shutdown.clone())),
                ),
            ]);
        }
        let scheduler =
            scheduler::Application::build_with(config, TcpListener::bind("127.0.0.1:0")?, clock)?;
        services.extend([
            ("api", tokio::spawn(api.run_until_stopped(shutdown.clone()))),
            (
                "sender worker",
                tokio::spawn(sender.run_until_stopped(shutdown.clone())),
            ),
            (
                "scheduler",
                tokio::spawn(scheduler.run_until_stopped(shutdown.clone())),
            ),
        ]);
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{api_url}/api/v1/workspaces"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "e2e"}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "workspace: {}", response.status());
        let body: Value = response.json().await?;
        let key = body["api_key"]["key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no key in {body}"))?;
        Ok(Self {
            db,
            api_url,
            tracker_url,
            key,
            client,
            shutdown,
            services,
        })
    }

    /// Calls the API with the workspace's key; the status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}/api/v1{path}", self.api_url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A mailbox sending through the SMTP server at `smtp` (no TLS, no spacing between
    /// sends, room for every email of a test); its id.
    pub async fn mailbox(&self, smtp: SocketAddr) -> anyhow::Result<String> {
        let (status, mailbox) = self
            .call(
                reqwest::Method::POST,
                "/mailboxes",
                Some(json!({"email": "seller@example.com", "daily_limit": 10000,
                    "min_interval_seconds": 0, "jitter_seconds": 0, "smtp": {
                    "host": smtp.ip().to_string(), "port": smtp.port(), "security": "none"}})),
            )
            .await?;
        anyhow::ensure!(status == 201, "mailbox: {status} {mailbox}");
        id_of(&mailbox)
    }

    /// An active sequence of `steps` sending from `mailbox_id` at any hour of any day, with
    /// `contacts` (the enrollment request's `contacts`) enrolled; its id.
    pub async fn launch(
        &self,
        mailbox_id: &str,
        steps: Value,
        contacts: Value,
    ) -> anyhow::Result<String> {
        self.launch_sequence(
            json!({
                "name": "e2e",
                "mailbox_ids": [mailbox_id],
                "sending_window": any_time(),
                "steps": steps,
            }),
            contacts,
        )
        .await
    }

    /// The sequence `sequence` (the creation request) created, `contacts` enrolled in it,
    /// and activated; its id.
    pub async fn launch_sequence(
        &self,
        sequence: Value,
        contacts: Value,
    ) -> anyhow::Result<String> {
        let (status, sequence) = self
            .call(reqwest::Method::POST, "/sequences", Some(sequence))
            .await?;
        anyhow::ensure!(status == 201, "sequence: {status} {sequence}");
        let sequence_id = id_of(&sequence)?;
        let (status, enrolled) = self
            .call(
                reqwest::Method::POST,
                &format!("/sequences/{sequence_id}/contacts"),
                Some(json!({ "contacts": contacts })),
            )
            .await?;
        anyhow::ensure!(status == 201, "enrollment: {status} {enrolled}");
        let (status, activated) = self
            .call(
                reqwest::Method::POST,
                &format!("/sequences/{sequence_id}/activate"),
                None,
            )
            .await?;
        anyhow::ensure!(status == 200, "activation: {status} {activated}");
        Ok(sequence_id)
    }

    /// Stops every service and reports how each one ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for (name, task) in self.services {
            task.await?
                .map_err(|e| e.context(format!("the {name} ended with an error")))?;
        }
        Ok(())
    }
}

/// A sequence's `sending_window`: any hour of any day.
pub fn any_time() -> Value {
    json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
           "start_time": "00:00", "end_time": "23:59"})
}

/// The `id` of an API resource.
pub fn id_of(resource: &Value) -> anyhow::Result<String> {
    resource["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id in {resource}"))
}
