//! One test's world: its database, topics, workspace and endpoints, the service running in
//! the test's process, and records put on the service's topics as the scheduler would.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use domain::config::Config;
use domain::crypto::SecretCipher;
use domain::db::webhook_endpoints;
use domain::db::workspaces::{self, NewWorkspace};
use domain::events::{MailboxEvent, WebhookEvent};
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::testing::webhook_receiver::{Received, insert_endpoint};
use domain::testing::{TestDatabase, poll_until, quick_webhooks, test_config_for};
use domain::webhooks::WebhookSecret;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct World {
    pub db: TestDatabase,
    pub config: Config,
    pub topics: TopicNames,
    pub producer: Producer,
    pub workspace: Uuid,
    cipher: SecretCipher,
}

/// An endpoint as the API would have created it.
pub struct Endpoint {
    pub id: Uuid,
    pub secret: WebhookSecret,
}

impl Endpoint {
    pub fn secret_text(&self) -> String {
        self.secret.text().expose_secret().to_owned()
    }
}

/// The service running in this process.
pub struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub admin_port: u16,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

impl World {
    pub async fn new() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        quick_webhooks(&mut config);
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;
        let cipher = config
            .security
            .cipher()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let workspace = Uuid::now_v7();
        let mut conn = db.connect().await?;
        add_workspace(&mut conn, workspace).await?;
        Ok(World {
            producer: Producer::new(&config.kafka)?,
            db,
            config,
            topics,
            workspace,
            cipher,
        })
    }

    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        self.db.connect().await
    }

    /// Another workspace, for isolation.
    pub async fn other_workspace(&self) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        add_workspace(&mut self.connect().await?, id).await?;
        Ok(id)
    }

    /// An enabled endpoint of `workspace` at `url` for `event_types` (empty: all).
    pub async fn endpoint_in(
        &self,
        workspace: Uuid,
        url: &str,
        event_types: &[&str],
    ) -> anyhow::Result<Endpoint> {
        let (id, secret) = insert_endpoint(
            &mut self.connect().await?,
            &self.cipher,
            workspace,
            url,
            event_types,
        )
        .await?;
        Ok(Endpoint { id, secret })
    }

    pub async fn endpoint(&self, url: &str, event_types: &[&str]) -> anyhow::Result<Endpoint> {
        self.endpoint_in(self.workspace, url, event_types).await
    }

    /// Rotates `endpoint`'s secret as the API does: the old one signs for another day.
    pub async fn rotate(&self, endpoint: &Endpoint) -> anyhow::Result<Endpoint> {
        let secret = WebhookSecret::generate();
        let encrypt = |s: &WebhookSecret, context: String| self.cipher.encrypt(&s.text(), &context);
        webhook_endpoints::rotate_secret(
            &mut self.connect().await?,
            self.workspace,
            endpoint.id,
            &encrypt(&secret, webhook_endpoints::secret_context(endpoint.id))?,
            &encrypt(
                &endpoint.secret,
                webhook_endpoints::previous_secret_context(endpoint.id),
            )?,
            chrono::Utc::now() + chrono::Duration::hours(24),
        )
        .await?;
        Ok(Endpoint {
            id: endpoint.id,
            secret,
        })
    }

    pub fn start(&self) -> anyhow::Result<Running> {
        self.start_with(self.config.clone())
    }

    pub fn start_with(&self, config: Config) -> anyhow::Result<Running> {
        let app = webhooks::Application::build(config)?;
        let admin_port = app.admin_port();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Ok(Running {
            stop,
            task,
            admin_port,
        })
    }

    /// Puts a recorded event of `enrollment` on `webhook-events`, keyed by it, as the
    /// scheduler's outbox does.
    pub async fn record(
        &self,
        workspace: Uuid,
        enrollment: Uuid,
        event_type: &str,
        more: Value,
    ) -> anyhow::Result<Envelope<WebhookEvent>> {
        let mut data = json!({
            "workspace_id": workspace,
            "enrollment_id": enrollment,
            "sequence_id": Uuid::nil(),
            "step_order": 1,
            "message_id": Uuid::now_v7(),
            "contact": {"id": Uuid::nil(), "email": "ada@example.com"},
        });
        if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
            data.extend(more);
        }
        let envelope = Envelope::new(
            workspace,
            WebhookEvent {
                event_type: event_type.to_owned(),
                data,
            },
        );
        self.producer
            .send(
                &self.topics.webhook_events,
                &enrollment.to_string(),
                &envelope,
            )
            .await?;
        Ok(envelope)
    }

    pub async fn mailbox_event(
        &self,
        event: MailboxEvent,
    ) -> anyhow::Result<Envelope<MailboxEvent>> {
        let envelope = Envelope::new(self.workspace, event);
        self.producer
            .send(
                &self.topics.mailbox_events,
                &envelope.body.mailbox_id().to_string(),
                &envelope,
            )
            .await?;
        Ok(envelope)
    }

    /// Waits (up to `patience`) until exactly `n` deliveries are recorded as delivered.
    pub async fn until_delivered(&self, n: i64, patience: Duration) -> anyhow::Result<()> {
        poll_until(patience, &format!("{n} deliveries delivered"), || async {
            self.count("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'")
                .await
                .ok()
                .filter(|count| *count == n)
                .map(|_| ())
        })
        .await
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.count(sql).await
    }
}

async fn add_workspace(conn: &mut AsyncPgConnection, id: Uuid) -> anyhow::Result<()> {
    workspaces::insert(
        conn,
        &NewWorkspace {
            id,
            name: "Acme",
            tracking_base_url: None,
        },
    )
    .await?;
    Ok(())
}

/// Waits until `received` yields at least `n` requests.
pub async fn until_received<F>(n: usize, what: &str, received: F) -> anyhow::Result<Vec<Received>>
where
    F: Fn() -> Vec<Received>,
{
    poll_until(Duration::from_secs(30), what, || {
        let got = received();
        async move { (got.len() >= n).then_some(got) }
    })
    .await
}

/// The `data.enrollment_id` and `type` of a received request.
pub fn enrollment_and_type(request: &Received) -> (String, String) {
    let body = request.json();
    (
        body["data"]["enrollment_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["type"].as_str().unwrap_or_default().to_owned(),
    )
}
