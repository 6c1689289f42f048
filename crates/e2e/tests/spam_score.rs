//! What a spam filter holds against our emails: a two-step sequence with open and click
//! tracking and the unsubscribe link, sent by the real scheduler and sender worker (DKIM-signed,
//! as a deployment should) through GreenMail, and each email as GreenMail received it scored by
//! Apache SpamAssassin (Debian's package, local tests only: `spamassassin -L -t`). No rule may
//! fire but those on the allow-list below, each there for a reason the test setup or a
//! documented choice explains.

mod platform;

use std::path::PathBuf;

use domain::config::{DkimAlgorithm, DkimKeyConfig};
use domain::testing::greenmail::{received, smtp_addr};
use domain::testing::{pipe_through, poll_until};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::platform::{Platform, WAIT};

/// Rules that may fire, and why. Anything else is something our emails do that a filter
/// scores: fix it, or add it here with the reason it is not ours.
const ALLOWED: &[&str] = &[
    // The open-tracking pixel: with it, an email with little text reads as mostly an image
    // (0.6 to 2.8 points by length); documented with `open_tracking_enabled`.
    "HTML_IMAGE_ONLY_*",
    // Informational, 0 points: the email has an HTML part (tracking needs one).
    "HTML_MESSAGE",
    // GreenMail's Received: line says `from 127.0.0.1` (it does no reverse lookup).
    "TVD_RCVD_IP",
    // The same line, IPv4 flavour.
    "TVD_RCVD_IP4",
    // GreenMail's Received: line has no `by` part and a Java date: not a parsable relay.
    "UNPARSEABLE_RELAY",
];

const FIRST_SUBJECT: &str = "Onboarding at {{company}}";
const FIRST: &str = "<p>Hi {{first_name}},</p>\
<p>I noticed that {{company}} has been hiring support engineers this quarter. Teams at that \
stage often tell us that the first weeks of a new hire go into finding answers that someone \
already wrote down, somewhere.</p>\
<p>We put together <a href=\"https://acme.test/guides/onboarding\">a short guide on onboarding \
support teams</a> with what worked for twenty companies of your size. It takes about ten \
minutes to read, and the checklist at the end can be copied as it is. Our plans are on \
<a href=\"https://acme.test/pricing\">https://acme.test/pricing</a>.</p>\
<p>Would it be useful if I sent you a few notes specific to your setup?</p>\
<p>Best regards,<br>Ana Lima<br>Customer success, Acme</p>";
/// Plain text, as many people write: paragraphs and a bare URL.
const FOLLOW_UP: &str = "Hi {{first_name}},\n\nI wanted to follow up on my note about onboarding at \
{{company}}. The guide is here if you would like a look: https://acme.test/guides/onboarding\n\n\
If the timing is not right, no problem at all: just let me know and I will not write about it \
again.\n\nBest,\nAna";

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

/// `SEQ_TEST_SPAMASSASSIN`, set by `cargo xtask test`.
fn spamassassin() -> anyhow::Result<String> {
    std::env::var("SEQ_TEST_SPAMASSASSIN").map_err(|_| {
        anyhow::anyhow!(
            "SEQ_TEST_SPAMASSASSIN is not set; run `cargo xtask test` (it installs Debian's \
             spamassassin), or install it (apt-get install spamassassin) and set \
             SEQ_TEST_SPAMASSASSIN=/usr/bin/spamassassin"
        )
    })
}

/// A rule SpamAssassin reported, with its points.
#[derive(Debug, Clone, PartialEq)]
struct Hit {
    rule: String,
    points: f64,
}

/// Scores `email` with `spamassassin -L -t` (local tests only, no network) in a home of its
/// own; the rules that fired and the whole report.
async fn score(program: &str, email: &str) -> anyhow::Result<(Vec<Hit>, String)> {
    let home = tempfile::tempdir()?;
    let output = pipe_through(
        tokio::process::Command::new(program)
            .args(["-L", "-t"])
            .env("HOME", home.path()),
        email.as_bytes(),
    )
    .await?;
    // The report keeps the email's CRLF line ends; its own lines end in LF.
    let report = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    anyhow::ensure!(
        output.status.success(),
        "spamassassin failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let hits = rule_table(&report);
    let status = report
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\n\t", " ");
    // `tests=A,B,\n\tC autolearn=...`: the list ends at the next `key=value`.
    let listed: String = status
        .lines()
        .find_map(|line| line.strip_prefix("X-Spam-Status: "))
        .and_then(|line| line.split("tests=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .take_while(|word| !word.contains('='))
                .collect()
        })
        .ok_or_else(|| anyhow::anyhow!("no X-Spam-Status tests= in:\n{report}"))?;
    let mut from_table: Vec<&str> = hits.iter().map(|h| h.rule.as_str()).collect();
    let mut from_status: Vec<&str> = listed.split(',').filter(|r| !r.is_empty()).collect();
    from_table.sort_unstable();
    from_status.sort_unstable();
    anyhow::ensure!(
        from_table == from_status,
        "the report's table {from_table:?} and X-Spam-Status {from_status:?} differ:\n{report}"
    );
    Ok((hits, report))
}

/// The "pts rule name description" table of a `-t` report.
fn rule_table(report: &str) -> Vec<Hit> {
    report
        .lines()
        .skip_while(|line| !line.starts_with("---- "))
        .skip(1)
        .map_while(|line| {
            let mut words = line.split_whitespace();
            let points = words.next()?.parse::<f64>().ok();
            Some(points.zip(words.next()))
        })
        .flatten()
        .filter(|(_, rule)| {
            rule.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(points, rule)| Hit {
            rule: rule.to_owned(),
            points,
        })
        .collect()
}

fn allowed(rule: &str) -> bool {
    ALLOWED
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => rule.starts_with(prefix),
            None => rule == *pattern,
        })
}

#[test]
fn the_rule_table_of_a_report_is_read() {
    let report = "X-Spam-Status: No\n\nContent analysis details:   (1.7 points, 5.0 required)\n\n \
                  pts rule name              description\n\
                  ---- ---------------------- --------------------------------------------------\n \
                  0.1 DKIM_SIGNED            Message has a DKIM or DK signature, not necessarily\n \
                                             valid\n\
                  -0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n \
                  1.6 HTML_IMAGE_ONLY_24     BODY: HTML: images with 2000-2400 bytes of words\n\n";
    let hits = rule_table(report);
    let names: Vec<&str> = hits.iter().map(|h| h.rule.as_str()).collect();
    assert_eq!(names, ["DKIM_SIGNED", "NO_RELAYS", "HTML_IMAGE_ONLY_24"]);
    assert_eq!(hits[2].points, 1.6);
    assert!(allowed("HTML_IMAGE_ONLY_24") && !allowed("MIME_HTML_ONLY"));
}

#[tokio::test]
async fn a_tracked_two_step_sequence_fires_no_rule_but_the_allowed_ones() -> anyhow::Result<()> {
    // Fails before anything starts when SpamAssassin is missing.
    let program = spamassassin()?;
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sender-worker/tests/fixtures/dkim");
    let platform = Platform::start_with(|config| {
        // Where a deployment's tracker is: an https host of its own, not this test's loopback.
        config.tracker.public_url = "https://track.acme.test".to_owned();
        config.sender_worker.dkim = vec![DkimKeyConfig {
            domain: "acme.test".to_owned(),
            selector: "s2026".to_owned(),
            algorithm: DkimAlgorithm::Rsa,
            private_key: None,
            private_key_file: Some(fixtures.join("rsa-2048.pkcs8.pem")),
        }];
    })
    .await?;
    let smtp = smtp_addr()?;
    let prospect = format!("pat.doe-{}@initech.test", Uuid::now_v7().simple());

    let (status, mailbox) = platform
        .call(
            Method::POST,
            "/mailboxes",
            Some(
                json!({"email": "ana@acme.test", "from_name": "Ana Lima", "daily_limit": 100,
                "min_interval_seconds": 0, "jitter_seconds": 0, "smtp": {
                "host": smtp.ip().to_string(), "port": smtp.port(), "security": "none"}}),
            ),
        )
        .await?;
    assert_eq!(status, 201, "{mailbox}");
    let (status, sequence) = platform
        .call(
            Method::POST,
            "/sequences",
            Some(json!({
                "name": "Onboarding guide",
                "mailbox_ids": [id(&mailbox)],
                "open_tracking_enabled": true,
                "click_tracking_enabled": true,
                "unsubscribe_link": true,
                "sending_window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                   "start_time": "00:00", "end_time": "23:59"},
                "steps": [
                    {"step_order": 1, "subject": FIRST_SUBJECT, "content": FIRST},
                    {"step_order": 2, "content": FOLLOW_UP, "thread_with_previous": true,
                     "wait_days": 0, "wait_hours": 0, "wait_minutes": 0},
                ],
            })),
        )
        .await?;
    assert_eq!(status, 201, "{sequence}");
    let sequence_id = id(&sequence);
    let (status, enrolled) = platform
        .call(
            Method::POST,
            &format!("/sequences/{sequence_id}/contacts"),
            Some(json!({"contacts": [{"email": prospect, "first_name": "Pat",
                                      "last_name": "Doe", "company": "Initech"}]})),
        )
        .await?;
    assert_eq!(status, 201, "{enrolled}");
    let (status, activated) = platform
        .call(
            Method::POST,
            &format!("/sequences/{sequence_id}/activate"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{activated}");

    let emails = poll_until(WAIT, "both steps received", || async {
        received(&prospect).await.ok().filter(|all| all.len() >= 2)
    })
    .await?;
    platform.stop().await?;

    let mut unexpected = Vec::new();
    for (step, email) in emails.iter().enumerate() {
        assert!(email.contains("Pat"), "step {} greets by name", step + 1);
        let (hits, report) = score(&program, email).await?;
        let total: f64 = hits.iter().map(|h| h.points).sum();
        eprintln!("step {}: {total:.1} points: {hits:?}", step + 1);
        // Every email has an HTML part: a report without this rule scored nothing.
        assert!(
            hits.iter().any(|h| h.rule == "HTML_MESSAGE"),
            "SpamAssassin did not run its rules:\n{report}"
        );
        let not_allowed: Vec<&Hit> = hits.iter().filter(|h| !allowed(&h.rule)).collect();
        if !not_allowed.is_empty() {
            unexpected.push(format!(
                "step {}: {not_allowed:?}\n{report}\n--- the email ---\n{email}",
                step + 1
            ));
        }
    }
    assert!(
        unexpected.is_empty(),
        "rules outside the allow-list fired:\n{}",
        unexpected.join("\n")
    );
    Ok(())
}
