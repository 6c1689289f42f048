//! Outgoing webhooks end to end, through every service: an endpoint created through the api,
//! step 1 sent by the scheduler and sender worker through GreenMail, its tracked link
//! clicked at the tracker, the prospect's answer read by the inbox watcher, and what the
//! scheduler recorded of all that delivered by the webhooks service to a loopback receiver,
//! signed so that the Standard Webhooks reference library accepts it.

mod platform;

use std::collections::HashSet;

use diesel_async::RunQueryDsl as _;
use domain::testing::greenmail::{deliver, imap_addr, received, smtp_addr};
use domain::testing::webhook_receiver::{Received, WebhookReceiver, verify_all};
use domain::testing::{poll_until, quick_inbox_watcher, quick_webhooks};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::platform::{Platform, WAIT, any_time, id_of};

const SUBJECT: &str = "Quick question";
const DESTINATION: &str = "https://example.com/pricing";
const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/128.0";

#[derive(Debug, diesel::QueryableByName)]
struct EnrollmentRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    workspace_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    contact_id: Uuid,
}

#[derive(Debug, diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// The first request of `event_type` among `received`.
fn of_type(received: &[Received], event_type: &str) -> Option<Received> {
    received
        .iter()
        .find(|r| r.json()["type"] == event_type)
        .cloned()
}

async fn until_event(receiver: &WebhookReceiver, event_type: &str) -> anyhow::Result<Received> {
    poll_until(WAIT, &format!("a {event_type} webhook"), || async {
        of_type(&receiver.received(), event_type)
    })
    .await
}

/// The tracked link of the email's text part (the HTML part also has the hidden trap link,
/// which only scanners follow).
fn tracked_link(raw: &str, tracker_url: &str) -> anyhow::Result<String> {
    let email = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("unreadable email: {raw}"))?;
    let text = email
        .body_text(0)
        .ok_or_else(|| anyhow::anyhow!("no text part: {raw}"))?;
    let prefix = format!("{tracker_url}/c/");
    let start = text
        .find(&prefix)
        .ok_or_else(|| anyhow::anyhow!("no link to {prefix} in {text}"))?;
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')')
        .collect();
    Ok(link)
}

/// The email's Message-ID, with its angle brackets.
fn message_id_header(raw: &str) -> anyhow::Result<String> {
    let email = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("unreadable email: {raw}"))?;
    let id = email
        .message_id()
        .ok_or_else(|| anyhow::anyhow!("no Message-ID: {raw}"))?;
    Ok(format!("<{id}>"))
}

/// The prospect's own answer to step 1, threaded by In-Reply-To and References.
fn reply(prospect: &str, seller: &str, header: &str) -> String {
    format!(
        "From: Pat Prospect <{prospect}>\r\nTo: <{seller}>\r\nSubject: Re: {SUBJECT}\r\n\
         Message-ID: <reply-{id}@prospect.test>\r\nIn-Reply-To: {header}\r\n\
         References: {header}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Sure, call me on Tuesday.\r\n",
        id = Uuid::new_v4().simple(),
        date = chrono::Utc::now().to_rfc2822(),
    )
}

#[tokio::test]
async fn a_sent_clicked_and_answered_step_reaches_the_endpoint_once_signed_and_in_order()
-> anyhow::Result<()> {
    let platform = Platform::start_all(|config| {
        quick_webhooks(config);
        quick_inbox_watcher(config);
        // The test opens nothing before it clicks, so the click is a scanner's by the rule
        // "a click without an open"; no rule of time may decide before that one.
        config.tracker.min_seconds_after_send = 0;
    })
    .await?;
    let tracker_url = platform
        .tracker_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the tracker does not run"))?;
    let receiver = WebhookReceiver::start()?;

    // The endpoint, through the API: all event types (none listed), its secret shown once.
    let (status, created) = platform
        .call(
            Method::POST,
            "/webhooks",
            Some(json!({"url": receiver.url(), "description": "CRM sync"})),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let webhook_id = id_of(&created)?;
    let secret = created["secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no secret in {created}"))?
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");

    // A mailbox sending through GreenMail and read back over IMAP, a two-step sequence
    // stopping on reply with click tracking, one prospect.
    let run = Uuid::now_v7().simple();
    let seller = format!("seller-{run}@greenmail.test");
    let prospect = format!("prospect-{run}@greenmail.test");
    let (smtp, imap) = (smtp_addr()?, imap_addr()?);
    let (status, mailbox) = platform
        .call(
            Method::POST,
            "/mailboxes",
            Some(json!({
                "email": seller, "from_name": "Ana from Acme", "daily_limit": 10000,
                "min_interval_seconds": 0, "jitter_seconds": 0,
                "smtp": {"host": smtp.ip().to_string(), "port": smtp.port(), "security": "none"},
                // GreenMail runs with authentication disabled: any password logs in.
                "imap": {"host": imap.ip().to_string(), "port": imap.port(), "security": "none",
                         "username": seller, "password": "imap-secret-pw"},
            })),
        )
        .await?;
    assert_eq!(status, 201, "{mailbox}");
    let sequence_id = platform
        .launch_sequence(
            json!({
                "name": "Webhooks",
                "mailbox_ids": [id_of(&mailbox)?],
                "click_tracking_enabled": true,
                "stop_on_reply": true,
                "sending_window": any_time(),
                "steps": [
                    {"step_order": 1, "subject": SUBJECT,
                     "content": format!("<p>Hi {{{{first_name}}}},</p>\
                                         <p>See <a href=\"{DESTINATION}\">our plans</a>.</p>")},
                    {"step_order": 2, "content": "Following up.", "thread_with_previous": true,
                     "wait_days": 1},
                ],
            }),
            json!([{"email": prospect, "first_name": "Pat"}]),
        )
        .await?;

    // Step 1 goes out; each next thing happens once the webhook of the previous arrived.
    let sent = until_event(&receiver, "message.sent").await?;
    let emails = poll_until(WAIT, "step 1 in the prospect's inbox", || async {
        received(&prospect).await.ok().filter(|all| !all.is_empty())
    })
    .await?;
    let link = tracked_link(&emails[0], &tracker_url)?;
    let header = message_id_header(&emails[0])?;
    assert_eq!(sent.json()["data"]["message_id_header"], header.as_str());

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let click = browser
        .get(&link)
        .header("User-Agent", BROWSER)
        .send()
        .await?;
    assert!(click.status().is_redirection(), "{}", click.status());
    assert_eq!(
        click
            .headers()
            .get("Location")
            .and_then(|l| l.to_str().ok()),
        Some(DESTINATION)
    );
    until_event(&receiver, "message.clicked").await?;

    deliver(&prospect, &seller, &reply(&prospect, &seller, &header)).await?;
    until_event(&receiver, "enrollment.stopped").await?;

    // Done once every delivery is recorded as delivered; then nothing more may arrive.
    let endpoint = Uuid::parse_str(&webhook_id)?;
    let deliveries =
        format!("SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = '{endpoint}'");
    let undelivered = format!("{deliveries} AND status <> 'delivered'");
    poll_until(WAIT, "every delivery delivered", || async {
        let all = platform.db.count(&deliveries).await.ok()?;
        let pending = platform.db.count(&undelivered).await.ok()?;
        (all >= 4 && pending == 0).then_some(())
    })
    .await?;

    // The endpoint stayed enabled, and its view never shows the secret.
    let (status, view) = platform
        .call(Method::GET, &format!("/webhooks/{webhook_id}"), None)
        .await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["enabled"], true, "{view}");
    assert_eq!(view["disabled_reason"], Value::Null, "{view}");
    assert_eq!(view["failing_since"], Value::Null, "{view}");
    assert_eq!(view["description"], "CRM sync");
    assert!(view.get("secret").is_none(), "{view}");

    let mut conn = platform.db.connect().await?;
    let delivery_ids: Vec<IdRow> =
        diesel::sql_query("SELECT id FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(endpoint)
            .load(&mut conn)
            .await?;
    let enrollment: EnrollmentRow = diesel::sql_query(
        "SELECT id, workspace_id, contact_id FROM enrollments WHERE sequence_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::parse_str(&sequence_id)?)
    .get_result(&mut conn)
    .await?;
    let message: IdRow =
        diesel::sql_query("SELECT id FROM messages WHERE enrollment_id = $1 AND step_order = 1")
            .bind::<diesel::sql_types::Uuid, _>(enrollment.id)
            .get_result(&mut conn)
            .await?;
    drop(conn);
    platform.stop().await?;

    let got = receiver.received();
    let types: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [
            "message.sent",
            "message.clicked",
            "contact.replied",
            "enrollment.stopped"
        ],
        "each event once, in the order it happened"
    );
    let ids: HashSet<String> = got.iter().map(|r| r.id.clone()).collect();
    let recorded: HashSet<String> = delivery_ids
        .iter()
        .map(|d| format!("msg_{}", d.id.simple()))
        .collect();
    assert_eq!(ids.len(), 4, "a webhook-id of its own per event");
    assert_eq!(ids, recorded, "one request per recorded delivery");

    for request in &got {
        let body = request.json();
        let data = &body["data"];
        assert_eq!(data["workspace_id"], enrollment.workspace_id.to_string());
        assert_eq!(data["sequence_id"], sequence_id.as_str());
        assert_eq!(data["enrollment_id"], enrollment.id.to_string());
        assert_eq!(data["step_order"], 1);
        assert_eq!(data["message_id"], message.id.to_string());
        assert_eq!(
            data["contact"],
            json!({"id": enrollment.contact_id, "email": prospect}),
        );
        // Not compared between events: a reply is dated by its arrival at the mailbox
        // (IMAP's INTERNALDATE, whole seconds), which may read earlier than a click made in
        // the same second.
        let timestamp = body["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{body}"
        );
    }
    let clicked = got[1].json();
    assert_eq!(clicked["data"]["url"], DESTINATION);
    assert_eq!(clicked["data"]["is_bot"], true, "{clicked}");
    assert_eq!(clicked["data"]["bot_reason"], "click_without_open");
    let replied = got[2].json();
    assert_eq!(replied["data"]["from"], prospect.as_str());
    assert_eq!(replied["data"]["subject"], format!("Re: {SUBJECT}"));
    assert!(replied["data"]["received_at"].is_string(), "{replied}");
    let stopped = got[3].json();
    assert_eq!(stopped["data"]["status"], "replied", "{stopped}");
    assert_eq!(stopped["data"]["reason"], "replied", "{stopped}");

    verify_all(&[secret], &got)
}
