//! Messages whose delivery is `unknown`, resolved by a person through the API, end to end:
//! the mail server hangs up after the data (the worker cannot know whether it was
//! delivered), both messages wait as `unknown`, and their enrollments with them. Resolved as
//! `sent`, the enrollment moves on to its next step as if the worker had reported the send;
//! resolved as `not_sent`, the message goes out again, with the same Message-ID and without
//! another unit of the mailbox's daily limit.

mod platform;

use chrono::{DateTime, Duration, Utc};
use domain::testing::greenmail::{received, smtp_addr};
use domain::testing::{SmtpSink, poll_until};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::platform::{Platform, WAIT};

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// The Message-ID header of a raw email.
fn message_id(raw: &str) -> Option<String> {
    raw.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim().to_owned())
    })
}

/// The workspace's messages in `status`.
async fn messages(platform: &Platform, status: &str) -> anyhow::Result<Vec<Value>> {
    let (code, page) = platform
        .call(Method::GET, &format!("/messages?status={status}"), None)
        .await?;
    anyhow::ensure!(code == 200, "listing answered {code}: {page}");
    Ok(page["data"].as_array().cloned().unwrap_or_default())
}

async fn enrollment(platform: &Platform, id: &str) -> anyhow::Result<Value> {
    let (code, enrollment) = platform
        .call(Method::GET, &format!("/enrollments/{id}"), None)
        .await?;
    anyhow::ensure!(code == 200, "enrollment answered {code}: {enrollment}");
    Ok(enrollment)
}

async fn reserved_units(platform: &Platform) -> anyhow::Result<i64> {
    platform
        .db
        .count("SELECT coalesce(sum(reserved), 0)::int8 AS n FROM mailbox_daily_usage")
        .await
}

#[tokio::test]
async fn unknown_messages_resolved_as_sent_move_on_and_as_not_sent_go_out_again()
-> anyhow::Result<()> {
    let platform = Platform::start().await?;
    // Hangs up after the data instead of replying: delivered or not, nobody can tell.
    let sink = SmtpSink::start(&["-q", "."]).await?;
    let ann = format!("ann-{}@example.com", Uuid::now_v7().simple());
    let bob = format!("bob-{}@example.com", Uuid::now_v7().simple());

    let mailbox_id = platform.mailbox(sink.addr).await?;
    platform
        .launch(
            &mailbox_id,
            json!([
                {"step_order": 0, "subject": "A question", "content": "Hello there."},
                {"step_order": 1, "subject": "Following up", "content": "Any news?",
                 "wait_days": 1},
            ]),
            json!([{"email": ann}, {"email": bob}]),
        )
        .await?;

    let unknown = poll_until(WAIT, "both messages unknown", || async {
        messages(&platform, "unknown")
            .await
            .ok()
            .filter(|all| all.len() == 2)
    })
    .await?;
    let of = |address: &str| -> anyhow::Result<Value> {
        unknown
            .iter()
            .find(|m| m["email"] == address)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no unknown message for {address}"))
    };
    let (ann_message, bob_message) = (of(&ann)?, of(&bob)?);
    let dumps = sink.received()?;
    assert_eq!(dumps.len(), 2, "the server got both emails' data");
    let bob_dump = dumps
        .iter()
        .find(|d| d.contains(&bob))
        .ok_or_else(|| anyhow::anyhow!("no email to {bob} at the sink"))?;
    let bob_header = text(&bob_message["message_id_header"]);
    assert_eq!(message_id(bob_dump), Some(bob_header.clone()));
    for message in [&ann_message, &bob_message] {
        let waiting = enrollment(&platform, &text(&message["enrollment_id"])).await?;
        assert_eq!(waiting["current_step"], 1, "{waiting}");
        assert_eq!(waiting["next_send_at"], Value::Null, "waits: {waiting}");
    }
    let units = reserved_units(&platform).await?;
    assert_eq!(units, 2, "a unit per email");

    // Ann's was delivered: her enrollment moves on to step 2, due a day after the send.
    let (status, resolved) = platform
        .call(
            Method::POST,
            &format!("/messages/{}/resolve", text(&ann_message["id"])),
            Some(json!({"outcome": "sent"})),
        )
        .await?;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "sent");
    let ann_enrollment = text(&ann_message["enrollment_id"]);
    let moved = poll_until(WAIT, "Ann's enrollment at step 2", || async {
        enrollment(&platform, &ann_enrollment)
            .await
            .ok()
            .filter(|e| e["current_step"] == 2)
    })
    .await?;
    assert_eq!(moved["status"], "active", "{moved}");
    assert_eq!(
        moved["mailbox_id"],
        mailbox_id.as_str(),
        "the thread's mailbox"
    );
    let sent_at: DateTime<Utc> = text(&resolved["sent_at"]).parse()?;
    let due: DateTime<Utc> = text(&moved["next_send_at"]).parse()?;
    assert_eq!(due, sent_at + Duration::days(1), "{moved}");
    let (_, timeline) = platform
        .call(
            Method::GET,
            &format!("/enrollments/{ann_enrollment}/events"),
            None,
        )
        .await?;
    let types: Vec<&str> = timeline["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types, ["sent", "resolved"], "{timeline}");
    assert_eq!(timeline["events"][1]["outcome"], "sent");

    // Bob's was not: once the server works, it goes out again as the same message.
    let greenmail = smtp_addr()?;
    platform
        .db
        .exec(&format!(
            "UPDATE mailboxes SET smtp_host = '{}', smtp_port = {} WHERE id = '{mailbox_id}'",
            greenmail.ip(),
            greenmail.port()
        ))
        .await?;
    let (status, resolved) = platform
        .call(
            Method::POST,
            &format!("/messages/{}/resolve", text(&bob_message["id"])),
            Some(json!({"outcome": "not_sent"})),
        )
        .await?;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "retrying");
    let emails = poll_until(WAIT, "Bob's email delivered", || async {
        received(&bob).await.ok().filter(|all| !all.is_empty())
    })
    .await?;
    assert_eq!(emails.len(), 1);
    assert_eq!(
        message_id(&emails[0]),
        Some(bob_header),
        "the same Message-ID"
    );
    let bob_enrollment = text(&bob_message["enrollment_id"]);
    poll_until(WAIT, "Bob's enrollment at step 2", || async {
        enrollment(&platform, &bob_enrollment)
            .await
            .ok()
            .filter(|e| e["current_step"] == 2)
    })
    .await?;
    let sent = messages(&platform, "sent").await?;
    let again = sent
        .iter()
        .find(|m| m["id"] == bob_message["id"])
        .ok_or_else(|| anyhow::anyhow!("Bob's message is not sent: {sent:?}"))?;
    assert_eq!(again["attempts"], 2, "{again}");
    assert_eq!(again["resolution"], "not_sent");

    assert_eq!(
        reserved_units(&platform).await?,
        units,
        "the retry used the unit its first attempt reserved"
    );
    assert_eq!(
        sink.received()?.len(),
        2,
        "nothing more went to the old server"
    );
    assert!(received(&ann).await?.is_empty(), "Ann's was not sent again");
    assert!(messages(&platform, "unknown").await?.is_empty());
    sink.stop().await?;
    platform.stop().await
}
