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
