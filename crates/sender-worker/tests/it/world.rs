//! A workspace with one mailbox, a sequence and enrolled contacts whose messages the
//! scheduler would have queued, written straight to a test database; jobs are produced to
//! `email-jobs` as the scheduler's relay would. Also the test mail servers: GreenMail (read
//! back through its API) and Postfix's `smtp-sink` with injected failures.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::clock::SystemClock;
use domain::config::Config;
use domain::events::{EmailJob, SendJob};
use domain::kafka::producer::Delivered;
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::testing::{TestDatabase, poll_until, test_config_for};
use sender_worker::Application;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(60);

/// A step of the test sequence.
pub struct Step {
    pub subject: &'static str,
    pub content: &'static str,
    pub thread_with_previous: bool,
}

pub struct World {
    pub db: TestDatabase,
    pub config: Config,
    pub topics: TopicNames,
    pub workspace_id: Uuid,
    pub sequence_id: Uuid,
    pub steps: Vec<Uuid>,
    pub mailbox_id: Uuid,
    pub mailbox_email: String,
    producer: Producer,
}

impl World {
    /// A mailbox sending through `smtp`, and an active sequence of `steps` with open, click
    /// and unsubscribe-link tracking on.
    pub async fn new(smtp: SocketAddr, steps: &[Step]) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        // Generous for a machine busy with the whole test suite (a slow reply must not turn
        // into a retry no scheduler will requeue here), consistent with the lease rule.
        config.sender_worker.connect_timeout_ms = 10_000;
        config.sender_worker.command_timeout_ms = 10_000;
        config.sender_worker.data_timeout_ms = 10_000;
        config.sender_worker.lease_seconds = 60;
        config.sender_worker.reaper_interval_ms = 500;
        config.outbox.poll_interval_ms = 50;
        config.tracker.public_url = "https://track.test".to_owned();
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;
        let mut conn = db.connect().await?;

        let workspace_id = Uuid::now_v7();
        diesel::sql_query("INSERT INTO workspaces (id, name) VALUES ($1, 'test')")
            .bind::<SqlUuid, _>(workspace_id)
            .execute(&mut conn)
            .await?;
        let sequence_id = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO sequences (id, workspace_id, name, status, open_tracking_enabled, \
                                    click_tracking_enabled, unsubscribe_link) \
             VALUES ($1, $2, 'test', 'active', true, true, true)",
        )
        .bind::<SqlUuid, _>(sequence_id)
        .bind::<SqlUuid, _>(workspace_id)
        .execute(&mut conn)
        .await?;
        let mut step_ids = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let id = Uuid::now_v7();
            diesel::sql_query(
                "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, \
                                    thread_with_previous) VALUES ($1, $2, $3, $3, $4, $5, $6)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<SqlUuid, _>(sequence_id)
            .bind::<Integer, _>(i32::try_from(index)? + 1)
            .bind::<Text, _>(step.subject)
            .bind::<Text, _>(step.content)
            .bind::<Bool, _>(step.thread_with_previous)
            .execute(&mut conn)
            .await?;
            step_ids.push(id);
        }
        let mailbox_id = Uuid::now_v7();
        let mailbox_email = format!("sales-{}@acme.test", mailbox_id.simple());
        diesel::sql_query(
            "INSERT INTO mailboxes (id, workspace_id, email, display_name, smtp_host, smtp_port, \
                                    smtp_security, daily_limit, min_interval_seconds, \
                                    max_jitter_seconds) \
             VALUES ($1, $2, $3, 'Ana from Acme', $4, $5, 'none', 10000, 0, 0)",
        )
        .bind::<SqlUuid, _>(mailbox_id)
        .bind::<SqlUuid, _>(workspace_id)
        .bind::<Text, _>(&mailbox_email)
        .bind::<Text, _>(smtp.ip().to_string())
        .bind::<Integer, _>(i32::from(smtp.port()))
        .execute(&mut conn)
        .await?;
        Ok(Self {
            producer: Producer::new(&config.kafka)?,
            db,
            config,
            topics,
            workspace_id,
            sequence_id,
            steps: step_ids,
            mailbox_id,
            mailbox_email,
        })
    }

    pub async fn conn(&self) -> anyhow::Result<AsyncPgConnection> {
        self.db.connect().await
    }

    /// Enrolls a contact (at step 1); returns the enrollment id.
    pub async fn enroll(&self, email: &str, first_name: Option<&str>) -> anyhow::Result<Uuid> {
        let contact_id = Uuid::now_v7();
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "INSERT INTO contacts (id, workspace_id, email, first_name, company) \
             VALUES ($1, $2, $3, $4, 'Initech')",
        )
        .bind::<SqlUuid, _>(contact_id)
        .bind::<SqlUuid, _>(self.workspace_id)
        .bind::<Text, _>(email)
        .bind::<Nullable<Text>, _>(first_name)
        .execute(&mut conn)
        .await?;
        let enrollment_id = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                      mailbox_id) VALUES ($1, $2, $3, $4, 1, $5)",
        )
        .bind::<SqlUuid, _>(enrollment_id)
        .bind::<SqlUuid, _>(self.workspace_id)
        .bind::<SqlUuid, _>(self.sequence_id)
        .bind::<SqlUuid, _>(contact_id)
        .bind::<SqlUuid, _>(self.mailbox_id)
        .execute(&mut conn)
        .await?;
        Ok(enrollment_id)
    }

    /// Enrolls `n` contacts at addresses `{local}+{i}@{domain}` in one statement; returns the
    /// queued messages of their first step.
    pub async fn enroll_many(
        &self,
        n: i64,
        local: &str,
        domain: &str,
    ) -> anyhow::Result<Vec<Uuid>> {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let ids: Vec<Id> = diesel::sql_query(
            "WITH c AS ( \
                INSERT INTO contacts (id, workspace_id, email) \
                SELECT gen_random_uuid(), $1, $3 || '+' || g || '@' || $4 \
                  FROM generate_series(1, $2) g RETURNING id), \
             e AS ( \
                INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, \
                                         current_step, mailbox_id) \
                SELECT gen_random_uuid(), $1, $5, c.id, 1, $6 FROM c RETURNING id, contact_id), \
             m AS (SELECT gen_random_uuid() AS id, e.id AS enrollment_id, e.contact_id FROM e) \
             INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                                   contact_id, mailbox_id, status, attempts, message_id_header, \
                                   scheduled_at) \
             SELECT m.id, $1, m.enrollment_id, $7, 1, m.contact_id, $6, 'queued', 1, \
                    '<' || m.id || '@acme.test>', now() \
               FROM m \
             RETURNING id",
        )
        .bind::<SqlUuid, _>(self.workspace_id)
        .bind::<BigInt, _>(n)
        .bind::<Text, _>(local)
        .bind::<Text, _>(domain)
        .bind::<SqlUuid, _>(self.sequence_id)
        .bind::<SqlUuid, _>(self.mailbox_id)
        .bind::<SqlUuid, _>(self.steps[0])
        .load(&mut self.conn().await?)
        .await?;
        Ok(ids.into_iter().map(|i| i.id).collect())
    }

    /// Queues the message of `step` (1-based) for `enrollment_id`, as a dispatch would.
    pub async fn queue(&self, enrollment_id: Uuid, step: usize) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                                   contact_id, mailbox_id, status, attempts, \
                                   message_id_header, scheduled_at) \
             SELECT $1, e.workspace_id, e.id, $3, $4, e.contact_id, $5, 'queued', 1, $6, now() \
               FROM enrollments e WHERE e.id = $2",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(enrollment_id)
        .bind::<SqlUuid, _>(self.steps[step - 1])
        .bind::<Integer, _>(i32::try_from(step)?)
        .bind::<SqlUuid, _>(self.mailbox_id)
        .bind::<Text, _>(format!("<{id}@acme.test>"))
        .execute(&mut self.conn().await?)
        .await?;
        Ok(id)
    }

    /// Produces the job of `message_id` (attempt from the row) on `email-jobs`; returns
    /// where it landed.
    pub async fn publish_job(&self, message_id: Uuid) -> anyhow::Result<Delivered> {
        let row = self.message(message_id).await?;
        let job = Envelope::new(
            self.workspace_id,
            EmailJob::Send(SendJob {
                message_id,
                enrollment_id: row.enrollment_id,
                mailbox_id: row.mailbox_id,
                attempt: u32::try_from(row.attempts)?,
            }),
        );
        Ok(self
            .producer
            .send(&self.topics.email_jobs, &row.mailbox_id.to_string(), &job)
            .await?)
    }

    /// Adds `n` mailboxes like the first (same server) and spreads the queued messages of
    /// step 1 over all of them; returns the new mailboxes.
    pub async fn spread_over_mailboxes(&self, n: usize) -> anyhow::Result<Vec<Uuid>> {
        let mut added = Vec::new();
        for _ in 0..n {
            let id = Uuid::now_v7();
            diesel::sql_query(
                "INSERT INTO mailboxes (id, workspace_id, email, display_name, smtp_host, \
                                        smtp_port, smtp_security, daily_limit, \
                                        min_interval_seconds, max_jitter_seconds) \
                 SELECT $1, workspace_id, 'sales-' || $1 || '@acme.test', display_name, \
                        smtp_host, smtp_port, smtp_security, daily_limit, 0, 0 \
                   FROM mailboxes WHERE id = $2",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<SqlUuid, _>(self.mailbox_id)
            .execute(&mut self.conn().await?)
            .await?;
            added.push(id);
        }
        let mut all = vec![self.mailbox_id];
        all.extend(&added);
        diesel::sql_query(
            "UPDATE messages m SET mailbox_id = ($1::uuid[])[1 + n.i % cardinality($1::uuid[])] \
               FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM messages) n \
              WHERE n.id = m.id",
        )
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(all)
        .execute(&mut self.conn().await?)
        .await?;
        Ok(added)
    }

    pub async fn message(&self, id: Uuid) -> anyhow::Result<MessageRow> {
        Ok(diesel::sql_query(
            "SELECT enrollment_id, mailbox_id, status, attempts, smtp_response, last_error, \
                    subject, worker_id, message_id_header FROM messages WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .get_result(&mut self.conn().await?)
        .await?)
    }

    /// Makes the mailbox log in to its SMTP server as `username` with `password` (stored
    /// encrypted, as the API stores it).
    pub async fn set_smtp_login(&self, username: &str, password: &str) -> anyhow::Result<()> {
        let cipher = self.config.security.cipher()?;
        let encrypted = cipher.encrypt(
            &secrecy::SecretString::from(password.to_owned()),
            &domain::db::mailboxes::smtp_password_context(self.mailbox_id),
        )?;
        diesel::sql_query(
            "UPDATE mailboxes SET smtp_username = $2, smtp_password_encrypted = $3 WHERE id = $1",
        )
        .bind::<SqlUuid, _>(self.mailbox_id)
        .bind::<Text, _>(username)
        .bind::<diesel::sql_types::Bytea, _>(encrypted)
        .execute(&mut self.conn().await?)
        .await?;
        Ok(())
    }

    /// The mailbox's `status` and `status_reason`.
    pub async fn mailbox_status(&self) -> anyhow::Result<(String, Option<String>)> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = Nullable<Text>)]
            status_reason: Option<String>,
        }
        let row: Row =
            diesel::sql_query("SELECT status, status_reason FROM mailboxes WHERE id = $1")
                .bind::<SqlUuid, _>(self.mailbox_id)
                .get_result(&mut self.conn().await?)
                .await?;
        Ok((row.status, row.status_reason))
    }

    /// Waits until the message's status is one of `statuses`.
    pub async fn wait_for(&self, id: Uuid, statuses: &[&str]) -> anyhow::Result<MessageRow> {
        poll_until(
            WAIT,
            &format!("message {id} to be {statuses:?}"),
            || async {
                self.message(id)
                    .await
                    .ok()
                    .filter(|m| statuses.contains(&m.status.as_str()))
            },
        )
        .await
    }

    /// The Message-IDs of the messages in `status`.
    pub async fn headers_with_status(&self, status: &str) -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Header {
            #[diesel(sql_type = Text)]
            message_id_header: String,
        }
        let rows: Vec<Header> = diesel::sql_query(
            "SELECT message_id_header FROM messages \
              WHERE status = $1 AND message_id_header IS NOT NULL",
        )
        .bind::<Text, _>(status)
        .load(&mut self.conn().await?)
        .await?;
        Ok(rows.into_iter().map(|r| r.message_id_header).collect())
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.count(sql).await
    }

    pub async fn exec(&self, sql: &str) -> anyhow::Result<usize> {
        self.db.exec(sql).await
    }

    /// Runs a sender worker in this process.
    pub fn start_worker(&self) -> anyhow::Result<RunningWorker> {
        let app = Application::build_with(
            self.config.clone(),
            TcpListener::bind("127.0.0.1:0")?,
            Arc::new(SystemClock),
        )?;
        let admin_port = app.admin_port();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Ok(RunningWorker {
            shutdown,
            handle,
            admin_port,
        })
    }
}

pub struct RunningWorker {
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    pub admin_port: u16,
}

impl RunningWorker {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct MessageRow {
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub smtp_response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub worker_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id_header: Option<String>,
}

pub use domain::testing::greenmail::received;

/// GreenMail's SMTP address (from `cargo xtask test`).
pub fn greenmail_smtp() -> anyhow::Result<SocketAddr> {
    domain::testing::greenmail::smtp_addr()
}

/// Waits until GreenMail holds `n` emails for `address`.
pub async fn wait_received(address: &str, n: usize) -> anyhow::Result<Vec<String>> {
    poll_until(WAIT, &format!("{n} emails for {address}"), || async {
        received(address).await.ok().filter(|all| all.len() >= n)
    })
    .await
}

pub use domain::testing::SmtpSink;
