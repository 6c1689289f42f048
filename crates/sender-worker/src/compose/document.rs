//! The HTML part as a complete document. A fragment gets a doctype, `<html>`, a `<head>`
//! declaring UTF-8 (the part's encoding) and `<body>`; content that already is a document
//! (it has `<html>` or `<body>`) is left as written but for its character set, which is made
//! to say UTF-8.

use html5gum::Token;

use super::html::{attribute, name, splice, tokens, value_range};

const HEAD: &str = "<meta charset=\"utf-8\">\n\
    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";

pub(super) fn document(html: &str) -> String {
    let is_document = tokens(html).any(|token| {
        matches!(&token, Token::StartTag(tag) if matches!(name(&tag.name).as_str(), "html" | "body"))
    });
    if is_document {
        declare_utf8(html)
    } else {
        fragment(html)
    }
}

/// The document around a fragment known to have no `<html>` or `<body>` of its own (the
/// HTML of plain-text content), without reading it.
pub(super) fn fragment(html: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n{HEAD}\n</head>\n<body>\n{}\n</body>\n</html>\n",
        html.trim()
    )
}

/// `html` declaring UTF-8: a `<meta>` naming another character set says UTF-8 instead, and
/// one is added at the start of the head when there is none.
fn declare_utf8(html: &str) -> String {
    let mut head_end = None;
    let mut html_end = None;
    let mut body_start = None;
    for token in tokens(html) {
        let Token::StartTag(tag) = token else {
            continue;
        };
        match name(&tag.name).as_str() {
            "meta" => {
                if let Some(charset) = attribute(&tag, "charset") {
                    if is_utf8(&charset) {
                        return html.to_owned();
                    }
                    if let Some(value) = value_range(html, &tag, "charset") {
                        return splice(html, &[(value, "utf-8".to_owned())]);
                    }
                }
                let content_type = attribute(&tag, "http-equiv")
                    .is_some_and(|equiv| equiv.trim().eq_ignore_ascii_case("content-type"));
                if let Some(content) = attribute(&tag, "content").filter(|_| content_type) {
                    let declared = content.to_ascii_lowercase();
                    let charset = declared.split_once("charset=").map(|(_, c)| c.trim());
                    if charset.is_some_and(is_utf8) {
                        return html.to_owned();
                    }
                    if let Some(value) = value_range(html, &tag, "content") {
                        return splice(html, &[(value, "text/html; charset=utf-8".to_owned())]);
                    }
                }
            }
            "head" => head_end = head_end.or(Some(tag.span.end)),
            "html" => html_end = html_end.or(Some(tag.span.end)),
            "body" => body_start = body_start.or(Some(tag.span.start)),
            _ => {}
        }
    }
    let meta = "<meta charset=\"utf-8\">";
    let insert = match (head_end, html_end, body_start) {
        (Some(at), _, _) => (at, format!("\n{meta}")),
        (None, Some(at), _) => (at, format!("\n<head>{meta}</head>")),
        (None, None, Some(at)) => (at, format!("<head>{meta}</head>\n")),
        (None, None, None) => (0, format!("{meta}\n")),
    };
    splice(html, &[(insert.0..insert.0, insert.1)])
}

fn is_utf8(charset: &str) -> bool {
    let charset = charset.trim().trim_matches(['"', '\'', ';']);
    charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_becomes_a_utf8_document() {
        assert_eq!(
            document("<p>Hi</p>\n"),
            "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n</head>\n<body>\n<p>Hi</p>\n</body>\n</html>\n"
        );
    }

    #[test]
    fn a_document_keeps_its_markup_and_says_utf8() {
        let declared =
            "<html><head><meta charset=UTF-8><title>x</title></head><body>x</body></html>";
        assert_eq!(document(declared), declared);
        let legacy = r#"<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body>x</body></html>"#;
        assert_eq!(document(legacy), legacy);
        assert_eq!(
            document("<HTML><Head><title>x</title></head><body>x</body></HTML>"),
            "<HTML><Head>\n<meta charset=\"utf-8\"><title>x</title></head><body>x</body></HTML>"
        );
        assert_eq!(
            document("<html lang=en><body>x</body></html>"),
            "<html lang=en>\n<head><meta charset=\"utf-8\"></head><body>x</body></html>"
        );
        assert_eq!(
            document("<body style=\"margin:0\">x</body>"),
            "<head><meta charset=\"utf-8\"></head>\n<body style=\"margin:0\">x</body>"
        );
        assert_eq!(
            document("<html><head><meta charset='iso-8859-1'></head><body>é</body></html>"),
            "<html><head><meta charset='utf-8'></head><body>é</body></html>"
        );
        assert_eq!(
            document(
                r#"<html><head><meta http-equiv="content-type" content="text/html; charset=windows-1252"></head><body>x</body></html>"#
            ),
            r#"<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body>x</body></html>"#
        );
    }

    #[test]
    fn tags_in_text_or_scripts_do_not_make_a_document() {
        let fragment = "<p>&lt;html&gt;</p><script>var b = '<body>';</script>";
        assert!(document(fragment).starts_with("<!DOCTYPE html>\n"));
    }
}
