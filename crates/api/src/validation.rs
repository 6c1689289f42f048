//! Field checks shared by request types; each collects every problem with its field path.

use crate::error::FieldError;

#[derive(Default)]
pub struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.fail(field, message);
        }
    }

    /// A display name: at most [`MAX_NAME_LEN`] characters, not all whitespace (it is stored
    /// trimmed), on one line.
    pub fn name(&mut self, field: &str, value: &str) {
        let ok = value.chars().count() <= MAX_NAME_LEN && !value.trim().is_empty();
        if !ok {
            self.fail(
                field,
                format!("must be 1 to {MAX_NAME_LEN} characters, not all whitespace"),
            );
        } else if let Err(message) = check_line(value, MAX_NAME_LEN) {
            self.fail(field, message);
        }
    }

    pub fn http_url(&mut self, field: &str, value: &str) {
        let ok = (value.starts_with("https://") || value.starts_with("http://"))
            && value.chars().count() <= MAX_URL_LEN
            && !value.chars().any(|c| c.is_whitespace() || c.is_control());
        self.check(ok, field, "must be an http:// or https:// URL");
    }

    pub fn timezone(&mut self, field: &str, value: &str) {
        self.check(
            value.parse::<chrono_tz::Tz>().is_ok(),
            field,
            "must be an IANA timezone such as Europe/Paris",
        );
    }

    /// An email address as [`normalise_email`] accepts it.
    pub fn email(&mut self, field: &str, value: &str) {
        if let Err(message) = normalise_email(value) {
            self.fail(field, message);
        }
    }

    /// Optional text on one line of at most `max` characters (contact names, company,
    /// title): values that may end up in a mail header or a subject.
    pub fn line(&mut self, field: &str, value: &str, max: usize) {
        if let Err(message) = check_line(value, max) {
            self.fail(field, message);
        }
    }

    /// Contact attributes: a JSON object as [`check_attributes`] accepts it.
    pub fn attributes(&mut self, field: &str, value: &serde_json::Value) {
        for (path, message) in check_attributes(value) {
            self.fail(format!("{field}{path}"), message);
        }
    }

    /// A host name or IP address (no scheme, port or path).
    pub fn host(&mut self, field: &str, value: &str) {
        let ok = (1..=MAX_HOST_LEN).contains(&value.len())
            && value.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            });
        self.check(
            ok,
            field,
            "must be a host name or IP address, such as smtp.example.com",
        );
    }

    /// Free text of `min..=max` characters with no control characters (it may end up in a
    /// mail header or a protocol command, where CR and LF would inject lines).
    pub fn single_line(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        self.check(
            (min..=max).contains(&len) && !value.chars().any(char::is_control),
            field,
            format!("must be {min} to {max} characters without line breaks or control characters"),
        );
    }

    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        self.check(
            (min..=max).contains(&value),
            field,
            format!("must be between {min} and {max}"),
        );
    }

    pub fn extend(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Longest display name (of a workspace, key or sequence), in characters after trimming.
pub const MAX_NAME_LEN: usize = 200;
/// Longest URL accepted, in characters.
pub const MAX_URL_LEN: usize = 2000;
/// Longest host name (DNS's limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest address accepted (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest first name, last name, company or title.
pub const MAX_TEXT_LEN: usize = 256;
/// Most attributes a contact may carry, longest attribute name and string value.
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 10_000;
/// Largest magnitude of a number attribute. Beyond it (up to f64::MAX) PostgreSQL gives the
/// number back as an integer of 309 digits that serde_json cannot read.
pub const MAX_ATTRIBUTE_NUMBER: f64 = 1e308;

const EMAIL_MESSAGE: &str = "must be an email address such as jane@example.com";

/// Checks the syntax of an email address and returns it trimmed and lower-cased.
///
/// A deliberately plain check rather than all of RFC 5322: printable ASCII without spaces
/// or `"(),:;<>[\]`, one `@`, a non-empty local part of at most 64 characters, and a domain
/// of dot-separated non-empty labels (at least two) of letters, digits and hyphens, not
/// starting or ending with a hyphen; at most 254 characters. Internationalised domains must
/// be given in their `xn--` form.
pub fn normalise_email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim();
    if email.is_empty() || email.len() > MAX_EMAIL_LEN {
        return Err(EMAIL_MESSAGE);
    }
    if !email
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"(),:;<>[\\]".contains(&b))
    {
        return Err(EMAIL_MESSAGE);
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(EMAIL_MESSAGE);
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return Err(EMAIL_MESSAGE);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(EMAIL_MESSAGE);
    }
    Ok(email.to_ascii_lowercase())
}

/// A domain as suppressions take it (`example.com`, or `@example.com`), trimmed and
/// lower-cased without the `@`.
pub fn normalise_domain(raw: &str) -> Result<String, &'static str> {
    let domain = raw.trim();
    let domain = domain.strip_prefix('@').unwrap_or(domain);
    normalise_email(&format!("x@{domain}"))
        .map(|email| email[2..].to_owned())
        .map_err(|_| "must be a domain such as example.com")
}

/// Free text: at most `max` characters and no NUL (which PostgreSQL text cannot hold).
pub fn check_text(value: &str, max: usize) -> Result<(), String> {
    if value.contains('\0') {
        return Err("must not contain NUL characters".to_owned());
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(())
}

/// Text on one line: at most `max` characters and no control characters at all (C0 such as
/// NUL, CR, LF and tab, DEL, C1): one that reached a header could add a line to it.
pub fn check_line(value: &str, max: usize) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        return Err("must be one line without control characters".to_owned());
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(())
}

/// Whether `key` may name an attribute: an identifier (`[A-Za-z_][A-Za-z0-9_]*`, usable as a
/// template variable `{{key}}`) of at most 64 characters that is not a built-in variable.
pub fn check_attribute_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier || key.len() > MAX_ATTRIBUTE_KEY_LEN {
        return Err(format!(
            "attribute names must match [A-Za-z_][A-Za-z0-9_]* (at most {MAX_ATTRIBUTE_KEY_LEN} characters)"
        ));
    }
    if domain::templates::CONTACT_FIELDS.contains(&key) {
        return Err(format!(
            "`{key}` is a built-in variable and cannot be an attribute"
        ));
    }
    Ok(())
}

/// Whether `value` may be an attribute value: a string (no NUL, at most 10,000 characters),
/// a number (at most [`MAX_ATTRIBUTE_NUMBER`] either way) or a boolean. Null, arrays and
/// objects are refused: templates cannot show them.
pub fn check_attribute_value(value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(text) => check_text(text, MAX_ATTRIBUTE_VALUE_LEN),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.abs() <= MAX_ATTRIBUTE_NUMBER => Ok(()),
            _ => Err(format!(
                "numbers must be between -{MAX_ATTRIBUTE_NUMBER:e} and {MAX_ATTRIBUTE_NUMBER:e}"
            )),
        },
        serde_json::Value::Bool(_) => Ok(()),
        _ => Err("must be a string, number or boolean".to_owned()),
    }
}

/// Problems of an attributes object, each with its path below the field (`.key`).
pub fn check_attributes(value: &serde_json::Value) -> Vec<(String, String)> {
    let Some(object) = value.as_object() else {
        return vec![(String::new(), "must be a JSON object".to_owned())];
    };
    let mut problems = Vec::new();
    if object.len() > MAX_ATTRIBUTES {
        problems.push((
            String::new(),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (key, value) in object {
        if let Err(message) = check_attribute_key(key) {
            problems.push((format!(".{key}"), message));
        } else if let Err(message) = check_attribute_value(value) {
            problems.push((format!(".{key}"), message));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(
            normalise_email("  Jane.Doe+x@Example.CO.uk "),
            Ok("jane.doe+x@example.co.uk".to_owned())
        );
        assert_eq!(
            normalise_email("o'neil@xn--bcher-kva.ch").map(|_| ()),
            Ok(())
        );
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@@example.com",
            "ja@ne@example.com",
            "jane doe@example.com",
            "jane@exa mple.com",
            "jane@example..com",
            "jane@.example.com",
            "jane@example.com.",
            "jane@-example.com",
            "jane@exam_ple.com",
            "jäne@example.com",
            "jane\u{7}@example.com",
            "<jane@example.com>",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?} accepted");
        }
        let label = "b".repeat(61);
        let long = format!("{}@{label}.{label}.{label}.info", "a".repeat(64));
        assert_eq!(long.len(), 255);
        assert!(normalise_email(&long).is_err());
        assert!(normalise_email(&long[1..]).is_ok());
    }

    #[test]
    fn domains_are_checked_and_normalised() {
        assert_eq!(
            normalise_domain("@Example.com"),
            Ok("example.com".to_owned())
        );
        assert_eq!(
            normalise_domain("example.com"),
            Ok("example.com".to_owned())
        );
        assert!(normalise_domain("example").is_err());
        assert!(normalise_domain("jane@example.com").is_err());
    }

    #[test]
    fn single_lines_refuse_every_control_character() {
        assert!(check_line("Ada Lovelace-Byron, Jr.", 50).is_ok());
        for bad in [
            "Bob\r\nBcc: v@x.invalid",
            "a\nb",
            "a\tb",
            "a\u{0}",
            "a\u{7f}",
            "a\u{85}",
        ] {
            assert!(check_line(bad, 50).is_err(), "{bad:?} accepted");
        }
        assert!(check_line("abc", 2).is_err());
        // Free text (attribute values) may span lines, but never holds a NUL.
        assert!(check_text("line one\nline two", 50).is_ok());
        assert!(check_text("a\u{0}", 50).is_err());
    }

    #[test]
    fn names_are_trimmed_lengths_on_one_line() {
        let errors = |value: &str| {
            let mut checks = Checks::default();
            checks.name("name", value);
            checks.finish().err().unwrap_or_default().len()
        };
        assert_eq!(errors("Q1 outreach"), 0);
        assert_eq!(errors("   "), 1);
        assert_eq!(errors(&"x".repeat(MAX_NAME_LEN + 1)), 1);
        assert_eq!(errors("two\nlines"), 1);
    }

    #[test]
    fn attribute_keys_are_identifiers_and_not_built_ins() {
        assert!(check_attribute_key("plan").is_ok());
        assert!(check_attribute_key("_x9").is_ok());
        assert!(check_attribute_key("9lives").is_err());
        assert!(check_attribute_key("first-name").is_err());
        assert!(check_attribute_key("").is_err());
        assert!(check_attribute_key("full_name").is_err());
        assert!(check_attribute_key("email").is_err());
        assert!(check_attribute_key(&"k".repeat(65)).is_err());
    }

    #[test]
    fn attributes_report_each_bad_key() {
        let problems =
            check_attributes(&json!({"ok": 1, "bad key": "x", "nested": {}, "title": "x"}));
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [".bad key", ".nested", ".title"]);
        assert_eq!(check_attributes(&json!([1])).len(), 1);
        assert!(check_attributes(&json!({"a": "x", "b": true, "c": 2.5})).is_empty());
        assert!(check_attributes(&json!({"a": 1e308, "b": -1e308})).is_empty());
        assert_eq!(
            check_attributes(&json!({"a": 1.7976931348623157e308})).len(),
            1
        );
    }
}
