//! Header values: normalisation against header injection, the reply subject, the tracking base
//! URL and `List-Unsubscribe` (RFC 2369, with RFC 8058's one-click POST).

use super::ComposeError;

/// Replaces each run of CR and LF (and other control characters) with one space and trims.
/// lettre already encodes such characters (RFC 2047) rather than letting them end a header,
/// but rendered subjects and names come from contact data, so nothing that could start a
/// header line reaches the builder in the first place.
pub(super) fn normalise(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut in_run = false;
    for c in value.chars() {
        if c.is_control() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim().to_owned()
}

/// `Re: ` and the first subject, unless it is already a reply: clients add their own prefix
/// too, and `Re: Re:` reads as automated.
pub(super) fn reply_subject(first: &str) -> String {
    let already = first
        .get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("re:"));
    if already {
        first.to_owned()
    } else {
        format!("Re: {first}")
    }
}

/// The base URL without a trailing slash. It ends up inside `<...>` in a header and in `href`
/// attributes unescaped, so characters that would break out of either are refused.
pub(super) fn tracking_base(url: &str) -> Result<String, ComposeError> {
    let base = url.trim().trim_end_matches('/');
    let scheme_ok = ["https://", "http://"].iter().any(|scheme| {
        base.get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
            && base.len() > scheme.len()
    });
    if !scheme_ok || base.chars().any(breaks_out) {
        return Err(ComposeError::InvalidTrackingBaseUrl);
    }
    Ok(base.to_owned())
}

/// `<{url}>`, then `<mailto:...>` when configured: the URL first, as RFC 8058 asks for the
/// one-click POST.
pub(super) fn list_unsubscribe(url: &str, mailto: Option<&str>) -> Result<String, ComposeError> {
    let Some(mailto) = mailto.map(str::trim).filter(|mailto| !mailto.is_empty()) else {
        return Ok(format!("<{url}>"));
    };
    let address = mailto
        .strip_prefix("mailto:")
        .or_else(|| mailto.strip_prefix("MAILTO:"))
        .unwrap_or(mailto);
    if address.is_empty() || address.chars().any(breaks_out) {
        return Err(ComposeError::InvalidUnsubscribeMailto);
    }
    Ok(format!("<{url}>, <mailto:{address}>"))
}

fn breaks_out(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_replaces_line_break_runs_with_one_space() {
        assert_eq!(normalise("Hi\r\nBcc: x"), "Hi Bcc: x");
        assert_eq!(normalise("a\r\n\r\n\tb\nc\rd"), "a b c d");
        assert_eq!(normalise("\r\n trimmed \n"), "trimmed");
        assert_eq!(normalise("plain, ünïcode"), "plain, ünïcode");
    }

    #[test]
    fn reply_subject_adds_one_prefix() {
        assert_eq!(reply_subject("Quick question"), "Re: Quick question");
        assert_eq!(reply_subject("Re: Quick question"), "Re: Quick question");
        assert_eq!(reply_subject("RE: Quick question"), "RE: Quick question");
        assert_eq!(reply_subject("Rebates"), "Re: Rebates");
        assert_eq!(reply_subject(""), "Re: ");
    }

    #[test]
    fn tracking_base_accepts_http_urls_only() {
        assert_eq!(
            tracking_base("https://t.example.com/").ok().as_deref(),
            Some("https://t.example.com")
        );
        assert!(tracking_base("HTTP://t.example.com/x").is_ok());
        for bad in [
            "",
            "https://",
            "ftp://t.example.com",
            "t.example.com",
            "https://t.example.com/a b",
            "https://t.example.com/\">",
            "https://t.example.com\r\nBcc: x",
        ] {
            assert!(tracking_base(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_unsubscribe_value() -> Result<(), ComposeError> {
        let url = "https://t.example.com/u/abc";
        assert_eq!(
            list_unsubscribe(url, None)?,
            "<https://t.example.com/u/abc>"
        );
        assert_eq!(
            list_unsubscribe(url, Some(" "))?,
            "<https://t.example.com/u/abc>"
        );
        let both = "<https://t.example.com/u/abc>, <mailto:unsub@example.com>";
        assert_eq!(list_unsubscribe(url, Some("unsub@example.com"))?, both);
        assert_eq!(
            list_unsubscribe(url, Some("mailto:unsub@example.com"))?,
            both
        );
        assert!(list_unsubscribe(url, Some("a@b.c>\r\nBcc: x")).is_err());
        Ok(())
    }
}
