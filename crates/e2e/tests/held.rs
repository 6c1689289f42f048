//! No email goes out with a hole in it, end to end through the API: a contact without a value
//! for a template's variable gets nothing, their enrollment pauses with the reason
//! `missing_variable: <name>`, and once the contact is fixed and the enrollment resumed, the
//! step goes out, once.

mod platform;

use domain::testing::greenmail::{received, smtp_addr};
use domain::testing::poll_until;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::platform::{Platform, WAIT};

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_missing_variable_pauses_the_enrollment_until_fixed_and_resumed() -> anyhow::Result<()> {
    let platform = Platform::start().await?;
    let smtp = smtp_addr()?;
    let prospect = format!("pat-{}@example.com", Uuid::now_v7().simple());

    let mailbox_id = platform.mailbox(smtp).await?;
    let sequence_id = platform
        .launch(
            &mailbox_id,
            json!([{"step_order": 0, "subject": "For {{company}}",
                    "content": "Hi {{first_name}}, a question about {{company}}."}]),
            json!([{"email": prospect, "first_name": "Pat"}]),
        )
        .await?;

    let enrollment = poll_until(WAIT, "the enrollment paused", || async {
        let (_, page) = platform
            .call(
                Method::GET,
                &format!("/sequences/{sequence_id}/contacts"),
                None,
            )
            .await
            .ok()?;
        let enrollment = page["data"][0].clone();
        (enrollment["status"] == "paused").then_some(enrollment)
    })
    .await?;
    assert_eq!(enrollment["stop_reason"], "missing_variable: company");
    assert!(received(&prospect).await?.is_empty(), "nothing was sent");
    let enrollment_id = id(&enrollment);
    let (_, timeline) = platform
        .call(
            Method::GET,
            &format!("/enrollments/{enrollment_id}/events"),
            None,
        )
        .await?;
    assert_eq!(timeline["events"][0]["event_type"], "held", "{timeline}");

    // Fix the contact, resume: the step goes out now, once.
    let contact = enrollment["contact_id"].as_str().unwrap_or_default();
    let (status, _) = platform
        .call(
            Method::PUT,
            &format!("/contacts/{contact}"),
            Some(json!({"company": "Initech"})),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, resumed) = platform
        .call(
            Method::POST,
            &format!("/enrollments/{enrollment_id}/resume"),
            None,
        )
        .await?;
    assert_eq!(
        (status, &resumed["status"]),
        (200, &json!("active")),
        "{resumed}"
    );
    assert_eq!(resumed["stop_reason"], Value::Null);
    let emails = poll_until(WAIT, "the step sent after the fix", || async {
        received(&prospect).await.ok().filter(|all| !all.is_empty())
    })
    .await?;
    assert!(emails[0].contains("Subject: For Initech"), "{}", emails[0]);
    assert!(emails[0].contains("Hi Pat, a question about Initech."));
    poll_until(WAIT, "the enrollment completed", || async {
        let (_, now) = platform
            .call(Method::GET, &format!("/enrollments/{enrollment_id}"), None)
            .await
            .ok()?;
        (now["status"] == "completed").then_some(())
    })
    .await?;
    assert_eq!(received(&prospect).await?.len(), 1, "sent once");
    let requeued = "SELECT count(*) AS n FROM messages WHERE status = 'sent' AND attempts = 2";
    assert_eq!(
        platform.db.count(requeued).await?,
        1,
        "the held message itself was sent, as its second attempt"
    );
    platform.stop().await
}
