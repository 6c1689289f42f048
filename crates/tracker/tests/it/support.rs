//! A tracker running in-process on port 0, a client that does not follow redirects, and
//! tokens signed with the test configuration's key.

use chrono::{DateTime, TimeDelta, Utc};
use domain::config::Config;
use domain::kafka::{TopicNames, ensure_topics};
use domain::tracking_token::{TokenSigner, TrackingAction};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker::Application;
use uuid::Uuid;

pub struct Running {
    pub base_url: String,
    pub config: Config,
    pub signer: TokenSigner,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Creates the topics first, so the first event does not wait for them.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;
        let signer = config
            .security
            .token_signer()
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("test config has no tracking key"))?;
        let app = Application::build(config.clone())?;
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            base_url,
            config,
            signer,
            client,
            shutdown,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn events_topic(&self) -> String {
        TopicNames::from_config(&self.config.kafka).email_events
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.get(self.url(path)).send().await?)
    }

    pub async fn get_as(&self, path: &str, user_agent: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .client
            .get(self.url(path))
            .header("User-Agent", user_agent)
            .send()
            .await?)
    }

    pub async fn one_click(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await?)
    }

    /// Stops the tracker, which flushes its events.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// A browser's user agent.
pub const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15";

/// Ids of one message.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    pub message_id: Uuid,
}

impl Ids {
    pub fn new() -> Self {
        Self {
            workspace_id: Uuid::now_v7(),
            enrollment_id: Uuid::now_v7(),
            message_id: Uuid::now_v7(),
        }
    }

    pub fn open(&self) -> TrackingAction {
        TrackingAction::Open {
            workspace_id: self.workspace_id,
            enrollment_id: self.enrollment_id,
            message_id: self.message_id,
        }
    }

    pub fn click(&self, url: &str) -> TrackingAction {
        TrackingAction::Click {
            workspace_id: self.workspace_id,
            enrollment_id: self.enrollment_id,
            message_id: self.message_id,
            url: url.to_owned(),
        }
    }

    pub fn unsubscribe(&self) -> TrackingAction {
        TrackingAction::Unsubscribe {
            workspace_id: self.workspace_id,
            enrollment_id: self.enrollment_id,
            message_id: self.message_id,
        }
    }

    pub fn trap(&self) -> TrackingAction {
        TrackingAction::Trap {
            workspace_id: self.workspace_id,
            enrollment_id: self.enrollment_id,
            message_id: self.message_id,
        }
    }
}

/// An hour ago: long enough for a person to have opened the email.
pub fn an_hour_ago() -> DateTime<Utc> {
    Utc::now() - TimeDelta::hours(1)
}
