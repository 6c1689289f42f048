//! The HTML of plain-text content, and the footer, trap link and open pixel appended to the
//! bodies. (The text of HTML content is [`super::text_part`].)

use super::html::escape;
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
    let text = text.replace("\r\n", "\n");
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|paragraph| paragraph.trim_matches('\n'))
        .filter(|paragraph| !paragraph.trim().is_empty())
        .map(|paragraph| {
            let lines: Vec<String> = paragraph.split('\n').map(linkify).collect();
            format!("<p>{}</p>", lines.join("<br>\n"))
        })
        .collect();
    paragraphs.join("\n")
}

/// A line of plain text, escaped, with its URLs made links.
fn linkify(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    for range in find_urls(line) {
        out.push_str(&escape(line.get(last..range.start).unwrap_or_default()));
        let url = escape(line.get(range.clone()).unwrap_or_default());
        out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        last = range.end;
    }
    out.push_str(&escape(line.get(last..).unwrap_or_default()));
    out
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
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(at) if html.is_char_boundary(at) => format!(
            "{}{addition}\n{}",
            html.get(..at).unwrap_or_default(),
            html.get(at..).unwrap_or_default()
        ),
        _ => format!("{}\n{addition}\n", html.trim_end()),
    }
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
