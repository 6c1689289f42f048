//! Emails sent through the worker and read back from GreenMail: headers, both MIME parts (a
//! complete HTML document, a text part laid out from it), tracking links (links showing a URL
//! left alone unless the sequence forces them) and pixel, unsubscribe headers, threading, the `sent` events, the
//! parts' transfer encoding (7bit as written when ASCII, dot lines intact), and that
//! neither a duplicated job nor a hostile subject gets a second recipient.

use domain::testing::read_topic;
use domain::tracking_token::TrackingAction;
use mailparse::{MailHeaderMap, ParsedMail};
use uuid::Uuid;

use crate::world::{Step, WAIT, World, greenmail_smtp, received, wait_received};

const FIRST: Step = Step {
    subject: "{Quick question|A question} for {company}",
    content: "<p>Hi {{first_name|there}},</p><p>See <a href=\"https://example.com/pricing?plan=pro\">our plans</a> for details:</p><ul><li>Docs: <a href=\"https://docs.example.com\">https://docs.example.com</a></li><li>Status: https://status.example.com</li></ul>",
    thread_with_previous: false,
};
const FOLLOW_UP: Step = Step {
    subject: "ignored: a threaded follow-up repeats the first subject",
    content: "Hi {first_name}, just following up.",
    thread_with_previous: true,
};

fn contact_address() -> String {
    format!("jane-{}@example.org", Uuid::now_v7().simple())
}

fn parse(raw: &str) -> anyhow::Result<ParsedMail<'_>> {
    Ok(mailparse::parse_mail(raw.as_bytes())?)
}

fn header(mail: &ParsedMail, name: &str) -> anyhow::Result<String> {
    mail.headers
        .get_first_value(name)
        .ok_or_else(|| anyhow::anyhow!("no {name} header"))
}

/// The text/plain and text/html bodies of a multipart/alternative email.
fn parts(mail: &ParsedMail) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(
        mail.ctype.mimetype == "multipart/alternative",
        "content type {}",
        mail.ctype.mimetype
    );
    let find = |mimetype: &str| -> anyhow::Result<String> {
        let part = mail
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mimetype)
            .ok_or_else(|| anyhow::anyhow!("no {mimetype} part"))?;
        Ok(part.get_body()?)
    };
    Ok((find("text/plain")?, find("text/html")?))
}

/// Every `https://track.test/{kind}/TOKEN` in `body`, decoded.
fn tokens(world: &World, body: &str, kind: &str) -> anyhow::Result<Vec<TrackingAction>> {
    let signer = world
        .config
        .security
        .token_signer()
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("no tracking key"))?;
    let prefix = format!("https://track.test/{kind}/");
    body.match_indices(&prefix)
        .map(|(at, _)| {
            let token: String = body[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            signer
                .decode(&token)
                .map(|token| token.action)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .filter(|action| !matches!(action, Ok(TrackingAction::Trap { .. })))
        .collect()
}

#[tokio::test]
async fn a_sequence_reads_back_tracked_unsubscribable_and_threaded() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[FIRST, FOLLOW_UP]).await?;
    let to = contact_address();
    let enrollment = world.enroll(&to, Some("Jane")).await?;
    let first = world.queue(enrollment, 1).await?;
    world.publish_job(first).await?;
    let worker = world.start_worker()?;

    let sent = world.wait_for(first, &["sent"]).await?;
    assert!(
        sent.smtp_response.as_deref().is_some_and(|r| !r.is_empty()),
        "the server's reply is stored: {sent:?}"
    );
    let emails = wait_received(&to, 1).await?;
    let mail = parse(&emails[0])?;
    let subject = header(&mail, "Subject")?;
    assert!(
        subject == "Quick question for Initech" || subject == "A question for Initech",
        "rendered subject: {subject}"
    );
    assert_eq!(sent.subject.as_deref(), Some(subject.as_str()));
    assert_eq!(
        header(&mail, "Message-ID")?,
        sent.message_id_header.clone().unwrap_or_default()
    );
    let from = header(&mail, "From")?;
    assert!(
        from.contains("Ana from Acme") && from.contains(&world.mailbox_email),
        "From: {from}"
    );
    assert!(header(&mail, "To")?.contains(&to));
    assert!(header(&mail, "Date").is_ok());

    // Unsubscribe: RFC 8058 headers always, a signed token for this message.
    let list_unsubscribe = header(&mail, "List-Unsubscribe")?;
    assert!(
        list_unsubscribe.starts_with("<https://track.test/u/"),
        "{list_unsubscribe}"
    );
    assert_eq!(
        header(&mail, "List-Unsubscribe-Post")?,
        "List-Unsubscribe=One-Click"
    );
    let unsubscribes = tokens(&world, &list_unsubscribe, "u")?;
    assert_eq!(
        unsubscribes,
        [TrackingAction::Unsubscribe {
            workspace_id: world.workspace_id,
            enrollment_id: enrollment,
            message_id: first,
        }]
    );

    // Both parts, personalised: the HTML part a complete document, the text part laid out
    // from it. The labelled link goes through the tracker in both; the link showing its URL
    // and the bare URL are left as written; the pixel is in the HTML's body.
    let (text, html) = parts(&mail)?;
    let text = text.replace("\r\n", "\n");
    let html = html.replace("\r\n", "\n");
    assert!(
        html.starts_with("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">")
            && html.contains("</head>\n<body>\n<p>Hi Jane,</p>")
            && html.trim_end().ends_with("</body>\n</html>"),
        "{html}"
    );
    assert!(
        text.starts_with("Hi Jane,\n\nSee our plans (https://track.test/c/"),
        "{text}"
    );
    assert!(
        text.contains(
            ") for details:\n\n- Docs: https://docs.example.com\n- Status: https://status.example.com\n"
        ),
        "{text}"
    );
    assert!(
        !html.contains("href=\"https://example.com/pricing"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://docs.example.com\">https://docs.example.com</a>"),
        "{html}"
    );
    assert!(
        html.contains("Status: https://status.example.com</li>"),
        "{html}"
    );
    let clicks = tokens(&world, &html, "c")?;
    assert_eq!(
        clicks,
        [TrackingAction::Click {
            workspace_id: world.workspace_id,
            enrollment_id: enrollment,
            message_id: first,
            url: "https://example.com/pricing?plan=pro".to_owned(),
        }]
    );
    assert_eq!(tokens(&world, &text, "c")?, clicks, "{text}");
    assert_eq!(tokens(&world, &html, "o")?.len(), 1, "one open pixel");
    let pixel = html.find("https://track.test/o/").unwrap_or(usize::MAX);
    assert!(pixel < html.find("</body>").unwrap_or_default(), "{html}");
    assert!(
        !tokens(&world, &html, "u")?.is_empty(),
        "an unsubscribe link in the body"
    );

    // The scheduler hears of it, keyed by enrollment.
    let events = read_topic(&world.config.kafka, &world.topics.email_events, 1, WAIT).await?;
    let event = events[0].payload_json()?;
    assert_eq!(
        events[0].key.as_deref(),
        Some(enrollment.to_string().as_str())
    );
    assert_eq!(event["type"], "sent");
    assert_eq!(event["payload"]["message_id"], first.to_string());
    assert_eq!(event["payload"]["step_order"], 1);
    assert_eq!(
        event["payload"]["message_id_header"],
        sent.message_id_header.clone().unwrap_or_default()
    );

    // The follow-up replies in the thread.
    let second = world.queue(enrollment, 2).await?;
    world.publish_job(second).await?;
    let second_row = world.wait_for(second, &["sent"]).await?;
    let emails = wait_received(&to, 2).await?;
    let reply = emails
        .iter()
        .map(|raw| parse(raw))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .find(|m| header(m, "Message-ID").ok() == second_row.message_id_header)
        .ok_or_else(|| anyhow::anyhow!("the follow-up is not in the mailbox"))?;
    let first_id = sent.message_id_header.clone().unwrap_or_default();
    assert_eq!(header(&reply, "Subject")?, format!("Re: {subject}"));
    assert_eq!(header(&reply, "In-Reply-To")?, first_id);
    assert_eq!(header(&reply, "References")?, first_id);
    let (text, _) = parts(&reply)?;
    assert!(text.contains("Hi Jane, just following up."), "{text}");

    worker.stop().await
}

#[tokio::test]
async fn a_sequence_forcing_it_tracks_links_that_show_a_url_in_both_parts() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[FIRST]).await?;
    world
        .exec(&format!(
            "UPDATE sequences SET track_url_text_links = true WHERE id = '{}'",
            world.sequence_id
        ))
        .await?;
    let to = contact_address();
    let enrollment = world.enroll(&to, Some("Jane")).await?;
    let first = world.queue(enrollment, 1).await?;
    world.publish_job(first).await?;
    let worker = world.start_worker()?;
    world.wait_for(first, &["sent"]).await?;
    let emails = wait_received(&to, 1).await?;
    let mail = parse(&emails[0])?;
    let (text, html) = parts(&mail)?;

    let urls = |body: &str| -> anyhow::Result<Vec<String>> {
        Ok(tokens(&world, body, "c")?
            .into_iter()
            .filter_map(|action| match action {
                TrackingAction::Click { url, .. } => Some(url),
                _ => None,
            })
            .collect())
    };
    let expected = [
        "https://example.com/pricing?plan=pro",
        "https://docs.example.com",
        "https://status.example.com",
    ];
    assert_eq!(urls(&html)?, expected, "{html}");
    assert_eq!(urls(&text)?, expected, "{text}");
    // The bare URL became a link showing it; the visible URLs stay in the text part.
    assert!(html.contains(">https://status.example.com</a>"), "{html}");
    assert!(!html.contains("href=\"https://docs.example.com"), "{html}");
    assert!(
        text.contains("Status: https://status.example.com (https://track.test/c/"),
        "{text}"
    );
    worker.stop().await
}

#[tokio::test]
async fn the_same_job_twice_sends_one_email() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[FIRST]).await?;
    let to = contact_address();
    let message = world.queue(world.enroll(&to, None).await?, 1).await?;
    world.publish_job(message).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    // Replayed after it was sent, and then a sentinel behind it on the same partition: once
    // the sentinel is sent, the replay has been claimed and skipped.
    world.publish_job(message).await?;
    let sentinel_to = contact_address();
    let sentinel = world
        .queue(world.enroll(&sentinel_to, None).await?, 1)
        .await?;
    world.publish_job(sentinel).await?;
    world.wait_for(sentinel, &["sent"]).await?;

    assert_eq!(received(&to).await?.len(), 1, "one email for three jobs");
    assert_eq!(world.message(message).await?.attempts, 1);
    worker.stop().await
}

#[tokio::test]
async fn a_subject_with_a_line_break_cannot_add_a_recipient() -> anyhow::Result<()> {
    let evil = format!("x-{}@evil.test", Uuid::now_v7().simple());
    let subject: &'static str =
        Box::leak(format!("Hello\r\nBcc: {evil}\r\nX-Injected: yes").into_boxed_str());
    let step = Step {
        subject,
        content: "Hi",
        thread_with_previous: false,
    };
    let world = World::new(greenmail_smtp()?, &[step]).await?;
    let to = contact_address();
    let message = world.queue(world.enroll(&to, None).await?, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;

    let emails = wait_received(&to, 1).await?;
    let mail = parse(&emails[0])?;
    assert!(mail.headers.get_first_value("Bcc").is_none());
    assert!(mail.headers.get_first_value("X-Injected").is_none());
    assert!(!emails[0].contains("\r\nBcc:") && !emails[0].contains("\nBcc:"));
    assert!(header(&mail, "Subject")?.starts_with("Hello"));
    assert!(
        received(&evil).await?.is_empty(),
        "nothing reached the injected address"
    );
    worker.stop().await
}

/// Contact data stored before the API refused line breaks in names (or an attribute, which
/// may span lines) still cannot add a header: the renderer folds line breaks into spaces.
#[tokio::test]
async fn a_contact_name_with_a_line_break_cannot_add_a_header() -> anyhow::Result<()> {
    let evil = format!("x-{}@evil.test", Uuid::now_v7().simple());
    let step = Step {
        subject: "Hello {first_name}",
        content: "Hi {first_name}",
        thread_with_previous: false,
    };
    let world = World::new(greenmail_smtp()?, &[step]).await?;
    let to = contact_address();
    let name = format!("Bob\r\nBcc: {evil}\r\nX-Injected: yes");
    let message = world
        .queue(world.enroll(&to, Some(&name)).await?, 1)
        .await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;

    let emails = wait_received(&to, 1).await?;
    let mail = parse(&emails[0])?;
    assert_eq!(mail.headers.get_all_values("Subject").len(), 1);
    assert!(header(&mail, "Subject")?.starts_with("Hello Bob"));
    assert!(mail.headers.get_first_value("Bcc").is_none());
    assert!(mail.headers.get_first_value("X-Injected").is_none());
    assert_eq!(mail.headers.get_all_values("To").len(), 1);
    // (The body may show the name's line break: it is content there, not a header.)
    let head = emails[0].split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head.contains("\nBcc:") && !head.contains("\nX-Injected:"),
        "{head}"
    );
    assert!(
        received(&evil).await?.is_empty(),
        "nothing reached the injected address"
    );
    worker.stop().await
}

/// An email never goes out with a hole in it: a variable with no value and no fallback holds
/// the message (cancelled, with the reason) and tells the scheduler, which pauses the
/// enrollment.
#[tokio::test]
async fn a_variable_without_a_value_holds_the_message() -> anyhow::Result<()> {
    let step = Step {
        subject: "A question, {{first_name}}",
        content: "Hi {name}, about {{company}}",
        thread_with_previous: false,
    };
    let world = World::new(greenmail_smtp()?, &[step]).await?;
    let to = contact_address();
    let enrollment = world.enroll(&to, None).await?;
    let message = world.queue(enrollment, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    let held = world.wait_for(message, &["cancelled"]).await?;
    assert_eq!(
        held.last_error.as_deref(),
        Some("missing_variable: first_name")
    );

    let events = read_topic(&world.config.kafka, &world.topics.email_events, 1, WAIT).await?;
    let event = events[0].payload_json()?;
    assert_eq!(event["type"], "held");
    assert_eq!(event["payload"]["message_id"], message.to_string());
    assert_eq!(event["payload"]["step_order"], 1);
    assert_eq!(event["payload"]["reason"], "missing_variable: first_name");
    worker.stop().await?;
    assert!(received(&to).await?.is_empty(), "nothing was sent");
    Ok(())
}

#[tokio::test]
async fn ascii_parts_arrive_7bit_as_written_and_non_ascii_ones_encoded() -> anyhow::Result<()> {
    let long: &'static str = Box::leak("a line of words ".repeat(56).into_boxed_str());
    let content: &'static str = Box::leak(
        format!(
            "Hi {{{{first_name}}}},\n.\n..two dots, stuffed and unstuffed by SMTP\n{long}\nBye"
        )
        .into_boxed_str(),
    );
    let step = Step {
        subject: "Lines",
        content,
        thread_with_previous: false,
    };
    let world = World::new(greenmail_smtp()?, &[step]).await?;
    let worker = world.start_worker()?;
    for (name, encoding) in [("Jane", "7bit"), ("Zoë", "quoted-printable")] {
        let to = contact_address();
        let message = world.queue(world.enroll(&to, Some(name)).await?, 1).await?;
        world.publish_job(message).await?;
        world.wait_for(message, &["sent"]).await?;
        let emails = wait_received(&to, 1).await?;
        let mail = parse(&emails[0])?;
        let encodings: Vec<String> = mail
            .subparts
            .iter()
            .filter_map(|part| part.headers.get_first_value("Content-Transfer-Encoding"))
            .collect();
        assert_eq!(encodings, [encoding, encoding], "{}", emails[0]);
        let (text, html) = parts(&mail)?;
        let text = text.replace("\r\n", "\n");
        let written =
            format!("Hi {name},\n.\n..two dots, stuffed and unstuffed by SMTP\n{long}\nBye\n");
        assert!(text.starts_with(&written), "{}", emails[0]);
        assert!(html.contains(&format!("{long}<br>")), "{html}");
    }
    worker.stop().await
}
