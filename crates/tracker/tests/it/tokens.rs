//! Only genuine tokens of the route's kind are served; anything else is a 404 that never
//! redirects.

use std::time::Duration;

use domain::testing::{TestDatabase, read_topic, test_config_for};
use domain::tracking_token::TokenSigner;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::{Ids, Running, an_hour_ago};

/// 404 with no Location header.
fn assert_refused(response: &reqwest::Response, case: &str) {
    assert_eq!(response.status(), 404, "{case}");
    assert!(response.headers().get("location").is_none(), "{case}");
}

fn location(response: &reqwest::Response) -> anyhow::Result<Option<&str>> {
    Ok(response
        .headers()
        .get("location")
        .map(|v| v.to_str())
        .transpose()?)
}

#[tokio::test]
async fn forged_tampered_truncated_and_misplaced_tokens_are_404() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let tracker = Running::start(test_config_for(&db)?).await?;
    let ids = Ids::new();
    let sent_at = an_hour_ago();
    let click = tracker
        .signer
        .encode(&ids.click("https://example.com/x"), sent_at);
    let open = tracker.signer.encode(&ids.open(), sent_at);
    let unsubscribe = tracker.signer.encode(&ids.unsubscribe(), sent_at);

    // One character changed in the middle (the payload) and at the end (the tag).
    let flip = |token: &str, at: usize| {
        let mut chars: Vec<char> = token.chars().collect();
        if let Some(c) = chars.get_mut(at) {
            *c = if *c == 'A' { 'B' } else { 'A' };
        }
        chars.into_iter().collect::<String>()
    };
    let forger = TokenSigner::new(&[9u8; 32])?;
    let forged = forger.encode(&ids.click("https://evil.example/"), sent_at);
    let javascript = tracker
        .signer
        .encode(&ids.click("javascript:alert(1)"), sent_at);
    let cases = [
        ("forged with another key", format!("/c/{forged}")),
        ("tampered payload", format!("/c/{}", flip(&click, 40))),
        (
            "tampered tag",
            format!("/c/{}", flip(&click, click.len() - 2)),
        ),
        ("truncated", format!("/c/{}", &click[..click.len() - 6])),
        ("not base64", "/c/%3Cscript%3E".to_owned()),
        ("open token on /c/", format!("/c/{open}")),
        ("click token on /o/", format!("/o/{click}")),
        ("unsubscribe token on /o/", format!("/o/{unsubscribe}.gif")),
        ("open token on /u/", format!("/u/{open}")),
        ("a non-http link", format!("/c/{javascript}")),
    ];
    for (case, path) in &cases {
        assert_refused(&tracker.get(path).await?, case);
    }
    assert_refused(
        &tracker
            .one_click(&format!("/u/{}", flip(&unsubscribe, 50)))
            .await?,
        "tampered one-click",
    );
    assert_refused(
        &tracker.one_click(&format!("/u/{click}")).await?,
        "click token one-click",
    );
    tracker.stop().await
}

#[tokio::test]
async fn a_token_of_an_older_listed_key_still_redirects() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    let old_key = "b2xkLWtleS1vZi10aGUtdHJhY2tlci10ZXN0cy0zMi1ieXRlcw==";
    let new_key = "bmV3LWtleS1vZi10aGUtdHJhY2tlci10ZXN0cy0zMi1ieXRlcw==";
    config.security.tracking_keys = SecretString::from(format!("{new_key},{old_key}"));
    let tracker = Running::start(config).await?;
    let old_signer = TokenSigner::new(b"old-key-of-the-tracker-tests-32-bytes")?;
    let token = old_signer.encode(&Ids::new().click("https://example.com/old"), an_hour_ago());

    let response = tracker.get(&format!("/c/{token}")).await?;
    assert_eq!(response.status(), 302);
    assert_eq!(location(&response)?, Some("https://example.com/old"));
    tracker.stop().await
}

/// A click and an unsubscribe token as the signer issued them before tokens were encrypted
/// (version 2, signed with the test configuration's key; message
/// 0190f3a0-0000-7000-8000-00000000000c, sent 2026-10-26), as delivered emails still carry.
const SIGNED_CLICK: &str = "AgHMat8CQAGQ86AAAHAAgAAAAAAAAAoBkPOgAABwAIAAAAAAAAALAZDzoAAAcACAAAAAAAAADGh0dHBzOi8vZXhhbXBsZS5jb20vZGVsaXZlcmVkLWJlZm9yZS12M5rv783-0Gqb9Fs7XohLvDI";
const SIGNED_UNSUBSCRIBE: &str = "AgLMat8CQAGQ86AAAHAAgAAAAAAAAAoBkPOgAABwAIAAAAAAAAALAZDzoAAAcACAAAAAAAAADD-yD2JGGfPg-Og_W8oGuV0";

#[tokio::test]
async fn links_of_emails_sent_with_signed_tokens_keep_working() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let tracker = Running::start(test_config_for(&db)?).await?;

    let response = tracker.get(&format!("/c/{SIGNED_CLICK}")).await?;
    assert_eq!(response.status(), 302);
    assert_eq!(
        location(&response)?,
        Some("https://example.com/delivered-before-v3")
    );
    assert_eq!(
        tracker
            .one_click(&format!("/u/{SIGNED_UNSUBSCRIBE}"))
            .await?
            .status(),
        200
    );

    let topic = tracker.events_topic();
    let records = read_topic(&tracker.config.kafka, &topic, 2, Duration::from_secs(30)).await?;
    let mut types = Vec::new();
    for record in &records {
        let event: Value = record.payload_json()?;
        assert_eq!(
            event["payload"]["message_id"], "0190f3a0-0000-7000-8000-00000000000c",
            "{event}"
        );
        types.push(event["type"].as_str().unwrap_or_default().to_owned());
    }
    types.sort();
    assert_eq!(types, ["clicked", "unsubscribed"]);
    tracker.stop().await
}
