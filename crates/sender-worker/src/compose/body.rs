//! The two bodies of an email from one content template: plain text to HTML, or HTML to text,
//! plus the footer and open pixel appended to them.

use domain::templates::Template;

use super::Email;
use super::links::{decode_entities, find_urls, first_href};

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

/// `(text, html)` of the content for this message.
pub(super) fn render(
    content: &Template,
    email: &Email,
    seed: u64,
    html_source: bool,
) -> (String, String) {
    if html_source {
        let html = content.render_html(&email.contact, seed);
        (html_to_text(&html), html)
    } else {
        let text = content.render(&email.contact, seed);
        let html = text_to_html(&text);
        (text, html)
    }
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
        escape_into(&mut out, line.get(last..range.start).unwrap_or_default());
        let mut url = String::new();
        escape_into(&mut url, line.get(range.clone()).unwrap_or_default());
        out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        last = range.end;
    }
    escape_into(&mut out, line.get(last..).unwrap_or_default());
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A readable text part of an HTML body: tags dropped, block ends as line breaks, a link's
/// target after its label, entities decoded. Not a renderer: good enough for the clients and
/// spam filters that read the text part.
pub(super) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut href: Option<String> = None;
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(rest.get(..open).unwrap_or_default()));
        let tail = rest.get(open..).unwrap_or_default();
        let Some(close) = tail.find('>') else {
            out.push_str(&decode_entities(tail));
            rest = "";
            break;
        };
        let tag = tail.get(1..close).unwrap_or_default().to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let closing = tag.starts_with('/');
        match (name.as_str(), closing) {
            ("br", _) => out.push('\n'),
            (
                "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote",
                true,
            ) => {
                out.push('\n');
            }
            ("a", false) => {
                href = first_href(tail.get(1..close).unwrap_or_default());
            }
            ("a", true) => {
                if let Some(url) = href.take()
                    && !out.ends_with(&url)
                {
                    out.push_str(&format!(" ({url})"));
                }
            }
            _ => {}
        }
        rest = tail.get(close + 1..).unwrap_or_default();
    }
    out.push_str(&decode_entities(rest));
    collapse_blank_lines(&out)
}

fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
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
    fn html_becomes_readable_text() {
        let html = "<p>Hi Ada &amp; co,<br>see <a href=\"https://a.example/?x=1&amp;y=2\">pricing</a></p>\n\n<p>Bye <a href='https://b.example'>https://b.example</a></p>";
        assert_eq!(
            html_to_text(html),
            "Hi Ada & co,\nsee pricing (https://a.example/?x=1&y=2)\n\nBye https://b.example\n"
        );
    }

    #[test]
    fn additions_go_before_the_body_end() {
        assert_eq!(append_html("<body>x</BODY>", "P"), "<body>xP\n</BODY>");
        assert_eq!(append_html("<p>x</p>\n", "P"), "<p>x</p>\nP\n");
    }
}
