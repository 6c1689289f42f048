//! The template language of email steps (subject lines and bodies): variables with fallbacks
//! and spintax, parsed once when a step is saved and rendered per message.
//!
//! Syntax:
//!
//! - `{{first_name}}` or `{{ first_name }}`: a variable; `{first_name}` (the seed's form) means
//!   the same. Names match `[A-Za-z_][A-Za-z0-9_]*` and are case-sensitive.
//! - `{{first_name|there}}`: a variable with a fallback, the literal text after `|` (trimmed),
//!   used when the value is missing, empty or only whitespace. `{{first_name|}}` falls back to
//!   nothing.
//! - `{Hi|Hello|Hey}`: spintax, one option chosen per message. Options hold text, variables and
//!   nested spintax (`{Hi {{first_name}}|{Hello|Hey} there}`) and may be empty (`{|P.S. }`).
//!   `{{` always opens a variable when a `}}` closes it before any other brace, so
//!   `{{Hi|Hello} there|Hey}` is spintax whose first option starts with a nested group while
//!   `{{a|b}}` is the variable `a` with fallback `b`.
//! - `\{`, `\}`, `\|` and `\\` are a literal brace, bar and backslash; any other backslash is
//!   literal text. `|` outside braces is literal text too.
//!
//! Anything else involving a brace is an error, not literal text, so a typo is reported when
//! the step is saved instead of reaching a prospect as `{frist_name}`. HTML bodies with CSS
//! or scripts therefore escape their braces.
//!
//! Rendering is sandboxed by construction: it reads only the template and the
//! [`VariableSource`] it is given, never the environment, files or network, and cannot loop.
//! Its output is bounded: each byte of the (at most [`MAX_TEMPLATE_BYTES`]) source is emitted
//! at most once since a spintax group emits one option and nothing repeats or includes text,
//! plus one value per variable reference (at most six bytes per value byte in
//! [`Template::render_html`]). Nesting is limited to [`MAX_NESTING`] levels, which bounds the
//! recursion of both parser and renderer.

mod error;
mod parse;
mod render;
mod spintax;
mod variables;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use error::{TemplateError, TemplateErrorKind};
pub use render::push_html_escaped;
pub use spintax::seed_from_uuid;
pub use variables::{BUILT_IN_VARIABLES, CONTACT_FIELDS, ContactFields, VariableSource};

use parse::Node;
use render::Escaping;

/// Longest accepted source, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 100 * 1024;

/// Deepest accepted nesting of spintax groups; `{a|b}` is one level.
pub const MAX_NESTING: usize = 8;

/// A parsed, valid template. Parse once, render many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        parse::parse(source).map(|nodes| Self { nodes })
    }

    /// Every variable name the template can use, in any spintax option, so the API can warn
    /// about names no contact field or attribute provides.
    pub fn variables(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        collect_variables(&self.nodes, &mut names);
        names
    }

    /// The variables the template uses without a fallback somewhere: those that leave a hole
    /// (and so hold the email) when a contact has no value.
    pub fn required_variables(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        collect_required(&self.nodes, &mut names);
        names
    }

    /// Renders as plain text (subject lines, text bodies). The same `seed` always makes the
    /// same spintax choices, so a message rendered again reads the same: use one seed per
    /// message, e.g. [`seed_from_uuid`] of its id. Choices depend on the seed and each group's
    /// position in its template, so a subject and a body rendered with the same seed choose
    /// alike in groups at the same position; mix something into one seed if that matters.
    pub fn render<V: VariableSource + ?Sized>(&self, vars: &V, seed: u64) -> String {
        render::render(&self.nodes, vars, seed, Escaping::None)
    }

    /// The first variable this rendering would leave empty: one without a fallback whose
    /// value is missing or blank, in the spintax options `seed` chooses. An email must not go
    /// out with a hole in it, so senders check this before rendering.
    pub fn missing_variable<V: VariableSource + ?Sized>(
        &self,
        vars: &V,
        seed: u64,
    ) -> Option<String> {
        render::first_missing(&self.nodes, vars, seed)
    }

    /// Renders into an HTML body: substituted values and fallbacks are HTML-escaped, because
    /// contact data is untrusted; the template's own text is the author's markup and is not.
    pub fn render_html<V: VariableSource + ?Sized>(&self, vars: &V, seed: u64) -> String {
        render::render(&self.nodes, vars, seed, Escaping::Html)
    }
}

/// Checks a template without keeping the parsed form, for the API when a step is saved.
pub fn validate(source: &str) -> Result<(), TemplateError> {
    Template::parse(source).map(drop)
}

fn collect_variables(nodes: &[Node], names: &mut BTreeSet<String>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Variable { name, .. } => {
                names.insert(name.clone());
            }
            Node::Spintax { options, .. } => {
                for option in options {
                    collect_variables(option, names);
                }
            }
        }
    }
}

fn collect_required(nodes: &[Node], names: &mut BTreeSet<String>) {
    for node in nodes {
        match node {
            Node::Variable {
                name,
                fallback: None,
            } => {
                names.insert(name.clone());
            }
            Node::Text(_) | Node::Variable { .. } => {}
            Node::Spintax { options, .. } => {
                for option in options {
                    collect_required(option, names);
                }
            }
        }
    }
}
