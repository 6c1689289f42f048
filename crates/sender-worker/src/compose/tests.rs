use chrono::TimeZone as _;
use domain::tracking_token::TokenSigner;
use serde_json::json;

use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const BASE: &str = "https://track.example.com";

fn signer() -> TokenSigner {
    TokenSigner::new(KEY).unwrap_or_else(|e| panic!("{e}"))
}

fn email() -> Email {
    Email {
        from: Party {
            address: "grace@sender.example".to_owned(),
            name: Some("Grace Hopper".to_owned()),
        },
        to: Party {
            address: "ada@example.com".to_owned(),
            name: Some("Ada Lovelace".to_owned()),
        },
        subject: "{Hi|Hello} {{first_name}}".into(),
        content: "{Hi|Hello|Hey} {{first_name|there}},\n\nsee https://example.com/pricing?a=1&b=2.\nWrite to mailto:x@y.z\n\nBye from {{company|our team}}".into(),
        contact: ContactFields {
            email: "ada@example.com".to_owned(),
            first_name: Some("Ada".to_owned()),
            last_name: Some("Lovelace".to_owned()),
            company: None,
            title: None,
            attributes: json!({}),
        },
        message_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003),
        workspace_id: Uuid::from_u128(1),
        enrollment_id: Uuid::from_u128(2),
        message_id_header: "<m3@sender.example>".to_owned(),
        date: Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .unwrap_or_else(|| panic!("valid date")),
        thread: None,
        tracking: Tracking {
            open: false,
            click: false,
            url_text_links: false,
            base_url: format!("{BASE}/"),
            unsubscribe_link: false,
            unsubscribe_mailto: None,
        },
    }
}

/// The formatted message with folded header lines joined, so assertions see whole headers,
/// and quoted-printable soft breaks and `=3D` undone (for a part that is not 7bit; the test
/// content has no literal `=3D` or `=` at a line's end).
fn raw(email: &Email) -> Result<String, ComposeError> {
    let bytes = compose_bytes(email, &signer())?;
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
    Ok(text
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .replace("=\r\n", "")
        .replace("=3D", "="))
}

fn header<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
        .collect()
}

/// Every tracking URL of `kind` (`c`, `o`, `u`) in `raw`, decoded; `c` leaves out the trap
/// link (see [`traps`]).
fn tokens(raw: &str, kind: &str) -> Vec<TrackingAction> {
    decoded(raw, kind)
        .into_iter()
        .map(|token| token.action)
        .filter(|action| !matches!(action, TrackingAction::Trap { .. }))
        .collect()
}

fn traps(raw: &str) -> Vec<domain::tracking_token::Token> {
    decoded(raw, "c")
        .into_iter()
        .filter(|token| matches!(token.action, TrackingAction::Trap { .. }))
        .collect()
}

fn decoded(raw: &str, kind: &str) -> Vec<domain::tracking_token::Token> {
    let prefix = format!("{BASE}/{kind}/");
    raw.match_indices(&prefix)
        .map(|(at, _)| {
            let rest = raw.get(at + prefix.len()..).unwrap_or_default();
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            signer()
                .decode(rest.get(..end).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

#[test]
fn has_both_parts_and_the_basic_headers() -> Result<(), ComposeError> {
    let raw = raw(&email())?;
    assert!(
        raw.contains("Content-Type: multipart/alternative;"),
        "{raw}"
    );
    assert!(
        raw.contains("Content-Type: text/plain; charset=utf-8"),
        "{raw}"
    );
    assert!(
        raw.contains("Content-Type: text/html; charset=utf-8"),
        "{raw}"
    );
    assert_eq!(
        header(&raw, "From"),
        ["\"Grace Hopper\" <grace@sender.example>"]
    );
    assert_eq!(header(&raw, "To"), ["\"Ada Lovelace\" <ada@example.com>"]);
    assert_eq!(header(&raw, "Message-ID"), ["<m3@sender.example>"]);
    assert_eq!(header(&raw, "Date"), ["Tue, 04 Mar 2025 05:06:07 +0000"]);
    // Variables with fallbacks, in both parts.
    assert!(
        raw.contains("Ada,\r\n\r\nsee https://example.com/pricing?a=1&b=2."),
        "{raw}"
    );
    assert!(raw.contains("Bye from our team"), "{raw}");
    assert!(raw.contains("<p>Bye from our team</p>"), "{raw}");
    assert!(
        raw.contains("<a href=\"https://example.com/pricing?a=1&amp;b=2\">"),
        "{raw}"
    );
    assert!(header(&raw, "In-Reply-To").is_empty());
    assert!(header(&raw, "References").is_empty());
    Ok(())
}

#[test]
fn list_unsubscribe_headers_are_always_set() -> Result<(), ComposeError> {
    let mut email = email();
    let plain = raw(&email)?;
    let url = header(&plain, "List-Unsubscribe")
        .first()
        .map(|value| value.to_string())
        .unwrap_or_default();
    assert!(
        url.starts_with(&format!("<{BASE}/u/")) && url.ends_with('>'),
        "{url}"
    );
    assert_eq!(
        header(&plain, "List-Unsubscribe-Post"),
        ["List-Unsubscribe=One-Click"]
    );
    let (workspace_id, enrollment_id, message_id) =
        (email.workspace_id, email.enrollment_id, email.message_id);
    assert_eq!(
        tokens(&url, "u"),
        [TrackingAction::Unsubscribe {
            workspace_id,
            enrollment_id,
            message_id
        }]
    );
    // No footer unless asked for.
    assert!(!plain.contains("\nUnsubscribe:"));

    email.tracking.unsubscribe_mailto = Some("unsubscribe@sender.example".to_owned());
    email.tracking.unsubscribe_link = true;
    let raw = raw(&email)?;
    assert_eq!(
        header(&raw, "List-Unsubscribe"),
        [format!("{url}, <mailto:unsubscribe@sender.example>")]
    );
    assert!(raw.contains(&format!("Unsubscribe: {}", url.trim_matches(['<', '>']))));
    assert!(raw.contains(&format!(
        "<a href=\"{}\">Unsubscribe</a>",
        url.trim_matches(['<', '>'])
    )));
    Ok(())
}

/// The URLs of the click tokens in `raw`, text part first.
fn clicked_urls(raw: &str) -> Vec<String> {
    tokens(raw, "c")
        .into_iter()
        .filter_map(|action| match action {
            TrackingAction::Click { url, .. } => Some(url),
            _ => None,
        })
        .collect()
}

/// The text part, its quoted-printable undone by [`raw`].
fn text_part(raw: &str) -> String {
    let after = raw
        .split_once("Content-Type: text/plain; charset=utf-8")
        .map(|(_, after)| after)
        .unwrap_or_default();
    let body = after
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    body.split("\r\n--")
        .next()
        .unwrap_or_default()
        .replace("\r\n", "\n")
}

#[test]
fn click_tracking_leaves_the_bare_urls_of_plain_text_unless_forced() -> Result<(), ComposeError> {
    let mut email = email();
    email.tracking.click = true;
    let raw = raw(&email)?;
    // A bare URL shows itself: linked to itself in the HTML part, untracked in both parts.
    assert!(clicked_urls(&raw).is_empty(), "{raw}");
    assert!(
        raw.contains("<a href=\"https://example.com/pricing?a=1&amp;b=2\">https://example.com/pricing?a=1&amp;b=2</a>"),
        "{raw}"
    );
    assert!(text_part(&raw).contains("see https://example.com/pricing?a=1&b=2."));

    email.tracking.url_text_links = true;
    let raw = self::raw(&email)?;
    // Text part, then the href in the HTML part; the link's label keeps the original URL.
    assert_eq!(
        clicked_urls(&raw),
        [
            "https://example.com/pricing?a=1&b=2",
            "https://example.com/pricing?a=1&b=2"
        ],
        "{raw}"
    );
    for click in tokens(&raw, "c") {
        assert_eq!(click.message_id(), email.message_id);
    }
    assert!(!raw.contains("href=\"https://example.com"), "{raw}");
    assert!(
        raw.contains(">https://example.com/pricing?a=1&amp;b=2</a>"),
        "{raw}"
    );
    assert!(raw.contains("mailto:x@y.z"));
    Ok(())
}

#[test]
fn links_showing_a_url_stay_untracked_unless_the_sequence_forces_them() -> Result<(), ComposeError>
{
    let mut email = email();
    email.content = "<p><a href=\"https://docs.example.com\">https://docs.example.com</a>, <a href=\"https://example.com/pricing\">pricing</a> and https://bare.example/x.</p>".into();
    email.tracking.click = true;
    let raw = raw(&email)?;
    assert_eq!(
        clicked_urls(&raw),
        ["https://example.com/pricing", "https://example.com/pricing"],
        "{raw}"
    );
    assert!(
        raw.contains("<a href=\"https://docs.example.com\">https://docs.example.com</a>"),
        "{raw}"
    );
    assert!(!raw.contains("href=\"https://bare.example"), "{raw}");
    let text = text_part(&raw);
    assert!(
        text.starts_with("https://docs.example.com, pricing (https://track.example.com/c/"),
        "{text}"
    );
    assert!(text.contains(") and https://bare.example/x.\n"), "{text}");

    email.tracking.url_text_links = true;
    let raw = self::raw(&email)?;
    let urls = clicked_urls(&raw);
    let expected = [
        "https://docs.example.com",
        "https://example.com/pricing",
        "https://bare.example/x",
    ];
    assert_eq!(urls, [expected, expected].concat(), "{raw}");
    assert!(raw.contains(">https://bare.example/x</a>."), "{raw}");
    let text = text_part(&raw);
    assert!(
        text.starts_with("https://docs.example.com (https://track.example.com/c/"),
        "{text}"
    );
    Ok(())
}

#[test]
fn the_html_part_is_a_complete_utf8_document() -> Result<(), ComposeError> {
    let mut email = email();
    email.tracking.open = true;
    email.tracking.unsubscribe_link = true;
    let raw = raw(&email)?;
    let html = raw
        .split_once("Content-Type: text/html; charset=utf-8")
        .map(|(_, html)| html)
        .unwrap_or_default();
    let body = html
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        body.starts_with("<!DOCTYPE html>\r\n<html>\r\n<head>\r\n<meta charset=\"utf-8\">"),
        "{body}"
    );
    let (head, rest) = body.split_once("<body>").unwrap_or_default();
    assert!(head.contains("</head>"), "{head}");
    let (inside, after) = rest.split_once("</body>").unwrap_or_default();
    assert!(inside.contains("<p>Bye from our team</p>"), "{inside}");
    assert!(
        inside.contains(">Unsubscribe</a>") && inside.contains("/o/"),
        "{inside}"
    );
    assert!(after.starts_with("\r\n</html>"), "{after}");

    // Content that is a document keeps its markup, gains the charset, and the additions go
    // inside its body.
    email.content =
        "<html><head><title>Hi</title></head><body style=\"margin:0\"><p>Hi {{first_name}}</p></body></html>"
            .into();
    let raw = self::raw(&email)?;
    assert!(
        raw.contains("<html><head>\r\n<meta charset=\"utf-8\"><title>Hi</title></head><body style=\"margin:0\"><p>Hi Ada</p>"),
        "{raw}"
    );
    assert!(!raw.contains("<!DOCTYPE"), "{raw}");
    let pixel = raw.find("/o/").unwrap_or(usize::MAX);
    let body_end = raw.find("</body></html>").unwrap_or_default();
    assert!(pixel < body_end, "{raw}");
    Ok(())
}

#[test]
fn the_text_part_of_html_keeps_its_structure() -> Result<(), ComposeError> {
    let mut email = email();
    email.content = "<p>Hi {{first_name}},</p><p>Our plans:</p><ul><li>Basic</li><li>Pro &amp; more</li></ul><p>See <a href=\"https://example.com/pricing\">pricing</a><br>or https://docs.example.com.</p>".into();
    let raw = raw(&email)?;
    assert_eq!(
        text_part(&raw),
        "Hi Ada,\n\nOur plans:\n\n- Basic\n- Pro & more\n\nSee pricing (https://example.com/pricing)\nor https://docs.example.com.\n"
    );
    Ok(())
}

#[test]
fn click_tracking_adds_one_hidden_trap_link_dated_with_the_email() -> Result<(), ComposeError> {
    let mut email = email();
    let raw_untracked = raw(&email)?;
    assert!(traps(&raw_untracked).is_empty());
    email.tracking.click = true;
    let raw = raw(&email)?;
    let traps = traps(&raw);
    assert_eq!(traps.len(), 1, "{raw}");
    assert_eq!(traps[0].sent_at, email.date);
    assert_eq!(traps[0].action.message_id(), email.message_id);
    let (text, html) = raw
        .split_once("Content-Type: text/html")
        .unwrap_or_else(|| panic!("no HTML part"));
    assert!(!text.contains("aria-hidden"), "the text part has no trap");
    assert!(
        html.contains("style=\"display:none\" aria-hidden=\"true\" tabindex=\"-1\"></a>"),
        "{html}"
    );
    Ok(())
}

#[test]
fn html_content_keeps_markup_and_escapes_values() -> Result<(), ComposeError> {
    let mut email = email();
    email.content = "<p>Hi {{first_name}}, <a href=\"https://example.com/a?x=1&amp;y=2\">pricing</a> <a href=\"mailto:a@b.c\">mail</a> <a href=\"#top\">top</a></p>".into();
    email.contact.first_name = Some("<b>Ada</b>".to_owned());
    email.tracking.click = true;
    let raw = raw(&email)?;
    assert!(
        raw.contains("<p>Hi &lt;b&gt;Ada&lt;/b&gt;, <a href=\"https://track.example.com/c/"),
        "{raw}"
    );
    assert!(
        raw.contains("<a href=\"mailto:a@b.c\">mail</a> <a href=\"#top\">top</a>"),
        "{raw}"
    );
    assert!(
        raw.contains("Hi <b>Ada</b>, pricing (https://track.example.com/c/"),
        "{raw}"
    );
    let urls: Vec<String> = tokens(&raw, "c")
        .into_iter()
        .filter_map(|action| match action {
            TrackingAction::Click { url, .. } => Some(url),
            _ => None,
        })
        .collect();
    assert_eq!(
        urls,
        [
            "https://example.com/a?x=1&y=2",
            "https://example.com/a?x=1&y=2"
        ]
    );
    Ok(())
}

#[test]
fn the_open_pixel_is_there_only_when_enabled() -> Result<(), ComposeError> {
    let mut email = email();
    assert!(!raw(&email)?.contains("/o/"));
    email.tracking.open = true;
    let raw = raw(&email)?;
    assert!(raw.contains(&format!("<img src=\"{BASE}/o/")), "{raw}");
    assert!(raw.contains("\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">"));
    assert_eq!(tokens(&raw, "o").len(), 1);
    Ok(())
}

#[test]
fn follow_ups_reply_in_the_thread() -> Result<(), ComposeError> {
    let mut email = email();
    email.thread = Some(Thread {
        first_subject: "Question for {{first_name}}".into(),
        first_message_id: Uuid::from_u128(9),
        references: vec![
            "<m1@sender.example>".to_owned(),
            "<m2@sender.example>".to_owned(),
        ],
    });
    let raw = raw(&email)?;
    assert_eq!(header(&raw, "Subject"), ["Re: Question for Ada"]);
    assert_eq!(header(&raw, "In-Reply-To"), ["<m2@sender.example>"]);
    assert_eq!(
        header(&raw, "References"),
        ["<m1@sender.example> <m2@sender.example>"]
    );

    email.thread = Some(Thread {
        first_subject: "Re: earlier".into(),
        first_message_id: Uuid::from_u128(9),
        references: vec![],
    });
    let raw = self::raw(&email)?;
    assert_eq!(header(&raw, "Subject"), ["Re: earlier"]);
    assert!(header(&raw, "In-Reply-To").is_empty());
    Ok(())
}

#[test]
fn spintax_is_stable_for_a_message_and_varies_between_messages() -> Result<(), ComposeError> {
    let mut email = email();
    let body = |raw: &str| raw.split("\n\n").skip(1).collect::<Vec<_>>().join("");
    let strip_boundaries = |raw: &str| {
        raw.lines()
            .filter(|line| !line.starts_with("--") && !line.contains("boundary="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = strip_boundaries(&raw(&email)?);
    assert_eq!(first, strip_boundaries(&raw(&email)?));
    let mut renderings = std::collections::BTreeSet::new();
    for id in 0..20 {
        email.message_id = Uuid::from_u128(id);
        renderings.insert(body(&strip_boundaries(&raw(&email)?)));
    }
    assert!(renderings.len() > 1);
    Ok(())
}

#[test]
fn line_breaks_never_make_headers() -> Result<(), ComposeError> {
    let mut email = email();
    email.subject = "Hi {{first_name}}".into();
    email.contact.first_name = Some("Ada\r\nBcc: victim@example.com".to_owned());
    email.from.name = Some("Grace\r\nBcc: x@example.com".to_owned());
    email.to.name = Some("Ada\nBcc: y@example.com\r\n".to_owned());
    email.message_id_header = "<m3@sender.example>\r\nBcc: z@example.com".to_owned();
    let raw = raw(&email)?;
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head.to_ascii_lowercase().contains("\r\nbcc:") && !head.starts_with("Bcc"),
        "{head}"
    );
    assert_eq!(header(&raw, "Subject"), ["Hi Ada Bcc: victim@example.com"]);
    Ok(())
}

#[test]
fn bad_addresses_and_urls_are_typed_errors() {
    let mut bad_to = email();
    bad_to.to.address = "ada@example.com>\r\nBcc: x@example.com".to_owned();
    assert!(matches!(
        compose(&bad_to, &signer()),
        Err(ComposeError::InvalidAddress { field: "to", .. })
    ));
    let mut bad_from = email();
    bad_from.from.address = "not an address".to_owned();
    assert!(matches!(
        compose(&bad_from, &signer()),
        Err(ComposeError::InvalidAddress { field: "from", .. })
    ));
    let mut bad_base = email();
    bad_base.tracking.base_url = "javascript:alert(1)".to_owned();
    assert!(matches!(
        compose(&bad_base, &signer()),
        Err(ComposeError::InvalidTrackingBaseUrl)
    ));
    let mut bad_template = email();
    bad_template.content = "Hi {frist_name".into();
    assert!(matches!(
        compose(&bad_template, &signer()),
        Err(ComposeError::Template {
            part: "content",
            ..
        })
    ));
}

#[test]
fn a_variable_without_a_value_or_fallback_holds_the_email() {
    let missing = |email: &Email| match compose(email, &signer()) {
        Err(ComposeError::MissingVariable { name }) => Some(name),
        Err(other) => panic!("{other}"),
        Ok(_) => None,
    };
    assert_eq!(
        missing(&email()),
        None,
        "{{company|our team}} has a fallback"
    );
    let mut no_name = email();
    no_name.contact.first_name = None;
    assert_eq!(missing(&no_name).as_deref(), Some("first_name"), "subject");
    let mut body = email();
    body.content = "About {{company}}".into();
    assert_eq!(missing(&body).as_deref(), Some("company"), "body");
    assert_eq!(
        ComposeError::MissingVariable {
            name: "company".into()
        }
        .to_string(),
        "missing_variable: company",
        "the reason the enrollment pauses with"
    );
}

#[test]
fn the_tracked_html_of_text_content_is_what_rewriting_its_links_gives() {
    let texts = [
        "See https://a.example/x?y=1&z=2. Or (http://b.example/p), HTTPS://C.example!\nwww.d.example, https://e.example/'q' and https://a.example/x?y=1&z=2 again",
        "Hi <Ada> & co,\nsee https://a.example/?x=1&amp;y=2.\n\n\nBye http://x https://",
        "no links at all\r\n\r\njust text & <tags> \"quoted\"",
        "https://a-very-long-url.example/path/that/is/not/tracked?because=it&is=long",
    ];
    // Long URLs stay as they are, as `Tokens::click` leaves those too long for a token.
    let track = |url: &str| (url.len() < 40).then(|| format!("https://t.example/c/{}", url.len()));
    for text in texts {
        for url_text_links in [false, true] {
            let html = body::text_to_html(text);
            let expected = links::rewrite_html(&html, url_text_links, track);
            let direct = body::text_to_html_with(text, |url| {
                (url_text_links || !links::looks_like_url(url))
                    .then(|| track(url))
                    .flatten()
            });
            assert_eq!(
                direct, expected,
                "{text:?}, url_text_links {url_text_links}"
            );
            assert_eq!(document::fragment(&direct), document::document(&direct));
        }
    }
}

/// The `Content-Transfer-Encoding` of the text and the HTML part.
fn transfer_encodings(raw: &str) -> Vec<&str> {
    raw.split("\r\n--")
        .skip(1)
        .flat_map(|part| {
            header(
                part.split_once("\r\n").map_or("", |(_, p)| p),
                "Content-Transfer-Encoding",
            )
        })
        .collect()
}

#[test]
fn ascii_parts_go_as_written_and_others_encoded() -> Result<(), ComposeError> {
    let mut email = email();
    email.tracking = Tracking {
        open: true,
        click: true,
        url_text_links: true,
        unsubscribe_link: true,
        ..email.tracking
    };
    // Lines longer than 76 characters (the HTML's), attributes with `=`, a line of a dot.
    email.content = format!(
        "{}\n.\n{}",
        "Hi {{first_name}}, ".repeat(20),
        email.content.text()
    )
    .into();
    let bytes = compose_bytes(&email, &signer())?;
    let raw = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(transfer_encodings(&raw), ["7bit", "7bit"], "{raw}");
    assert!(
        raw.contains("<a href=\"https://track.example.com/c/"),
        "{raw}"
    );
    assert!(
        raw.contains("\r\n.\r\n"),
        "a dot line is left for SMTP to stuff: {raw}"
    );
    assert!(raw.split("\r\n").all(|line| line.len() <= 998), "{raw}");

    email.contact.first_name = Some("Zoë".to_owned());
    let raw = compose_bytes(&email, &signer())?;
    let raw = String::from_utf8(raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        transfer_encodings(&raw),
        ["quoted-printable", "quoted-printable"],
        "{raw}"
    );
    assert!(raw.contains("Zo=C3=AB"), "{raw}");
    Ok(())
}
