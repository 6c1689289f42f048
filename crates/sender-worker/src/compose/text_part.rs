//! The text part of an HTML body: what a reader of the HTML sees, laid out as plain text.
//! Blocks (paragraphs, headings, lists, quotes, table rows) are separated by a blank line,
//! `<br>` breaks a line, list items are `- item` / `1. item` lines, quotes are `> ` lines,
//! a link reads `text (url)` unless its text is the URL, whitespace collapses as in HTML and
//! what the HTML does not show (head, scripts, styles, `display:none`) is left out.
//!
//! Written here rather than taken from `html2text`: that crate lays text out for a terminal
//! (wrapping at a width, links as numbered footnotes, tables drawn with borders, headings and
//! lists without the blank lines an email reader expects), and bending it would take more code
//! than this layout on top of a standard tokenizer.

use html5gum::{StartTag, Token};

use super::html::{attribute, name, tokens};
use super::links::same_destination;

/// Elements laid out as blocks: a blank line before and after.
const BLOCKS: [&str; 30] = [
    "p",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "tr",
    "caption",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "figure",
    "figcaption",
    "address",
    "form",
    "fieldset",
    "center",
    "dl",
    "details",
    "summary",
];

/// Elements whose content is never shown.
const UNSEEN: [&str; 6] = ["head", "title", "script", "style", "template", "noscript"];

/// Elements without content (no end tag to wait for).
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// The readable text of `html`, ending with a line break (empty for an empty body).
pub(super) fn html_to_text(html: &str) -> String {
    match layout(html, true) {
        Some(text) => text,
        // A hidden element that is never closed would hide the rest: show everything instead.
        None => layout(html, false).unwrap_or_default(),
    }
}

/// `None` when `skip_hidden` and an element hidden by its style never ends.
fn layout(html: &str, skip_hidden: bool) -> Option<String> {
    let mut writer = Writer::default();
    // The element being skipped and how deep inside same-named elements we are.
    let mut skipping: Option<(String, usize)> = None;
    for token in tokens(html) {
        if let Some((skipped, depth)) = &mut skipping {
            match &token {
                Token::StartTag(tag) if !tag.self_closing && name(&tag.name) == *skipped => {
                    *depth += 1;
                }
                Token::EndTag(tag) if name(&tag.name) == *skipped => {
                    *depth -= 1;
                    if *depth == 0 {
                        skipping = None;
                    }
                }
                _ => {}
            }
            continue;
        }
        match token {
            Token::String(text) => writer.text(&String::from_utf8_lossy(&text.value)),
            Token::StartTag(tag) => {
                let tag_name = name(&tag.name);
                let has_end = !tag.self_closing && !VOID.contains(&tag_name.as_str());
                // `<head>` is left to its unseen children: its end tag is optional.
                let unseen = UNSEEN.contains(&tag_name.as_str()) && tag_name != "head";
                if has_end && (unseen || (skip_hidden && hidden(&tag))) {
                    skipping = Some((tag_name, 1));
                } else {
                    writer.start(&tag_name, &tag);
                }
            }
            Token::EndTag(tag) => writer.end(&name(&tag.name)),
            _ => {}
        }
    }
    match skipping {
        Some((skipped, _)) if skip_hidden && !UNSEEN.contains(&skipped.as_str()) => None,
        _ => Some(writer.finish()),
    }
}

/// Hidden by its attributes: `hidden`, or a style with `display:none` (preheaders) or
/// Outlook's `mso-hide:all`.
fn hidden(tag: &StartTag<usize>) -> bool {
    let style: String = attribute(tag, "style")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    tag.attributes.contains_key(b"hidden".as_slice())
        || style.contains("display:none")
        || style.contains("mso-hide:all")
}

#[derive(Debug)]
struct List {
    ordered: bool,
    next: i64,
}

#[derive(Debug)]
struct Link {
    href: String,
    text: String,
}

#[derive(Debug, Default)]
struct Writer {
    out: String,
    /// The current line, its prefix (quote marks, list indent) included.
    line: String,
    /// Length of the current line's prefix; 0 with `started` false before anything is on it.
    prefix_len: usize,
    started: bool,
    /// Line ends owed before the next content: 1 ends the line, 2 leaves a blank line.
    breaks: usize,
    /// Collapsed whitespace owed before the next content on the same line.
    space: bool,
    quote: usize,
    lists: Vec<List>,
    /// The marker (`- `, `3. `) of a list item whose first line is still to come.
    marker: Option<String>,
    /// Width of the innermost item's marker, to indent its continuation lines.
    item_indent: usize,
    pre: usize,
    /// Right after `<pre>`, whose first line break is not content.
    pre_start: bool,
    link: Option<Link>,
}

impl Writer {
    fn start(&mut self, tag: &str, attributes: &StartTag<usize>) {
        match tag {
            "br" => self.breaks += 1,
            "ul" | "ol" => {
                self.block_break(if self.lists.is_empty() { 2 } else { 1 });
                let next = attribute(attributes, "start")
                    .and_then(|start| start.trim().parse().ok())
                    .unwrap_or(1);
                self.lists.push(List {
                    ordered: tag == "ol",
                    next,
                });
            }
            "li" => {
                self.block_break(1);
                let marker = match self.lists.last_mut() {
                    Some(list) if list.ordered => {
                        let marker = format!("{}. ", list.next);
                        list.next += 1;
                        marker
                    }
                    _ => "- ".to_owned(),
                };
                self.item_indent = marker.len();
                self.marker = Some(marker);
            }
            "dt" | "dd" => self.block_break(1),
            "td" | "th" => self.space = true,
            "img" => {
                if let Some(alt) = attribute(attributes, "alt") {
                    self.text(&alt);
                }
            }
            "a" => {
                self.finish_link();
                self.link = attribute(attributes, "href").map(|href| Link {
                    href: href.trim().to_owned(),
                    text: String::new(),
                });
            }
            _ if BLOCKS.contains(&tag) => {
                self.block_break(2);
                match tag {
                    "blockquote" => self.quote += 1,
                    "pre" => {
                        self.pre += 1;
                        self.pre_start = true;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: &str) {
        match tag {
            "ul" | "ol" => {
                self.lists.pop();
                self.block_break(if self.lists.is_empty() { 2 } else { 1 });
            }
            "li" | "dt" | "dd" => self.block_break(1),
            "a" => self.finish_link(),
            _ if BLOCKS.contains(&tag) => {
                self.block_break(2);
                match tag {
                    "blockquote" => self.quote = self.quote.saturating_sub(1),
                    "pre" => self.pre = self.pre.saturating_sub(1),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn block_break(&mut self, breaks: usize) {
        self.breaks = self.breaks.max(breaks);
    }

    /// A text node: whitespace collapsed (kept inside `<pre>`).
    fn text(&mut self, text: &str) {
        if self.pre > 0 {
            let text = match self.pre_start {
                true => text.strip_prefix('\n').unwrap_or(text),
                false => text,
            };
            self.pre_start = false;
            for (i, line) in text.replace("\r\n", "\n").split('\n').enumerate() {
                if i > 0 {
                    self.breaks += 1;
                }
                if !line.is_empty() {
                    self.space = false;
                    self.put(line);
                }
            }
            return;
        }
        let mut word = String::new();
        for c in text.chars() {
            if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}') {
                if !word.is_empty() {
                    self.put(&word);
                    word.clear();
                }
                self.space = true;
            } else {
                // A no-break space is content, shown as a space.
                word.push(if c == '\u{a0}' { ' ' } else { c });
            }
        }
        if !word.is_empty() {
            self.put(&word);
        }
    }

    /// Content on the current line, after the line ends and the space it is owed.
    fn put(&mut self, content: &str) {
        if self.breaks > 0 {
            if self.started || !self.out.is_empty() {
                self.end_line();
                // One blank line between blocks, however many `<br>`; `<pre>` keeps its own.
                let blank = match self.pre {
                    0 => self.breaks.min(2) - 1,
                    _ => self.breaks - 1,
                };
                self.out.push_str(&"\n".repeat(blank));
            }
            self.breaks = 0;
            self.space = false;
        }
        if !self.started {
            self.start_line();
        }
        let mut piece = String::new();
        if self.space && self.line.len() > self.prefix_len {
            piece.push(' ');
        }
        self.space = false;
        piece.push_str(content);
        if let Some(link) = &mut self.link {
            link.text.push_str(&piece);
        }
        self.line.push_str(&piece);
    }

    fn start_line(&mut self) {
        let mut prefix = "> ".repeat(self.quote);
        if !self.lists.is_empty() {
            prefix.push_str(&"  ".repeat(self.lists.len() - 1));
            match self.marker.take() {
                Some(marker) => prefix.push_str(&marker),
                None => prefix.push_str(&" ".repeat(self.item_indent)),
            }
        } else if let Some(marker) = self.marker.take() {
            prefix.push_str(&marker);
        }
        self.line = prefix;
        self.prefix_len = self.line.len();
        self.started = true;
    }

    fn end_line(&mut self) {
        self.out.push_str(self.line.trim_end());
        self.out.push('\n');
        self.line.clear();
        self.prefix_len = 0;
        self.started = false;
    }

    /// After a link's text: its target in parentheses, unless the text is the target or the
    /// target is not worth reading (an anchor, a relative path, script).
    fn finish_link(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        let href = link.href;
        let scheme = href
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .filter(|scheme| {
                scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            });
        let shown = match scheme.as_deref() {
            None | Some("javascript" | "data" | "vbscript") => return,
            Some("mailto") => href.get("mailto:".len()..).unwrap_or_default().to_owned(),
            Some(_) => href.clone(),
        };
        let text = link.text.trim();
        if text.is_empty() {
            self.space = true;
            self.put(&shown);
        } else if !same_destination(text, &href) {
            self.space = true;
            self.put(&format!("({shown})"));
        }
    }

    fn finish(mut self) -> String {
        self.finish_link();
        if self.started {
            self.end_line();
        }
        let trimmed = self.out.trim_end();
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_are_separated_by_a_blank_line() {
        assert_eq!(html_to_text("<p>Hi</p><p>Body</p>"), "Hi\n\nBody\n");
        assert_eq!(
            html_to_text(
                "<div>\n  Hello\n   <em>wide</em>\t world &eacute;&nbsp;&nbsp;x &lt;tag&gt;</div><div>next</div>"
            ),
            "Hello wide world é  x <tag>\n\nnext\n"
        );
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("<p> </p><br>"), "");
    }

    #[test]
    fn line_breaks_and_quotes() {
        assert_eq!(
            html_to_text(
                "<p>a<br>b<br><br><br>c</p><blockquote><p>quoted<br>line</p></blockquote>"
            ),
            "a\nb\n\nc\n\n> quoted\n> line\n"
        );
    }

    #[test]
    fn list_items_are_lines() {
        assert_eq!(
            html_to_text(
                "<h1>Title</h1><ul><li>one</li><li>two <b>bold</b><ul><li>inner</li></ul></li></ul><ol start=\"3\"><li>a</li><li>b</li></ol><p>after</p>"
            ),
            "Title\n\n- one\n- two bold\n  - inner\n\n3. a\n4. b\n\nafter\n"
        );
    }

    #[test]
    fn links_read_text_then_url_unless_the_text_is_the_url() {
        assert_eq!(
            html_to_text(
                "<p>Hi Ada &amp; co,<br>see <a href=\"https://a.example/?x=1&amp;y=2\">pricing</a></p>\n\n<p>Bye <a href='https://b.example'>https://b.example</a></p>"
            ),
            "Hi Ada & co,\nsee pricing (https://a.example/?x=1&y=2)\n\nBye https://b.example\n"
        );
        assert_eq!(
            html_to_text(
                "<a href=\"mailto:ada@example.com\">ada@example.com</a> <a href=\"mailto:ada@example.com\">Write</a> <a href=\"#top\">top</a> <a href=\"https://x.example\"><img src=\"logo.png\" alt=\"\"></a> <a href=\"https://y.example/\">y.example</a>"
            ),
            "ada@example.com Write (ada@example.com) top https://x.example y.example\n"
        );
    }

    #[test]
    fn unseen_and_hidden_content_is_left_out() {
        assert_eq!(
            html_to_text(
                "<html><head><title>T</title><style>p{}</style></head><body><div style=\"display: none\">preheader</div><p>Shown</p><script>x()</script></body></html>"
            ),
            "Shown\n"
        );
        assert_eq!(
            html_to_text("<p>a</p><div style=\"display:none\">b<p>c</p>"),
            "a\n\nb\n\nc\n",
            "a hidden element never closed hides nothing"
        );
    }

    #[test]
    fn table_rows_and_preformatted_text() {
        assert_eq!(
            html_to_text(
                "<table><tr><td>Name</td><td>Ada</td></tr><tr><th>Plan</th><td>Pro</td></tr></table>"
            ),
            "Name Ada\n\nPlan Pro\n"
        );
        assert_eq!(
            html_to_text("<pre>\n  code\n\n\n  more</pre><p>x</p>"),
            "  code\n\n\n  more\n\nx\n"
        );
    }
}
