//! Each hit becomes an `email-events` record with its classification and client.

use std::time::Duration;

use chrono::Utc;
use domain::testing::{TestDatabase, count_records, read_topic, test_config_for};
use serde_json::Value;

use crate::support::{BROWSER, Ids, Running, an_hour_ago};

const GMAIL_PROXY: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";

#[tokio::test]
async fn hits_become_classified_events_and_a_get_never_unsubscribes() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut config = test_config_for(&db)?;
    // Requests come from 127.0.0.1: a trusted proxy, so X-Forwarded-For names the client.
    config.tracker.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    let tracker = Running::start(config).await?;
    let sent_at = an_hour_ago();
    let (proxied, person, scanned) = (Ids::new(), Ids::new(), Ids::new());
    let signer = &tracker.signer;

    // A GET of the unsubscribe link (a prefetch) publishes nothing.
    let page = format!("/u/{}", signer.encode(&person.unsubscribe(), sent_at));
    assert_eq!(tracker.get(&page).await?.status(), 200);

    let hits = [
        (
            format!("/o/{}.gif", signer.encode(&proxied.open(), sent_at)),
            GMAIL_PROXY,
        ),
        (
            format!("/o/{}", signer.encode(&person.open(), sent_at)),
            BROWSER,
        ),
        (
            format!(
                "/c/{}",
                signer.encode(&person.click("https://example.com/a"), sent_at)
            ),
            BROWSER,
        ),
        (
            format!(
                "/c/{}",
                signer.encode(&scanned.click("https://example.com/b"), sent_at)
            ),
            BROWSER,
        ),
        (
            format!("/c/{}", signer.encode(&scanned.trap(), sent_at)),
            BROWSER,
        ),
        (
            format!("/o/{}", signer.encode(&scanned.open(), Utc::now())),
            BROWSER,
        ),
    ];
    for (path, user_agent) in &hits {
        let response = tracker
            .client
            .get(tracker.url(path))
            .header("User-Agent", *user_agent)
            .header("X-Forwarded-For", "203.0.113.77")
            .send()
            .await?;
        assert!(response.status().is_success() || response.status() == 302);
    }
    let unsubscribe = signer.encode(&person.unsubscribe(), sent_at);
    assert_eq!(
        tracker
            .one_click(&format!("/u/{unsubscribe}"))
            .await?
            .status(),
        200
    );

    let topic = tracker.events_topic();
    let records = read_topic(&tracker.config.kafka, &topic, 7, Duration::from_secs(30)).await?;
    assert_eq!(
        count_records(&tracker.config.kafka, &topic).await?,
        7,
        "six hits and one unsubscribe; the GET of /u published nothing"
    );
    let mut events: Vec<Value> = records
        .iter()
        .map(|r| r.payload_json())
        .collect::<anyhow::Result<_>>()?;
    // Records of one enrollment keep their order; sort the rest for a stable comparison.
    events.sort_by_key(|e| e["id"].as_str().map(str::to_owned));
    let find = |kind: &str, message: &Ids| -> anyhow::Result<Vec<&Value>> {
        Ok(events
            .iter()
            .filter(|e| {
                e["type"] == kind && e["payload"]["message_id"] == message.message_id.to_string()
            })
            .collect())
    };
    let one = |kind: &str, message: &Ids| -> anyhow::Result<&Value> {
        let found = find(kind, message)?;
        anyhow::ensure!(found.len() == 1, "{kind} of {message:?}: {found:?}");
        Ok(&found[0]["payload"])
    };

    let gmail = one("opened", &proxied)?;
    assert_eq!(gmail["is_bot"], true);
    assert_eq!(gmail["bot_reason"], "user_agent:GoogleImageProxy");
    assert_eq!(gmail["user_agent"], GMAIL_PROXY);

    let opened = one("opened", &person)?;
    assert_eq!(opened["is_bot"], false, "{opened}");
    assert_eq!(opened["bot_reason"], Value::Null);
    assert_eq!(opened["user_agent"], BROWSER);
    assert_eq!(opened["client_ip"], "203.0.113.0", "truncated to its /24");
    assert_eq!(opened["enrollment_id"], person.enrollment_id.to_string());

    let clicked = one("clicked", &person)?;
    assert_eq!(clicked["is_bot"], false, "a click after an open: {clicked}");
    assert_eq!(clicked["url"], "https://example.com/a");

    let scans = find("clicked", &scanned)?;
    let reasons: Vec<&Value> = scans.iter().map(|e| &e["payload"]["bot_reason"]).collect();
    assert!(
        reasons.contains(&&Value::from("click_without_open")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&&Value::from("trap")), "{reasons:?}");

    let early = one("opened", &scanned)?;
    assert!(
        early["bot_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("too_soon:")),
        "{early}"
    );

    let unsubscribed = one("unsubscribed", &person)?;
    assert_eq!(
        unsubscribed["client_ip"], "127.0.0.0",
        "no X-Forwarded-For: the peer"
    );
    let record = records
        .iter()
        .find(|r| r.payload_json().is_ok_and(|e| e["type"] == "unsubscribed"))
        .ok_or_else(|| anyhow::anyhow!("no unsubscribed record"))?;
    assert_eq!(
        record.key.as_deref(),
        Some(person.enrollment_id.to_string().as_str())
    );
    assert_eq!(
        record.payload_json()?["workspace_id"],
        person.workspace_id.to_string()
    );
    tracker.stop().await
}
