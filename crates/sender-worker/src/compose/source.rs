//! A template source parsed once and shared by every email that uses it: the worker parses
//! each step's (or variant's) subject and content once per claimed batch, not once per email.

use std::sync::Arc;

use domain::templates::{Template, TemplateError};

use super::body;

/// A template's source text with its parse result (a source that does not parse fails each
/// email composed from it, as before) and whether it is HTML.
#[derive(Debug, Clone)]
pub struct Source(Arc<Parsed>);

#[derive(Debug)]
struct Parsed {
    text: String,
    template: Result<Template, TemplateError>,
    html: bool,
}

impl Source {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self(Arc::new(Parsed {
            template: Template::parse(&text),
            html: body::looks_like_html(&text),
            text,
        }))
    }

    pub fn text(&self) -> &str {
        &self.0.text
    }

    pub fn template(&self) -> Result<&Template, &TemplateError> {
        self.0.template.as_ref()
    }

    /// Whether the content is HTML ([`body::looks_like_html`]).
    pub fn is_html(&self) -> bool {
        self.0.html
    }
}

impl From<&str> for Source {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Source {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Source {}
