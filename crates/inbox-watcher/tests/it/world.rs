//! A workspace whose mailboxes are GreenMail accounts (SMTP to deliver answers to them, IMAP
//! for the watcher to read), messages "sent" from them, and inbox watchers running
//! in-process or as the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use domain::config::Config;
use domain::db::mailboxes::imap_password_context;
use domain::events::EmailEvent;
use domain::kafka::{Envelope, TopicNames, ensure_topics};
use domain::testing::{TestDatabase, poll_until, quick_inbox_watcher, test_config_for};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(60);

pub struct InboxWorld {
    pub db: TestDatabase,
    pub config: Config,
    pub workspace_id: Uuid,
    sequence_id: Uuid,
    step_id: Uuid,
}

/// A mailbox of ours: a GreenMail account.
#[derive(Debug, Clone)]
pub struct Seller {
    pub mailbox_id: Uuid,
    pub address: String,
}

/// A message that mailbox sent a contact an hour ago.
#[derive(Debug, Clone)]
pub struct Sent {
    pub enrollment_id: Uuid,
    pub message_id: Uuid,
    pub message_id_header: String,
    pub contact: String,
    pub subject: String,
}

/// The state of a mailbox's watch row, with INBOX's position (0 before it was read).
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct WatchRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub owner: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_uid: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub consecutive_failures: i32,
}

/// One folder's read position.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct PositionRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub folder: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub uid_validity: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_uid: i64,
}

impl InboxWorld {
    /// Leases of 3 s renewed every second and a poll every 200 ms, so takeovers and retries
    /// happen within a test's patience.
    pub async fn new(use_idle: bool) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        quick_inbox_watcher(&mut config);
        config.inbox_watcher.use_idle = use_idle;
        // `events` reads what the watcher wrote from the outbox, so its relay keeps the rows.
        config.outbox.retention_seconds = 3600;
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;
        let (workspace_id, sequence_id, step_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for sql in [
            format!("INSERT INTO workspaces (id, name) VALUES ('{workspace_id}', 'test')"),
            format!(
                "INSERT INTO sequences (id, workspace_id, name, status) \
                 VALUES ('{sequence_id}', '{workspace_id}', 'test', 'active')"
            ),
            format!(
                "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content) \
                 VALUES ('{step_id}', '{sequence_id}', 1, 1, 'Quick question', 'Hello')"
            ),
        ] {
            db.exec(&sql).await?;
        }
        Ok(Self {
            db,
            config,
            workspace_id,
            sequence_id,
            step_id,
        })
    }

    /// A mailbox whose IMAP account is a fresh GreenMail user.
    pub async fn seller(&self) -> anyhow::Result<Seller> {
        self.seller_at(greenmail_imap()?).await
    }

    /// A mailbox whose IMAP server is `imap` (plain IMAP, any password: GreenMail runs with
    /// authentication disabled).
    pub async fn seller_at(&self, imap: SocketAddr) -> anyhow::Result<Seller> {
        let mailbox_id = Uuid::now_v7();
        let address = format!("seller-{}@greenmail.test", mailbox_id.simple());
        let cipher = self.config.security.cipher()?;
        let password = cipher.encrypt(
            &SecretString::from("imap-secret-pw"),
            &imap_password_context(mailbox_id),
        )?;
        let hex: String = password.iter().map(|b| format!("{b:02x}")).collect();
        self.db
            .exec(&format!(
                "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, \
                                        imap_host, imap_port, imap_security, imap_username, \
                                        imap_password_encrypted) \
                 VALUES ('{mailbox_id}', '{}', '{address}', 'smtp.test', 25, '{}', {}, 'none', \
                         '{address}', decode('{hex}', 'hex'))",
                self.workspace_id,
                imap.ip(),
                imap.port()
            ))
            .await?;
        Ok(Seller {
            mailbox_id,
            address,
        })
    }

    /// A contact enrolled and sent `subject` by `seller` an hour ago.
    pub async fn sent(&self, seller: &Seller, subject: &str) -> anyhow::Result<Sent> {
        let (contact_id, enrollment_id, message_id) =
            (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let contact = format!("prospect-{}@greenmail.test", contact_id.simple());
        let message_id_header = format!("<{message_id}@greenmail.test>");
        let sent_at = Utc::now() - TimeDelta::hours(1);
        let next = Utc::now() + TimeDelta::days(3);
        let ws = self.workspace_id;
        for sql in [
            format!(
                "INSERT INTO contacts (id, workspace_id, email) \
                 VALUES ('{contact_id}', '{ws}', '{contact}')"
            ),
            format!(
                "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, mailbox_id, \
                                          current_step, next_send_at) \
                 VALUES ('{enrollment_id}', '{ws}', '{}', '{contact_id}', '{}', 2, '{next}')",
                self.sequence_id, seller.mailbox_id
            ),
            format!(
                "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                                       contact_id, mailbox_id, status, scheduled_at, sent_at, \
                                       message_id_header, subject) \
                 VALUES ('{message_id}', '{ws}', '{enrollment_id}', '{}', 1, '{contact_id}', \
                         '{}', 'sent', '{sent_at}', '{sent_at}', '{message_id_header}', \
                         '{subject}')",
                self.step_id, seller.mailbox_id
            ),
            // As the worker's outcome statement does.
            format!(
                "INSERT INTO mailbox_first_sends (mailbox_id, first_sent_at) \
                 VALUES ('{}', '{sent_at}') \
                 ON CONFLICT (mailbox_id) DO UPDATE SET first_sent_at = \
                    least(mailbox_first_sends.first_sent_at, EXCLUDED.first_sent_at)",
                seller.mailbox_id
            ),
        ] {
            self.db.exec(&sql).await?;
        }
        Ok(Sent {
            enrollment_id,
            message_id,
            message_id_header,
            contact,
            subject: subject.to_owned(),
        })
    }

    /// Starts a watcher in this process.
    pub async fn watcher(&self) -> anyhow::Result<Watcher> {
        Watcher::start(self.config.clone()).await
    }

    /// The events recorded so far (outbox rows of `email-events`), oldest first.
    pub async fn events(&self) -> anyhow::Result<Vec<Envelope<EmailEvent>>> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use domain::db::schema::outbox::dsl;
        let topic = TopicNames::from_config(&self.config.kafka).email_events;
        let mut conn = self.db.connect().await?;
        let payloads: Vec<serde_json::Value> = dsl::outbox
            .filter(dsl::topic.eq(topic))
            .order(dsl::id)
            .select(dsl::payload)
            .load(&mut conn)
            .await?;
        payloads
            .into_iter()
            .map(|p| Ok(serde_json::from_value(p)?))
            .collect()
    }

    /// Waits until at least `n` events were recorded, and returns them all.
    pub async fn wait_events(&self, n: usize) -> anyhow::Result<Vec<Envelope<EmailEvent>>> {
        poll_until(WAIT, &format!("{n} inbox events"), || async {
            self.events().await.ok().filter(|all| all.len() >= n)
        })
        .await
    }

    pub async fn watch_row(&self, mailbox_id: Uuid) -> anyhow::Result<Option<WatchRow>> {
        use diesel::OptionalExtension as _;
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await?;
        Ok(diesel::sql_query(
            "SELECT w.owner, w.status, COALESCE(p.last_uid, 0) AS last_uid, w.last_error, \
                    w.consecutive_failures \
               FROM inbox_watches w \
               LEFT JOIN inbox_folder_positions p \
                 ON p.mailbox_id = w.mailbox_id AND p.folder = 'INBOX' \
              WHERE w.mailbox_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(mailbox_id)
        .get_result::<WatchRow>(&mut conn)
        .await
        .optional()?)
    }

    /// The mailbox's read positions, by folder name.
    pub async fn positions(&self, mailbox_id: Uuid) -> anyhow::Result<Vec<PositionRow>> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await?;
        Ok(diesel::sql_query(
            "SELECT folder, uid_validity, last_uid FROM inbox_folder_positions \
              WHERE mailbox_id = $1 ORDER BY folder",
        )
        .bind::<diesel::sql_types::Uuid, _>(mailbox_id)
        .load(&mut conn)
        .await?)
    }

    /// Waits until the mailbox's read positions satisfy `check`.
    pub async fn wait_positions(
        &self,
        mailbox_id: Uuid,
        what: &str,
        check: impl Fn(&[PositionRow]) -> bool,
    ) -> anyhow::Result<Vec<PositionRow>> {
        poll_until(WAIT, what, || async {
            self.positions(mailbox_id)
                .await
                .ok()
                .filter(|rows| check(rows))
        })
        .await
    }

    /// Waits until `watcher` holds the mailbox and waits for its mail.
    pub async fn wait_watched_by(
        &self,
        mailbox_id: Uuid,
        watcher: &Watcher,
    ) -> anyhow::Result<WatchRow> {
        self.wait_watch(mailbox_id, "the mailbox watched by this replica", |row| {
            watching(row) && row.owner.as_deref() == Some(watcher.owner.as_str())
        })
        .await
    }

    /// Waits until the mailbox's watch row satisfies `check`.
    pub async fn wait_watch(
        &self,
        mailbox_id: Uuid,
        what: &str,
        check: impl Fn(&WatchRow) -> bool,
    ) -> anyhow::Result<WatchRow> {
        poll_until(WAIT, what, || async {
            self.watch_row(mailbox_id)
                .await
                .ok()
                .flatten()
                .filter(|row| check(row))
        })
        .await
    }
}

/// Whether the watch of `mailbox_id` is up: connected and waiting for mail.
pub fn watching(row: &WatchRow) -> bool {
    row.status == "idle" || row.status == "polling"
}

/// An inbox watcher running in this process.
pub struct Watcher {
    pub owner: String,
    pub admin_url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Watcher {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let app = inbox_watcher::Application::build_with(
            config,
            std::net::TcpListener::bind("127.0.0.1:0")?,
        )?;
        let owner = app.owner().to_owned();
        let admin_url = format!("http://127.0.0.1:{}", app.admin_port());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Ok(Self {
            owner,
            admin_url,
            shutdown,
            task,
        })
    }

    /// Graceful stop: the watches end and the leases are given up.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

pub use domain::testing::greenmail::{deliver, file_into, imap_addr as greenmail_imap};

/// The prospect's answer to `sent`, threaded by In-Reply-To and References.
pub fn reply(sent: &Sent, seller: &Seller, body: &str) -> String {
    format!(
        "From: Prospect <{contact}>\r\nTo: <{seller}>\r\nSubject: Re: {subject}\r\n\
         Message-ID: <reply-{id}@prospect.test>\r\nIn-Reply-To: {header}\r\n\
         References: {header}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\n> Hello\r\n",
        contact = sent.contact,
        seller = seller.address,
        subject = sent.subject,
        id = Uuid::new_v4().simple(),
        header = sent.message_id_header,
        date = Utc::now().to_rfc2822(),
    )
}

/// The UIDs of `address`'s GreenMail inbox that are marked read (\\Seen).
pub async fn seen_uids(address: &str) -> anyhow::Result<Vec<u32>> {
    seen_uids_in(address, "INBOX").await
}

/// The UIDs of `folder` in `address`'s GreenMail account that are marked read (\\Seen).
pub async fn seen_uids_in(address: &str, folder: &str) -> anyhow::Result<Vec<u32>> {
    use futures::TryStreamExt as _;
    let mut session = domain::testing::greenmail::imap_session(address).await?;
    session.examine(folder).await?;
    let fetched: Vec<_> = session
        .uid_fetch("1:*", "(UID FLAGS)")
        .await?
        .try_collect()
        .await?;
    let seen = fetched
        .iter()
        .filter(|f| {
            f.flags()
                .any(|flag| matches!(flag, async_imap::types::Flag::Seen))
        })
        .filter_map(|f| f.uid)
        .collect();
    let _ = session.logout().await;
    Ok(seen)
}

/// A raw email from `from` to `to` with the given extra headers and subject.
pub fn email(from: &str, to: &str, subject: &str, headers: &str, body: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@sender.test>\r\n{headers}Date: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        id = Uuid::new_v4().simple(),
        date = Utc::now().to_rfc2822(),
    )
}

/// A Postfix delivery status notification returning `sent` for its recipient, with
/// `status` (5.x.x permanent, 4.x.x transient).
pub fn delivery_report(sent: &Sent, seller: &Seller, status: &str) -> String {
    let action = if status.starts_with('5') {
        "failed"
    } else {
        "delayed"
    };
    let boundary = format!("B{}", Uuid::new_v4().simple());
    format!(
        "From: MAILER-DAEMON@mx.prospect.test (Mail Delivery System)\r\n\
         To: <{seller}>\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn-{id}@mx.prospect.test>\r\nDate: {date}\r\nAuto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
         --{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.prospect.test\r\n\r\n\
         Final-Recipient: rfc822; {contact}\r\nOriginal-Recipient: rfc822;{contact}\r\n\
         Action: {action}\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; {code} {status} <{contact}>: Recipient address rejected\r\n\r\n\
         --{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         From: <{seller}>\r\nTo: <{contact}>\r\nSubject: {subject}\r\n\
         Message-ID: {header}\r\n\r\n--{boundary}--\r\n",
        seller = seller.address,
        contact = sent.contact,
        subject = sent.subject,
        header = sent.message_id_header,
        code = if status.starts_with('5') {
            "550"
        } else {
            "450"
        },
        id = Uuid::new_v4().simple(),
        date = Utc::now().to_rfc2822(),
    )
}
