//! What each endpoint answers: the pixel, the redirect, the trap and the unsubscribe pages.

use std::time::Duration;

use domain::testing::{TestDatabase, poll_until, test_config_for};

use crate::support::{BROWSER, Ids, Running, an_hour_ago};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn pixel_redirect_trap_and_pages() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let tracker = Running::start(test_config_for(&db)?).await?;
    let ids = Ids::new();
    let sent_at = an_hour_ago();

    let open = tracker.signer.encode(&ids.open(), sent_at);
    for path in [format!("/o/{open}"), format!("/o/{open}.gif")] {
        let response = tracker.get_as(&path, BROWSER).await?;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), Some("image/gif"));
        assert!(header(&response, "cache-control").is_some_and(|v| v.contains("no-store")));
        let body = response.bytes().await?;
        assert_eq!(body.len(), 43);
        assert!(body.starts_with(b"GIF89a"));
    }

    let url = "https://example.com/pricing?utm_source=seq&x=%20y#top";
    let click = tracker.signer.encode(&ids.click(url), sent_at);
    let response = tracker.get_as(&format!("/c/{click}"), BROWSER).await?;
    assert_eq!(response.status(), 302);
    assert_eq!(header(&response, "location"), Some(url));

    let trap = tracker.signer.encode(&ids.trap(), sent_at);
    let response = tracker.get_as(&format!("/c/{trap}"), BROWSER).await?;
    assert_eq!(response.status(), 204);
    assert!(header(&response, "location").is_none());

    let unsubscribe = tracker.signer.encode(&ids.unsubscribe(), sent_at);
    let response = tracker.get(&format!("/u/{unsubscribe}")).await?;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").is_some_and(|v| v.starts_with("text/html")));
    let page = response.text().await?;
    assert!(page.contains(r#"<form method="post">"#), "{page}");
    assert!(
        page.contains(r#"name="List-Unsubscribe" value="One-Click""#),
        "{page}"
    );
    assert!(
        !page.contains(&unsubscribe),
        "the page does not echo the token"
    );

    let response = tracker
        .client
        .post(tracker.url(&format!("/u/{unsubscribe}")))
        .body("something=else")
        .send()
        .await?;
    assert_eq!(response.status(), 400, "a POST without the RFC 8058 body");
    let response = tracker.one_click(&format!("/u/{unsubscribe}")).await?;
    assert_eq!(response.status(), 200);
    assert!(response.text().await?.contains("unsubscribed"));
    assert_eq!(tracker.get("/c/forged").await?.status(), 404);

    // Shared by the tests of this process: names only, not counts.
    let metrics = tracker.get("/metrics").await?.text().await?;
    for name in [
        r#"tracker_hits_total{kind="open",outcome="human"}"#,
        r#"tracker_hits_total{kind="trap",outcome="bot"}"#,
        r#"tracker_hits_total{kind="unsubscribe",outcome="unsubscribed"}"#,
        r#"tracker_invalid_tokens_total{kind="click"}"#,
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }
    let published = poll_until(Duration::from_secs(30), "a delivery report", || async {
        let metrics = tracker.get("/metrics").await.ok()?.text().await.ok()?;
        metrics
            .contains("tracker_events_published_total")
            .then_some(())
    });
    published.await?;
    tracker.stop().await
}
