//! The `Content-Transfer-Encoding` of the text and HTML parts. A part that is ASCII with
//! every line at most 998 octets (RFC 5322 2.1.1) goes as it is, `7bit`: nothing to encode,
//! and fewer bytes on the wire than quoted-printable, which lettre picks as soon as a line is
//! longer than 76 characters (and which turns every `=` of the HTML's attributes into
//! `=3D`). ASCII that cannot go as it is (a longer line, a NUL, a CR not ending a line) is
//! quoted-printable; anything else keeps lettre's choice (quoted-printable or base64, by how
//! much of it is not ASCII).
//!
//! A line starting with `.` needs nothing here: SMTP's dot-stuffing (lettre's transport)
//! applies to the whole message, whatever the encoding of its parts.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, SinglePart};

/// The longest line 7bit data may have, without its CRLF (RFC 5322 2.1.1, RFC 2045 2.7).
pub(super) const MAX_LINE_OCTETS: usize = 998;

/// A part of `content_type` holding `text`.
pub(super) fn part(content_type: ContentType, text: String) -> SinglePart {
    let body = match seven_bit(&text) {
        Some(crlf) => Body::dangerous_pre_encoded(crlf, ContentTransferEncoding::SevenBit),
        // lettre would send a short ASCII line with a NUL or a bare CR as 7bit.
        None if text.is_ascii() => {
            Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
                .unwrap_or_else(Body::new)
        }
        None => Body::new(text),
    };
    SinglePart::builder().header(content_type).body(body)
}

/// `text` with CRLF line endings, when it is 7bit data (RFC 2045 2.7): ASCII without NUL,
/// CR only before LF, no line longer than [`MAX_LINE_OCTETS`]. `None` otherwise.
fn seven_bit(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    // Whole-slice scans and copies of whole lines: this runs on every part of every email.
    if !bytes.is_ascii() || bytes.contains(&0) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    // `str::split` by a char finds each LF with memchr.
    let mut lines = text.split('\n').map(str::as_bytes).peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let line = match line.strip_suffix(b"\r") {
            Some(line) if !last => line,
            _ => line,
        };
        if line.len() > MAX_LINE_OCTETS || line.contains(&b'\r') {
            return None;
        }
        out.extend_from_slice(line);
        if !last {
            out.extend_from_slice(b"\r\n");
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(text: &str) -> String {
        let part = part(ContentType::TEXT_PLAIN, text.to_owned());
        part.headers()
            .get_raw("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn ascii_with_lines_up_to_998_octets_is_sent_as_it_is() {
        let longest = "x".repeat(MAX_LINE_OCTETS);
        for text in [
            "",
            "Hi,\n\nsee <a href=\"https://example.com/?a=1&amp;b=2\">this</a>",
            &longest,
            &format!("{longest}\n{longest}\r\n{longest}\n"),
            ".\n..\n.leading dots are SMTP's to stuff\n",
            "a literal =3D stays as written\tand\x0bcontrols other than NUL pass",
        ] {
            assert_eq!(encoding(text), "7bit", "{text:?}");
            let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(
                part(ContentType::TEXT_PLAIN, text.to_owned()).raw_body(),
                crlf.as_bytes(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_quoted_printable_or_base64() {
        let too_long = "x".repeat(MAX_LINE_OCTETS + 1);
        for (text, expected) in [
            (too_long.clone(), "quoted-printable"),
            (format!("short\n{too_long}\nshort"), "quoted-printable"),
            (format!("{too_long}\r\n"), "quoted-printable"),
            ("Grüße, Ana".to_owned(), "quoted-printable"),
            ("日本語のメール".to_owned(), "base64"),
            ("a NUL \0 is not 7bit".to_owned(), "quoted-printable"),
            ("a bare CR \r ends no line".to_owned(), "quoted-printable"),
            ("two CRs \r\r\n end one line".to_owned(), "quoted-printable"),
            ("a trailing CR\r".to_owned(), "quoted-printable"),
        ] {
            assert_eq!(encoding(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn line_lengths_do_not_count_the_line_break() {
        let longest = "x".repeat(MAX_LINE_OCTETS);
        assert!(seven_bit(&format!("{longest}\r\n{longest}")).is_some());
        assert!(seven_bit(&format!("{longest}x\r\n")).is_none());
        assert!(seven_bit(&format!("\n{longest}x")).is_none());
    }
}
