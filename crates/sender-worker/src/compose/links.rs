//! Finding and rewriting links for click tracking. Deliberately simple scanning instead of an
//! HTML parser: only `http(s)` URLs are tracked, so `mailto:`, `tel:` and `#anchors` stay as
//! they are, and whatever is not recognised is left untouched rather than broken.

use std::ops::Range;

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

/// `html` with each quoted `href` holding an `http(s)` URL replaced by `track(url)`. The URL
/// given to `track` is the attribute's value with HTML entities decoded (`&amp;` is `&` to
/// the browser); the tracked URL needs no escaping (base URL checked, token URL-safe).
pub(super) fn rewrite_html(html: &str, track: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(html.len());
    let mut last = 0;
    for value in hrefs(html) {
        let url = decode_entities(html.get(value.clone()).unwrap_or_default());
        let url = url.trim();
        if !is_http(url) {
            continue;
        }
        if let Some(tracked) = track(url) {
            out.push_str(html.get(last..value.start).unwrap_or_default());
            out.push_str(&tracked);
            last = value.end;
        }
    }
    out.push_str(html.get(last..).unwrap_or_default());
    out
}

/// The decoded value of the first quoted `href` in `tag`.
pub(super) fn first_href(tag: &str) -> Option<String> {
    let range = hrefs(tag).into_iter().next()?;
    Some(decode_entities(tag.get(range)?).trim().to_owned())
}

/// Byte ranges of the values of quoted `href` attributes (without the quotes). Unquoted
/// values are skipped: rare, and not worth guessing where they end.
fn hrefs(html: &str) -> Vec<Range<usize>> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = lower.get(from..).and_then(|rest| rest.find("href")) {
        let at = from + offset;
        from = at + 4;
        let preceded_by_space = lower
            .get(..at)
            .and_then(|before| before.chars().next_back())
            .is_some_and(char::is_whitespace);
        if !preceded_by_space {
            continue;
        }
        let after = lower.get(from..).unwrap_or_default();
        let eq = after.len() - after.trim_start().len();
        if after.get(eq..eq + 1) != Some("=") {
            continue;
        }
        let after_eq = after.get(eq + 1..).unwrap_or_default();
        let space = after_eq.len() - after_eq.trim_start().len();
        let value_start = from + eq + 1 + space;
        let quote = match html.get(value_start..value_start + 1) {
            Some(quote @ ("\"" | "'")) => quote,
            _ => continue,
        };
        let Some(len) = html
            .get(value_start + 1..)
            .and_then(|rest| rest.find(quote))
        else {
            break;
        };
        found.push(value_start + 1..value_start + 1 + len);
        from = value_start + 1 + len + 1;
    }
    found
}

fn next_scheme(text: &str, from: usize) -> Option<usize> {
    let lower = text.get(from..)?.to_ascii_lowercase();
    let mut search = 0;
    while let Some(offset) = lower.get(search..)?.find("http") {
        let at = search + offset;
        let rest = lower.get(at..).unwrap_or_default();
        let starts_word = lower
            .get(..at)
            .and_then(|before| before.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric());
        let on_boundary = text.is_char_boundary(from + at);
        if starts_word
            && on_boundary
            && (rest.starts_with("http://") || rest.starts_with("https://"))
        {
            return Some(from + at);
        }
        search = at + 4;
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

/// The entities the template engine writes and the usual numeric forms; anything else stays.
pub(super) fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let tail = rest.get(at..).unwrap_or_default();
        let decoded = tail.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = tail.get(1..end)?;
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => '\u{a0}',
                _ => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = tail.get(len..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
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
    fn rewrites_only_http_hrefs() {
        let html = r##"<a href="https://a.example/?x=1&amp;y=2">A</a> <a class=x HREF='http://b.example'>B</a> <a href="mailto:a@b.c">M</a> <a href="tel:1">T</a> <a href="#top">T</a> <a data-href="https://no.example">N</a>"##;
        let out = rewrite_html(html, |url| Some(format!("[{url}]")));
        assert_eq!(
            out,
            r##"<a href="[https://a.example/?x=1&y=2]">A</a> <a class=x HREF='[http://b.example]'>B</a> <a href="mailto:a@b.c">M</a> <a href="tel:1">T</a> <a href="#top">T</a> <a data-href="https://no.example">N</a>"##
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
        let html = r#"<a href="https://a.example">"#;
        assert_eq!(rewrite_html(html, |_| None), html);
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            decode_entities("a&amp;b&lt;&#39;&#x41;&bogus;&"),
            "a&b<'A&bogus;&"
        );
    }
}
