//! The HTML of a body as tokens (html5gum: the WHATWG tokenizer, entities decoded, byte spans
//! into the source), so the text part, link tracking and the document wrapper read the markup
//! as a browser would while leaving every byte they do not change as the author wrote it.

use std::ops::Range;

use html5gum::{DefaultEmitter, StartTag, Token, Tokenizer};

/// The tokens of `html`, with `<script>`, `<style>`, `<title>` and `<textarea>` contents read
/// as text, as a browser reads them.
pub(super) fn tokens(html: &str) -> impl Iterator<Item = Token<usize>> + '_ {
    let mut emitter = DefaultEmitter::<usize>::new_with_span();
    emitter.naively_switch_states(true);
    Tokenizer::new_with_emitter(html, emitter)
        .filter_map(|token| token.ok())
        .filter(|token| !matches!(token, Token::Error(_)))
}

/// A tag's (lower-case) name.
pub(super) fn name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// The decoded value of attribute `name` of `tag`.
pub(super) fn attribute(tag: &StartTag<usize>, name: &str) -> Option<String> {
    tag.attributes
        .get(name.as_bytes())
        .map(|value| String::from_utf8_lossy(&value.value).into_owned())
}

/// Where the value of attribute `name` of `tag` stands in `html`, without its quotes.
pub(super) fn value_range(html: &str, tag: &StartTag<usize>, name: &str) -> Option<Range<usize>> {
    let span = tag.attributes.get(name.as_bytes())?.span;
    let raw = html.get(span.start..span.end.min(html.len()))?;
    let eq = raw.find('=')?;
    let after = raw.get(eq + 1..)?;
    let start = span.start + eq + 1 + (after.len() - after.trim_start().len());
    let rest = html.get(start..)?;
    match rest.chars().next()? {
        quote @ ('"' | '\'') => {
            let len = rest.get(1..)?.find(quote)?;
            Some(start + 1..start + 1 + len)
        }
        _ => {
            let len = rest
                .find(|c: char| c.is_ascii_whitespace() || c == '>')
                .unwrap_or(rest.len());
            Some(start..start + len)
        }
    }
}

/// The text of `text` with its character references decoded, as a browser shows it.
pub(super) fn decode(text: &str) -> String {
    tokens(text)
        .filter_map(|token| match token {
            Token::String(s) => Some(String::from_utf8_lossy(&s.value).into_owned()),
            _ => None,
        })
        .collect()
}

/// `html` with each `(range, replacement)` applied; ranges in order, not overlapping.
pub(super) fn splice(html: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(html.len());
    let mut last = 0;
    for (range, replacement) in edits {
        if range.start < last {
            continue;
        }
        out.push_str(html.get(last..range.start).unwrap_or_default());
        out.push_str(replacement);
        last = range.end;
    }
    out.push_str(html.get(last..).unwrap_or_default());
    out
}

/// Escaped for an attribute value or text, as rendered template variables are.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    domain::templates::push_html_escaped(&mut out, text);
    out
}
