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

    /// A display name: 1 to 200 characters after trimming.
    pub fn name(&mut self, field: &str, value: &str) {
        let len = value.trim().chars().count();
        self.check(
            (1..=200).contains(&len),
            field,
            "must be 1 to 200 characters",
        );
    }

    pub fn http_url(&mut self, field: &str, value: &str) {
        let ok = (value.starts_with("https://") || value.starts_with("http://"))
            && value.len() <= 2000
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

    /// An email address as a mailbox or contact has it: `local@domain`, at most 254
    /// characters, no spaces or control characters, a dot in the domain. Deliberately not
    /// the whole of RFC 5322: quoted local parts and comments are not accepted.
    pub fn email(&mut self, field: &str, value: &str) {
        self.check(
            is_email(value),
            field,
            "must be an email address such as ana@example.com",
        );
    }

    /// A host name or IP address (no scheme, port or path).
    pub fn host(&mut self, field: &str, value: &str) {
        let ok = (1..=253).contains(&value.len())
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

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    value.len() <= 254
        && (1..=64).contains(&local.len())
        && !local.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        && !local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '"' | '(' | ')' | ',' | ':' | ';' | '<' | '>' | '[' | '\\' | ']'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::is_email;

    #[test]
    fn email_addresses() {
        for ok in [
            "ana@example.com",
            "a.b+tag@sub.example.co.uk",
            "x@xn--bcher-kva.de",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@localhost",
            "ana@@example.com",
            "ana@exa mple.com",
            "an a@example.com",
            "ana@example..com",
            "ana@-x.com",
            "a\r\nb@example.com",
            "<ana@example.com>",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
