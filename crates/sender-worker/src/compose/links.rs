//! Finding and rewriting links for click tracking. Only `http(s)` URLs are tracked, so
//! `mailto:`, `tel:` and `#anchors` stay as they are; HTML is read with the tokenizer and
//! changed in place (only the `href` values and the linked URLs), so the author's markup
//! is otherwise sent as written.

use std::ops::Range;

use html5gum::Token;

use super::html::{attribute, decode, escape, name, splice, tokens, value_range};

/// Byte ranges of the bare `http://` and `https://` URLs in `text`: from the scheme, which
/// must start a word, to the next whitespace, angle bracket or quote, without trailing
/// punctuation that usually ends the sentence rather than the URL.
pub(super) fn find_urls(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = next_scheme(text, from) {
        let rest = text.get(start..).unwrap_or_default();
        let len = rest
            .find(|c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(rest.len());
        let url = rest.get(..len).unwrap_or_default();
        let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '\'']);
        let end = start + len;
        if has_host(trimmed) {
            found.push(start..start + trimmed.len());
        }
        from = end.max(start + 1);
    }
    found
}

/// `text` with each bare URL replaced by `track(url)`, where it gives one.
pub(super) fn rewrite_text(text: &str, track: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in find_urls(text) {
        let url = text.get(range.clone()).unwrap_or_default();
        if let Some(tracked) = track(url) {
            out.push_str(text.get(last..range.start).unwrap_or_default());
            out.push_str(&tracked);
            last = range.end;
        }
    }
    out.push_str(text.get(last..).unwrap_or_default());
    out
}

/// `html` with the `href` of each `http(s)` link replaced by `track(url)`, where it gives one,
/// except a link whose visible text is a URL or a domain ([`looks_like_url`]) unless
/// `url_text_links`: a tracker URL behind a visible URL is what filters score as a spoofed
/// link. The URL given to `track` is the attribute's decoded value (`&amp;` is `&` to the
/// browser); the tracked URL needs no escaping (base URL checked, token URL-safe).
pub(super) fn rewrite_html(
    html: &str,
    url_text_links: bool,
    track: impl Fn(&str) -> Option<String>,
) -> String {
    struct Open {
        value: Range<usize>,
        url: String,
        text: String,
    }
    let mut edits = Vec::new();
    let mut decide = |open: Open| {
        if (url_text_links || !looks_like_url(&open.text))
            && let Some(tracked) = track(&open.url)
        {
            edits.push((open.value, tracked));
        }
    };
    let mut open: Option<Open> = None;
    for token in tokens(html) {
        match token {
            Token::StartTag(tag) if name(&tag.name) == "a" => {
                if let Some(previous) = open.take() {
                    decide(previous);
                }
                let url = attribute(&tag, "href").unwrap_or_default();
                let url = url.trim();
                if is_http(url)
                    && let Some(value) = value_range(html, &tag, "href")
                {
                    open = Some(Open {
                        value,
                        url: url.to_owned(),
                        text: String::new(),
                    });
                }
            }
            Token::String(text) => {
                if let Some(open) = &mut open {
                    open.text.push_str(&String::from_utf8_lossy(&text.value));
                }
            }
            Token::EndTag(tag) if name(&tag.name) == "a" => {
                if let Some(previous) = open.take() {
                    decide(previous);
                }
            }
            _ => {}
        }
    }
    if let Some(previous) = open.take() {
        decide(previous);
    }
    splice(html, &edits)
}

/// `html` with the bare `http(s)` URLs of its text made links to themselves (not inside a
/// link, a script, a style or the title), so that tracking them treats both parts alike.
pub(super) fn linkify_html(html: &str) -> String {
    const NOT_HERE: [&str; 6] = ["a", "script", "style", "title", "textarea", "head"];
    let mut edits = Vec::new();
    let mut inside: Vec<String> = Vec::new();
    for token in tokens(html) {
        match token {
            Token::StartTag(tag) if !tag.self_closing => {
                let tag = name(&tag.name);
                if tag == "body" {
                    // `</head>` is optional.
                    inside.retain(|open| open != "head");
                }
                if NOT_HERE.contains(&tag.as_str()) {
                    inside.push(tag);
                }
            }
            Token::EndTag(tag) => {
                let tag = name(&tag.name);
                if let Some(at) = inside.iter().rposition(|open| *open == tag) {
                    inside.truncate(at);
                }
            }
            Token::String(text) if inside.is_empty() => {
                let span = text.span.start..text.span.end;
                let raw = html.get(span.clone()).unwrap_or_default();
                for range in find_urls(raw) {
                    let shown = raw.get(range.clone()).unwrap_or_default();
                    let href = escape(decode(shown).trim());
                    edits.push((
                        span.start + range.start..span.start + range.end,
                        format!("<a href=\"{href}\">{shown}</a>"),
                    ));
                }
            }
            _ => {}
        }
    }
    splice(html, &edits)
}

/// Whether a link's visible text reads as a URL or a domain (`https://x.example/a`,
/// `www.x.example`, `x.example/pricing`), as filters that compare it with the link's target
/// read it. A text with spaces is prose; a name like `Node.js` counts as a domain, which only
/// leaves such a link untracked.
pub(super) fn looks_like_url(text: &str) -> bool {
    let text = text
        .trim_matches(|c: char| c.is_whitespace() || c == '<' || c == '>')
        .to_lowercase();
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return false;
    }
    if let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    {
        return has_host(&format!("x://{rest}"));
    }
    if text.contains('@') {
        return false;
    }
    let host = text
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let valid_labels = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    let tld = labels.last().copied().unwrap_or_default();
    valid_labels
        && (tld.starts_with("xn--")
            || (tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)))
}

/// Whether a link's text names its target: equal but for the scheme (`mailto:` included), a
/// trailing slash and letter case.
pub(super) fn same_destination(text: &str, href: &str) -> bool {
    fn bare(url: &str) -> String {
        let url = url
            .trim_matches(|c: char| c.is_whitespace() || c == '<' || c == '>')
            .to_lowercase();
        let url = ["https://", "http://", "mailto:"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .unwrap_or(&url);
        url.trim_end_matches('/').to_owned()
    }
    let text = bare(text);
    !text.is_empty() && text == bare(href)
}

fn next_scheme(text: &str, from: usize) -> Option<usize> {
    // Compared in place, ignoring ASCII case, rather than on a lowercased copy of the rest of
    // the text per call. Every `h` is ASCII, so each candidate is a char boundary.
    let rest = text.get(from..)?;
    let bytes = rest.as_bytes();
    let starts = |at: usize, prefix: &str| {
        bytes
            .get(at..at + prefix.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    let mut at = 0;
    while at + 4 <= bytes.len() {
        // Skip to the next `h` or `H` in one tight loop: most of a body is not a URL.
        at += bytes
            .get(at..)
            .and_then(|b| b.iter().position(|&b| b | 0x20 == b'h'))?;
        if !starts(at, "http") {
            at += 1;
            continue;
        }
        let starts_word = rest
            .get(..at)
            .and_then(|before| before.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric());
        if starts_word
            && text.is_char_boundary(from + at)
            && (starts(at, "http://") || starts(at, "https://"))
        {
            return Some(from + at);
        }
        at += 4;
    }
    None
}

fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && has_host(url)
}

/// A scheme followed by something: `https://` alone is not a link.
fn has_host(url: &str) -> bool {
    url.find("://")
        .and_then(|at| url.get(at + 3..))
        .is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find_urls(text)
            .into_iter()
            .map(|range| text.get(range).unwrap_or_default())
            .collect()
    }

    #[test]
    fn finds_bare_urls_without_sentence_punctuation() {
        assert_eq!(
            urls("See https://a.example/x?y=1&z=2. Or (http://b.example/p), HTTPS://C.example!"),
            [
                "https://a.example/x?y=1&z=2",
                "http://b.example/p",
                "HTTPS://C.example"
            ]
        );
        assert_eq!(urls("<https://a.example>"), ["https://a.example"]);
        assert!(urls("mailto:a@b.c tel:+1 #top xhttps://a.example https:// ünï").is_empty());
    }

    #[test]
    fn schemes_are_found_in_any_case_after_any_non_word_character() {
        assert_eq!(
            urls("éhttps://no.example —HtTpS://y.example httphttp://z.example ÜHTTP://w.example"),
            ["HtTpS://y.example"]
        );
        assert_eq!(
            urls("ça:http://a.example\nhttp://b.example"),
            ["http://a.example", "http://b.example"]
        );
    }

    #[test]
    fn rewrites_only_http_hrefs() {
        let html = r##"<a href="https://a.example/?x=1&amp;y=2">A</a> <a class=x HREF='http://b.example'>B</a> <a href=https://u.example/>U</a> <a href="mailto:a@b.c">M</a> <a href="tel:1">T</a> <a href="#top">T</a> <a data-href="https://no.example">N</a>"##;
        let out = rewrite_html(html, false, |url| Some(format!("[{url}]")));
        assert_eq!(
            out,
            r##"<a href="[https://a.example/?x=1&y=2]">A</a> <a class=x HREF='[http://b.example]'>B</a> <a href=[https://u.example/]>U</a> <a href="mailto:a@b.c">M</a> <a href="tel:1">T</a> <a href="#top">T</a> <a data-href="https://no.example">N</a>"##
        );
    }

    #[test]
    fn links_track_declines_stay() {
        assert_eq!(
            rewrite_text("go https://a.example now", |_| None),
            "go https://a.example now"
        );
        assert_eq!(
            rewrite_text("go https://a.example now", |_| Some("T".into())),
            "go T now"
        );
        let html = r#"<a href="https://a.example">A</a>"#;
        assert_eq!(rewrite_html(html, true, |_| None), html);
    }

    #[test]
    fn links_showing_a_url_stay_unless_forced() {
        let html = r#"<a href="https://docs.example.com">https://docs.example.com</a> <a href="https://a.example/x"> <b>www.a.example</b> </a> <a href="https://b.example/y">b.example/y</a> <a href="https://c.example">Pricing</a> <a href="https://d.example"><img src="x" alt="d.example"></a>"#;
        assert_eq!(
            rewrite_html(html, false, |_| Some("T".into())),
            r#"<a href="https://docs.example.com">https://docs.example.com</a> <a href="https://a.example/x"> <b>www.a.example</b> </a> <a href="https://b.example/y">b.example/y</a> <a href="T">Pricing</a> <a href="T"><img src="x" alt="d.example"></a>"#
        );
        assert_eq!(
            rewrite_html(html, true, |_| Some("T".into()))
                .matches("href=\"T\"")
                .count(),
            5
        );
    }

    #[test]
    fn recognises_url_and_domain_texts() {
        for url in [
            "https://docs.example.com",
            " HTTP://Docs.Example.com/a?b=1 ",
            "<https://a.example>",
            "www.example.com",
            "example.com",
            "docs.example.co.uk/pricing",
            "bücher.example",
            "example.xn--p1ai",
        ] {
            assert!(looks_like_url(url), "{url}");
        }
        for text in [
            "",
            "Pricing",
            "see example.com",
            "ada@example.com",
            "https://",
            "v1.2",
            "e.g.",
            "3.14",
            "a..b",
        ] {
            assert!(!looks_like_url(text), "{text}");
        }
    }

    #[test]
    fn a_text_names_its_destination_but_for_scheme_slash_and_case() {
        assert!(same_destination("https://b.example", "https://b.example/"));
        assert!(same_destination("B.example", "http://b.example"));
        assert!(same_destination(
            "ada@example.com",
            "mailto:ada@example.com"
        ));
        assert!(!same_destination("pricing", "https://b.example"));
        assert!(!same_destination(
            "https://b.example",
            "https://t.example/c/x"
        ));
        assert!(!same_destination("", ""));
    }

    #[test]
    fn bare_urls_in_html_text_become_links_elsewhere_left_alone() {
        let html = r#"<p>See https://a.example/?x=1&amp;y=2. or <a href="https://b.example">https://b.example</a></p><script>var u = "https://c.example";</script><p title="https://d.example">x</p>"#;
        assert_eq!(
            linkify_html(html),
            r#"<p>See <a href="https://a.example/?x=1&amp;y=2">https://a.example/?x=1&amp;y=2</a>. or <a href="https://b.example">https://b.example</a></p><script>var u = "https://c.example";</script><p title="https://d.example">x</p>"#
        );
    }
}
