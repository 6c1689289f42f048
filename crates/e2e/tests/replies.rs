//! What comes back to a sequence's emails, end to end: the real scheduler dispatches step 1,
//! the real sender worker sends it through GreenMail to the prospect, the prospect's answer
//! (or their server's automatic reply, or a bounce report) lands in the seller's GreenMail
//! inbox (or its Junk folder), the real inbox watcher reads it over IMAP, and the scheduler acts on its event
//! (through Kafka) before step 2 is due.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::clock::{Clock, SystemClock};
use domain::config::Config;
use domain::db::mailboxes::imap_password_context;
use domain::kafka::{TopicNames, ensure_topics};
use domain::testing::greenmail::{
    create_folder, deliver, file_into, imap_addr, received, smtp_addr,
};
use domain::testing::{TestDatabase, poll_until, quick_inbox_watcher, test_config_for};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Patience for anything that crosses services (Kafka, SMTP, IMAP).
const WAIT: Duration = Duration::from_secs(90);

const STEP_ONE_SUBJECT: &str = "Quick question";

/// A workspace whose mailbox is a GreenMail account (SMTP to send, IMAP to read answers), a
/// two-step sequence sending at any hour of any day, one prospect enrolled and due now, and
/// the scheduler, sender worker and inbox watcher running in this process.
struct Flow {
    db: TestDatabase,
    enrollment_id: Uuid,
    contact_id: Uuid,
    prospect: String,
    seller: String,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Step 1 as the sender worker sent it.
struct SentStep {
    message_id: Uuid,
    /// With its angle brackets, as in the email's Message-ID header.
    message_id_header: String,
    sent_at: DateTime<Utc>,
}

#[derive(Debug, diesel::QueryableByName)]
struct EnrollmentRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    current_step: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    next_send_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    stop_reason: Option<String>,
}

#[derive(Debug, diesel::QueryableByName)]
struct MessageRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    message_id_header: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    sent_at: Option<DateTime<Utc>>,
}

impl Flow {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let config = fast_config(&db)?;
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;

        let (workspace, sequence, mailbox, contact, enrollment) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let seller = format!("seller-{}@greenmail.test", mailbox.simple());
        let prospect = format!("prospect-{}@greenmail.test", contact.simple());
        let smtp = smtp_addr()?;
        let imap = imap_addr()?;
        // GreenMail runs with authentication disabled: any password logs in.
        let password = config.security.cipher()?.encrypt(
            &SecretString::from("imap-secret-pw"),
            &imap_password_context(mailbox),
        )?;
        let password_hex: String = password.iter().map(|b| format!("{b:02x}")).collect();
        for sql in [
            format!("INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'test')"),
            format!(
                "INSERT INTO sequences (id, workspace_id, name, status, stop_on_reply, \
                                        send_days, window_start, window_end, timezone, \
                                        use_contact_timezone) \
                 VALUES ('{sequence}', '{workspace}', 'test', 'active', true, \
                         '{{1,2,3,4,5,6,7}}', '00:00', '23:59:59', 'UTC', false)"
            ),
            format!(
                "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, \
                                    wait_days, thread_with_previous) \
                 VALUES ('{}', '{sequence}', 1, 1, '{STEP_ONE_SUBJECT}', \
                         'Hi {{{{first_name}}}}, may I ask you something?', 0, false), \
                        ('{}', '{sequence}', 2, 2, 'Following up', \
                         'Hi {{{{first_name}}}}, just following up.', 1, true)",
                Uuid::now_v7(),
                Uuid::now_v7()
            ),
            format!(
                "INSERT INTO mailboxes (id, workspace_id, email, display_name, smtp_host, \
                                        smtp_port, smtp_security, daily_limit, \
                                        min_interval_seconds, max_jitter_seconds, imap_host, \
                                        imap_port, imap_security, imap_username, \
                                        imap_password_encrypted) \
                 VALUES ('{mailbox}', '{workspace}', '{seller}', 'Ana from Acme', '{}', {}, \
                         'none', 10000, 0, 0, '{}', {}, 'none', '{seller}', \
                         decode('{password_hex}', 'hex'))",
                smtp.ip(),
                smtp.port(),
                imap.ip(),
                imap.port()
            ),
            format!(
                "INSERT INTO sequence_mailboxes (sequence_id, mailbox_id) \
                 VALUES ('{sequence}', '{mailbox}')"
            ),
            format!(
                "INSERT INTO contacts (id, workspace_id, email, first_name) \
                 VALUES ('{contact}', '{workspace}', '{prospect}', 'Pat')"
            ),
            format!(
                "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, \
                                          current_step, next_send_at) \
                 VALUES ('{enrollment}', '{workspace}', '{sequence}', '{contact}', 1, now())"
            ),
        ] {
            db.exec(&sql).await?;
        }

        // Like most real accounts, the seller's has a Junk folder (found by its name: GreenMail
        // has no SPECIAL-USE), which the watcher reads too.
        create_folder(&seller, "Junk").await?;

        let shutdown = CancellationToken::new();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let watcher = inbox_watcher::Application::build_with(
            config.clone(),
            TcpListener::bind("127.0.0.1:0")?,
        )?;
        let sender = sender_worker::Application::build_with(
            config.clone(),
            TcpListener::bind("127.0.0.1:0")?,
            Arc::clone(&clock),
        )?;
        let scheduler =
            scheduler::Application::build_with(config, TcpListener::bind("127.0.0.1:0")?, clock)?;
        let services = vec![
            (
                "inbox watcher",
                tokio::spawn(watcher.run_until_stopped(shutdown.clone())),
            ),
            (
                "sender worker",
                tokio::spawn(sender.run_until_stopped(shutdown.clone())),
            ),
            (
                "scheduler",
                tokio::spawn(scheduler.run_until_stopped(shutdown.clone())),
            ),
        ];
        Ok(Self {
            db,
            enrollment_id: enrollment,
            contact_id: contact,
            prospect,
            seller,
            shutdown,
            services,
        })
    }

    /// Stops every service and reports how each one ended.
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for (name, task) in self.services {
            task.await?
                .map_err(|e| e.context(format!("the {name} ended with an error")))?;
        }
        Ok(())
    }

    async fn enrollment(&self) -> anyhow::Result<EnrollmentRow> {
        use diesel_async::RunQueryDsl as _;
        Ok(diesel::sql_query(
            "SELECT status, current_step, next_send_at, stop_reason \
               FROM enrollments WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(self.enrollment_id)
        .get_result(&mut self.db.connect().await?)
        .await?)
    }

    async fn message_of_step(&self, step_order: i32) -> anyhow::Result<Option<MessageRow>> {
        use diesel::OptionalExtension as _;
        use diesel_async::RunQueryDsl as _;
        Ok(diesel::sql_query(
            "SELECT id, status, message_id_header, sent_at FROM messages \
              WHERE enrollment_id = $1 AND step_order = $2",
        )
        .bind::<diesel::sql_types::Uuid, _>(self.enrollment_id)
        .bind::<diesel::sql_types::Integer, _>(step_order)
        .get_result(&mut self.db.connect().await?)
        .await
        .optional()?)
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.count(sql).await
    }

    /// Waits until step 1 is sent, in the prospect's inbox, and the scheduler has moved the
    /// enrollment on to step 2 (so what comes back is applied after the send).
    async fn step_one_sent(&self) -> anyhow::Result<SentStep> {
        let sent = poll_until(WAIT, "step 1 sent", || async {
            let row = self.message_of_step(1).await.ok().flatten()?;
            if row.status != "sent" {
                return None;
            }
            Some(SentStep {
                message_id: row.id,
                message_id_header: row.message_id_header?,
                sent_at: row.sent_at?,
            })
        })
        .await?;
        let received = wait_received(&self.prospect, 1).await?;
        assert_eq!(received.len(), 1);
        assert!(
            received[0].contains(&sent.message_id_header),
            "the prospect got step 1 as recorded: {}",
            received[0]
        );
        poll_until(WAIT, "the enrollment at step 2", || async {
            let row = self.enrollment().await.ok()?;
            (row.current_step == 2).then_some(())
        })
        .await?;
        Ok(sent)
    }

    /// Waits until the scheduler recorded an event of `event_type` for the enrollment.
    async fn wait_event(&self, event_type: &str) -> anyhow::Result<()> {
        let query = self.events_query(event_type);
        poll_until(WAIT, &format!("a {event_type} event"), || async {
            matches!(self.count(&query).await, Ok(n) if n > 0).then_some(())
        })
        .await
    }

    fn events_query(&self, event_type: &str) -> String {
        format!(
            "SELECT count(*) AS n FROM events \
              WHERE enrollment_id = '{}' AND event_type = '{event_type}'",
            self.enrollment_id
        )
    }

    /// Waits until the enrollment has `status`.
    async fn wait_status(&self, status: &str) -> anyhow::Result<EnrollmentRow> {
        poll_until(WAIT, &format!("the enrollment {status}"), || async {
            self.enrollment()
                .await
                .ok()
                .filter(|row| row.status == status)
        })
        .await
    }
}

/// The test config with short pauses everywhere, so a test takes seconds.
fn fast_config(db: &TestDatabase) -> anyhow::Result<Config> {
    let mut config = test_config_for(db)?;
    config.scheduler.poll_interval_ms = 100;
    config.outbox.poll_interval_ms = 50;
    config.tracker.public_url = "https://track.test".to_owned();
    config.sender_worker.connect_timeout_ms = 10_000;
    config.sender_worker.command_timeout_ms = 10_000;
    config.sender_worker.data_timeout_ms = 10_000;
    quick_inbox_watcher(&mut config);
    Ok(config)
}

/// Waits until GreenMail holds at least `n` emails for `address`, and returns them all.
async fn wait_received(address: &str, n: usize) -> anyhow::Result<Vec<String>> {
    poll_until(WAIT, &format!("{n} emails for {address}"), || async {
        received(address).await.ok().filter(|all| all.len() >= n)
    })
    .await
}

fn rfc2822_now() -> String {
    Utc::now().to_rfc2822()
}

/// The prospect's own answer to step 1, threaded by In-Reply-To and References.
fn personal_reply(flow: &Flow, step: &SentStep) -> String {
    format!(
        "From: Pat Prospect <{prospect}>\r\nTo: <{seller}>\r\nSubject: Re: {STEP_ONE_SUBJECT}\r\n\
         Message-ID: <reply-{id}@prospect.test>\r\nIn-Reply-To: {header}\r\n\
         References: {header}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Sure, call me on Tuesday.\r\n\r\n> Hi Pat, may I ask you something?\r\n",
        prospect = flow.prospect,
        seller = flow.seller,
        id = Uuid::new_v4().simple(),
        header = step.message_id_header,
        date = rfc2822_now(),
    )
}

/// An automatic answer as Outlook/Exchange sends it while the prospect is away.
fn out_of_office(flow: &Flow, step: &SentStep) -> String {
    format!(
        "From: Pat Prospect <{prospect}>\r\nTo: <{seller}>\r\n\
         Subject: Automatic reply: {STEP_ONE_SUBJECT}\r\n\
         Message-ID: <ooo-{id}@prospect.test>\r\nIn-Reply-To: {header}\r\n\
         References: {header}\r\nDate: {date}\r\nAuto-Submitted: auto-replied\r\n\
         X-Auto-Response-Suppress: All\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         I am out of the office until Monday with limited access to email.\r\n",
        prospect = flow.prospect,
        seller = flow.seller,
        id = Uuid::new_v4().simple(),
        header = step.message_id_header,
        date = rfc2822_now(),
    )
}

/// A Postfix delivery status notification (RFC 3464): the prospect's address does not exist.
fn bounce_report(flow: &Flow, step: &SentStep) -> String {
    let boundary = format!("B{}", Uuid::new_v4().simple());
    format!(
        "From: MAILER-DAEMON@mx.prospect.test (Mail Delivery System)\r\n\
         To: <{seller}>\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn-{id}@mx.prospect.test>\r\nDate: {date}\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\r\n\
         This is a MIME-encapsulated message.\r\n\r\n\
         --{boundary}\r\nContent-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is the mail system at host mx.prospect.test.\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\r\n\
         <{prospect}>: host mx.prospect.test said: 550 5.1.1 user unknown\r\n\r\n\
         --{boundary}\r\nContent-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.prospect.test\r\n\
         Arrival-Date: {date}\r\n\r\n\
         Final-Recipient: rfc822; {prospect}\r\n\
         Original-Recipient: rfc822;{prospect}\r\n\
         Action: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; mx.prospect.test\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n\
         --{boundary}\r\nContent-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\r\n\
         From: Ana from Acme <{seller}>\r\nTo: <{prospect}>\r\n\
         Subject: {STEP_ONE_SUBJECT}\r\nMessage-ID: {header}\r\nDate: {date}\r\n\r\n\
         --{boundary}--\r\n",
        seller = flow.seller,
        prospect = flow.prospect,
        header = step.message_id_header,
        id = Uuid::new_v4().simple(),
        date = rfc2822_now(),
    )
}

#[tokio::test]
async fn a_reply_to_step_one_stops_the_sequence() -> anyhow::Result<()> {
    let flow = Flow::start().await?;
    let step = flow.step_one_sent().await?;

    deliver(&flow.prospect, &flow.seller, &personal_reply(&flow, &step)).await?;
    let row = flow.wait_status("replied").await?;
    assert_eq!(row.stop_reason.as_deref(), Some("replied"));
    assert_eq!(row.next_send_at, None, "nothing more is due");
    assert!(
        flow.message_of_step(2).await?.is_none(),
        "step 2 was never queued"
    );
    assert_eq!(flow.count(&flow.events_query("replied")).await?, 1);
    assert_eq!(
        flow.count(&format!(
            "SELECT count(*) AS n FROM events \
              WHERE enrollment_id = '{}' AND message_id = '{}' AND event_type = 'replied' \
                AND payload->'inbound'->>'from' = '{}' \
                AND payload->'inbound'->>'subject' = 'Re: {STEP_ONE_SUBJECT}'",
            flow.enrollment_id, step.message_id, flow.prospect
        ))
        .await?,
        1,
        "the event names step 1 and who answered"
    );
    assert_eq!(flow.count(&flow.events_query("auto_replied")).await?, 0);
    assert_eq!(
        received(&flow.prospect).await?.len(),
        1,
        "the prospect got step 1 only"
    );
    flow.stop().await
}

#[tokio::test]
async fn an_out_of_office_answer_lets_the_sequence_go_on() -> anyhow::Result<()> {
    let flow = Flow::start().await?;
    let step = flow.step_one_sent().await?;

    deliver(&flow.prospect, &flow.seller, &out_of_office(&flow, &step)).await?;
    flow.wait_event("auto_replied").await?;
    assert_eq!(flow.count(&flow.events_query("auto_replied")).await?, 1);
    assert_eq!(
        flow.count(&flow.events_query("replied")).await?,
        0,
        "an automatic answer is not a reply"
    );
    let row = flow.enrollment().await?;
    assert_eq!(row.status, "active");
    assert_eq!(row.current_step, 2);
    assert_eq!(row.stop_reason, None);
    let due = row
        .next_send_at
        .ok_or_else(|| anyhow::anyhow!("step 2 has no send time"))?;
    assert!(
        due >= step.sent_at + TimeDelta::days(1) - TimeDelta::seconds(1),
        "step 2 waits a day after step 1 ({:?}): {due}",
        step.sent_at
    );
    assert!(flow.message_of_step(2).await?.is_none());

    // Step 2 falls due now: it goes out, in step 1's thread.
    flow.db
        .exec(&format!(
            "UPDATE enrollments SET next_send_at = now() WHERE id = '{}'",
            flow.enrollment_id
        ))
        .await?;
    let received = wait_received(&flow.prospect, 2).await?;
    assert_eq!(received.len(), 2);
    let sent_two = poll_until(WAIT, "step 2 recorded as sent", || async {
        let row = flow.message_of_step(2).await.ok().flatten()?;
        (row.status == "sent").then_some(row)
    })
    .await?;
    let header = sent_two
        .message_id_header
        .ok_or_else(|| anyhow::anyhow!("step 2 has no Message-ID"))?;
    let second = received
        .iter()
        .find(|raw| raw.contains(&header))
        .ok_or_else(|| anyhow::anyhow!("step 2 ({header}) is not among {received:?}"))?;
    assert!(
        second.contains(&step.message_id_header),
        "step 2 answers step 1's thread: {second}"
    );
    let row = flow.wait_status("completed").await?;
    assert_eq!(row.next_send_at, None);
    flow.stop().await
}

#[tokio::test]
async fn a_bounce_report_suppresses_the_address() -> anyhow::Result<()> {
    let flow = Flow::start().await?;
    let step = flow.step_one_sent().await?;

    deliver(
        "mailer-daemon@mx.prospect.test",
        &flow.seller,
        &bounce_report(&flow, &step),
    )
    .await?;
    let row = flow.wait_status("bounced").await?;
    assert_eq!(row.stop_reason.as_deref(), Some("hard_bounce"));
    assert_eq!(row.next_send_at, None);
    assert_eq!(
        flow.count(&format!(
            "SELECT count(*) AS n FROM suppressions WHERE email = '{}' AND reason = 'bounced'",
            flow.prospect
        ))
        .await?,
        1
    );
    assert_eq!(
        flow.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE id = '{}' AND status = 'bounced'",
            flow.contact_id
        ))
        .await?,
        1
    );
    assert!(
        flow.message_of_step(2).await?.is_none(),
        "step 2 was never queued"
    );
    let first = flow
        .message_of_step(1)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no message row for step 1"))?;
    assert_eq!(first.status, "bounced");
    assert_eq!(flow.count(&flow.events_query("bounced")).await?, 1);
    assert_eq!(
        flow.count(&flow.events_query("auto_replied")).await?,
        0,
        "a bounce report is not an automatic answer"
    );
    flow.stop().await
}

#[tokio::test]
async fn a_bounce_report_filed_into_junk_suppresses_the_address_and_counts_once()
-> anyhow::Result<()> {
    let flow = Flow::start().await?;
    let step = flow.step_one_sent().await?;

    // The seller's server took the report for spam.
    let report = bounce_report(&flow, &step);
    file_into(&flow.seller, "Junk", &report).await?;
    let row = flow.wait_status("bounced").await?;
    assert_eq!(row.stop_reason.as_deref(), Some("hard_bounce"));
    assert_eq!(
        flow.count(&format!(
            "SELECT count(*) AS n FROM suppressions WHERE email = '{}' AND reason = 'bounced'",
            flow.prospect
        ))
        .await?,
        1
    );

    // A copy of the same report in INBOX, then the prospect's reply: events of one
    // enrollment are applied in order, so once the reply is recorded the copy was too.
    deliver("mailer-daemon@mx.prospect.test", &flow.seller, &report).await?;
    deliver(&flow.prospect, &flow.seller, &personal_reply(&flow, &step)).await?;
    flow.wait_event("replied").await?;
    assert_eq!(
        flow.count(&flow.events_query("bounced")).await?,
        1,
        "the report found in Junk and in INBOX is one bounce"
    );
    assert!(flow.message_of_step(2).await?.is_none());
    flow.stop().await
}
