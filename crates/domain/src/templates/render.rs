//! Syntax tree to text, given variable values and a seed for the spintax choices.

use super::parse::Node;
use super::spintax;
use super::variables::VariableSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escaping {
    None,
    /// Values and fallbacks only: the template text is the author's markup.
    Html,
}

pub(super) fn render<V: VariableSource + ?Sized>(
    nodes: &[Node],
    vars: &V,
    seed: u64,
    escaping: Escaping,
) -> String {
    let mut out = String::new();
    render_into(&mut out, nodes, vars, seed, escaping);
    out
}

fn render_into<V: VariableSource + ?Sized>(
    out: &mut String,
    nodes: &[Node],
    vars: &V,
    seed: u64,
    escaping: Escaping,
) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Variable { name, fallback } => {
                // A blank value would leave "Hi ," where the fallback reads better.
                let value = vars.get(name).filter(|value| !value.trim().is_empty());
                let text = value.as_deref().or(fallback.as_deref()).unwrap_or_default();
                match escaping {
                    Escaping::None => out.push_str(text),
                    Escaping::Html => push_html_escaped(out, text),
                }
            }
            Node::Spintax { group, options } => {
                let chosen = spintax::choose(seed, *group, options.len());
                if let Some(option) = options.get(chosen) {
                    render_into(out, option, vars, seed, escaping);
                }
            }
        }
    }
}

/// Enough for element content and quoted attribute values, where bodies put variables.
pub fn push_html_escaped(out: &mut String, text: &str) {
    // Runs without a special character are copied whole: the five are ASCII, so every index
    // where one stands is a char boundary.
    let mut last = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(text.get(last..at).unwrap_or_default());
        out.push_str(entity);
        last = at + 1;
    }
    out.push_str(text.get(last..).unwrap_or_default());
}

/// The first variable without a fallback that would render empty (missing or blank value),
/// following the same spintax choices as [`render`] with this seed: options not chosen do
/// not count.
pub(super) fn first_missing<V: VariableSource + ?Sized>(
    nodes: &[Node],
    vars: &V,
    seed: u64,
) -> Option<String> {
    for node in nodes {
        let missing = match node {
            Node::Text(_) => None,
            Node::Variable {
                name,
                fallback: None,
            } => {
                let blank = vars.get(name).is_none_or(|value| value.trim().is_empty());
                blank.then(|| name.clone())
            }
            Node::Variable { .. } => None,
            Node::Spintax { group, options } => {
                let chosen = spintax::choose(seed, *group, options.len());
                options
                    .get(chosen)
                    .and_then(|option| first_missing(option, vars, seed))
            }
        };
        if missing.is_some() {
            return missing;
        }
    }
    None
}
