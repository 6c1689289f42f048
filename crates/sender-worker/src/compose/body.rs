//! The HTML of plain-text content, and the footer, trap link and open pixel appended to the
//! bodies. (The text of HTML content is [`super::text_part`].)

use domain::templates::push_html_escaped;

use super::links::find_urls;

/// Tags that mark content as HTML. Plain text rarely contains `<p>` or `<br>`, while a
/// comparison such as `a <b` or an address in angle brackets is not one of these.
const HTML_TAGS: [&str; 28] = [
    "a",
    "b",
    "i",
    "u",
    "p",
    "br",
    "hr",
    "div",
    "span",
    "strong",
    "em",
    "ul",
    "ol",
    "li",
    "table",
    "tr",
    "td",
    "img",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "html",
    "body",
    "blockquote",
    "font",
];

/// Whether the content is HTML: it has an opening or closing tag from [`HTML_TAGS`].
pub(super) fn looks_like_html(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.match_indices('<').any(|(at, _)| {
        let rest = lower.get(at + 1..).unwrap_or_default();
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let ends = rest
            .get(name_len..)
            .and_then(|after| after.chars().next())
            .is_some_and(|c| c == '>' || c == '/' || c.is_ascii_whitespace());
        ends && rest
            .get(..name_len)
            .is_some_and(|name| HTML_TAGS.contains(&name))
    })
}

/// Escaped text, URLs as links, blank lines as paragraphs and single line breaks as `<br>`.
/// One paragraph per line of output keeps lines short, so the part stays 7bit when ASCII.
pub(super) fn text_to_html(text: &str) -> String {
    text_to_html_with(text, |_| None)
}

/// [`text_to_html`] with the `href` of each link replaced by `href(url)` where it gives one
/// (inserted as it is, like [`super::links::rewrite_html`] does): every link of this HTML is
/// its own URL, so the tracked HTML is written at once rather than tokenized again to find
/// the links.
pub(super) fn text_to_html_with(text: &str, href: impl Fn(&str) -> Option<String>) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let paragraphs = text
        .split("\n\n")
        .map(|paragraph| paragraph.trim_matches('\n'))
        .filter(|paragraph| !paragraph.trim().is_empty());
    for (index, paragraph) in paragraphs.enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str("<p>");
        for (index, line) in paragraph.split('\n').enumerate() {
            if index > 0 {
                out.push_str("<br>\n");
            }
            linkify_into(&mut out, line, &href);
        }
        out.push_str("</p>");
    }
    out
}

/// A line of plain text, escaped, with its URLs made links.
fn linkify_into(out: &mut String, line: &str, href: &impl Fn(&str) -> Option<String>) {
    let mut last = 0;
    for range in find_urls(line) {
        push_html_escaped(out, line.get(last..range.start).unwrap_or_default());
        let url = line.get(range.clone()).unwrap_or_default();
        out.push_str("<a href=\"");
        match href(url) {
            Some(tracked) => out.push_str(&tracked),
            None => push_html_escaped(out, url),
        }
        out.push_str("\">");
        push_html_escaped(out, url);
        out.push_str("</a>");
        last = range.end;
    }
    push_html_escaped(out, line.get(last..).unwrap_or_default());
}

pub(super) fn append_text_footer(text: &str, unsubscribe_url: &str) -> String {
    format!("{}\n\nUnsubscribe: {unsubscribe_url}\n", text.trim_end())
}

pub(super) fn html_footer(unsubscribe_url: &str) -> String {
    format!(
        "<p style=\"font-size:12px;color:#888888\"><a href=\"{unsubscribe_url}\">Unsubscribe</a></p>"
    )
}

pub(super) fn pixel(url: &str) -> String {
    format!("<img src=\"{url}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">")
}

/// A link hidden from people (not displayed, not announced, not focusable, no text), for the
/// scanners that follow every `href`.
pub(super) fn trap_link(url: &str) -> String {
    format!("<a href=\"{url}\" style=\"display:none\" aria-hidden=\"true\" tabindex=\"-1\"></a>")
}

/// `html` with `addition` before `</body>` when there is one, at the end otherwise.
pub(super) fn append_html(html: &str, addition: &str) -> String {
    match rfind_ignore_ascii_case(html, "</body>") {
        Some(at) if html.is_char_boundary(at) => format!(
            "{}{addition}\n{}",
            html.get(..at).unwrap_or_default(),
            html.get(at..).unwrap_or_default()
        ),
        _ => format!("{}\n{addition}\n", html.trim_end()),
    }
}

/// Where the last `needle` (ASCII) starts in `haystack`, ignoring ASCII case: what
/// `haystack.to_ascii_lowercase().rfind(needle)` says, without the copy.
fn rfind_ignore_ascii_case(haystack: &str, needle: &str) -> Option<usize> {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    (0..=haystack.len().checked_sub(needle.len())?)
        .rev()
        .find(|&at| {
            haystack
                .get(at..at + needle.len())
                .is_some_and(|window| window.eq_ignore_ascii_case(needle))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_html_by_its_tags() {
        for html in [
            "<p>Hi</p>",
            "Hi<br>there",
            "Hi<BR/>",
            "<a href=\"x\">x</a>",
            "a</div>",
        ] {
            assert!(looks_like_html(html), "{html}");
        }
        for text in [
            "Hi",
            "x <y and z> w",
            "Write to <ada@example.com>",
            "x < 3",
            "<3",
        ] {
            assert!(!looks_like_html(text), "{text}");
        }
    }

    #[test]
    fn text_becomes_escaped_paragraphs_with_links() {
        assert_eq!(
            text_to_html("Hi <Ada> & co,\nsee https://a.example/?x=1&y=2.\n\n\nBye"),
            "<p>Hi &lt;Ada&gt; &amp; co,<br>\nsee <a href=\"https://a.example/?x=1&amp;y=2\">https://a.example/?x=1&amp;y=2</a>.</p>\n<p>Bye</p>"
        );
    }

    #[test]
    fn additions_go_before_the_body_end() {
        assert_eq!(append_html("<body>x</BODY>", "P"), "<body>xP\n</BODY>");
        assert_eq!(append_html("<p>x</p>\n", "P"), "<p>x</p>\nP\n");
    }
}
