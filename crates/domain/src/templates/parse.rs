//! Source text to syntax tree. Every brace must belong to exactly one construct (or be
//! escaped); whatever does not is rejected with its position.

use super::error::{TemplateError, TemplateErrorKind as Kind};
use super::{MAX_NESTING, MAX_TEMPLATE_BYTES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Text(String),
    Variable {
        name: String,
        /// `None` for `{{name}}`, `Some("")` for `{{name|}}`; both render nothing when the
        /// value is missing, but only the first is a variable its author left without one.
        fallback: Option<String>,
    },
    Spintax {
        /// Numbers the groups of a template in source order; with the seed it picks the
        /// option, so a group's choice does not depend on which options were chosen before.
        group: u32,
        options: Vec<Vec<Node>>,
    },
}

pub(super) fn parse(source: &str) -> Result<Vec<Node>, TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        let offset = (MAX_TEMPLATE_BYTES..source.len())
            .find(|&offset| source.is_char_boundary(offset))
            .unwrap_or(source.len());
        return Err(TemplateError::at(
            source,
            offset,
            Kind::TooLong {
                limit: MAX_TEMPLATE_BYTES,
            },
        ));
    }
    let mut parser = Parser {
        source,
        pos: 0,
        groups: 0,
    };
    let (nodes, _) = parser.sequence(0)?;
    Ok(nodes)
}

struct Parser<'a> {
    source: &'a str,
    /// Byte offset of the next character, always a char boundary.
    pos: usize,
    groups: u32,
}

/// What ended a sequence of nodes.
enum End {
    Eof,
    Separator,
    Close,
}

impl Parser<'_> {
    fn char_at(&self, offset: usize) -> Option<char> {
        self.source.get(offset..)?.chars().next()
    }

    fn error(&self, offset: usize, kind: Kind) -> TemplateError {
        TemplateError::at(self.source, offset, kind)
    }

    /// Text and constructs up to the end of input or, inside a spintax group (`depth > 0`),
    /// up to the `|` or `}` that ends the option, which is consumed.
    fn sequence(&mut self, depth: usize) -> Result<(Vec<Node>, End), TemplateError> {
        let in_group = depth > 0;
        let mut nodes = Vec::new();
        let mut text = String::new();
        let end = loop {
            let Some(c) = self.char_at(self.pos) else {
                break End::Eof;
            };
            match c {
                '\\' => match self
                    .char_at(self.pos + 1)
                    .filter(|&next| is_escapable(next))
                {
                    Some(escaped) => {
                        text.push(escaped);
                        self.pos += 2;
                    }
                    None => {
                        text.push('\\');
                        self.pos += 1;
                    }
                },
                '{' => {
                    flush_text(&mut text, &mut nodes);
                    let node = if self.char_at(self.pos + 1) == Some('{') && self.opens_variable() {
                        self.variable()?
                    } else {
                        self.group(depth + 1)?
                    };
                    nodes.push(node);
                }
                '}' if in_group => {
                    self.pos += 1;
                    break End::Close;
                }
                '}' => return Err(self.error(self.pos, Kind::UnexpectedClose)),
                '|' if in_group => {
                    self.pos += 1;
                    break End::Separator;
                }
                c => {
                    text.push(c);
                    self.pos += c.len_utf8();
                }
            }
        };
        flush_text(&mut text, &mut nodes);
        Ok((nodes, end))
    }

    /// Whether the `{{` at `pos` is a variable rather than a group whose first option starts
    /// with a nested group: it is unless another `{`, or a `}` not followed by `}`, comes
    /// first. Running into the end counts as a variable so the error says `{{` is unclosed.
    fn opens_variable(&self) -> bool {
        let mut chars = self.source[self.pos + 2..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '{' => return false,
                '}' => return chars.next() == Some('}'),
                _ => {}
            }
        }
        true
    }

    /// `{{name}}` or `{{name|fallback}}` at `pos`.
    fn variable(&mut self) -> Result<Node, TemplateError> {
        let start = self.pos;
        let body_start = start + 2;
        let mut bars = Vec::new();
        let mut close = None;
        let mut chars = self.source[body_start..].char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '|' => bars.push(body_start + index),
                '}' => {
                    close = Some(body_start + index);
                    break;
                }
                _ => {}
            }
        }
        let Some(close) = close.filter(|&close| self.char_at(close + 1) == Some('}')) else {
            return Err(self.error(start, Kind::UnclosedVariable));
        };
        if let Some(&second_bar) = bars.get(1) {
            return Err(self.error(second_bar, Kind::MultipleFallbacks));
        }
        let name_end = bars.first().copied().unwrap_or(close);
        let raw_name = &self.source[body_start..name_end];
        let name = raw_name.trim();
        if name.is_empty() {
            return Err(self.error(start, Kind::EmptyVariableName));
        }
        if !is_identifier(name) {
            let name_start = body_start + raw_name.len() - raw_name.trim_start().len();
            return Err(self.error(
                name_start,
                Kind::InvalidVariableName {
                    name: name.to_owned(),
                },
            ));
        }
        let fallback = bars
            .first()
            .map(|&bar| unescape(self.source[bar + 1..close].trim()));
        self.pos = close + 2;
        Ok(Node::Variable {
            name: name.to_owned(),
            fallback,
        })
    }

    /// `{a|b}` spintax or `{name}` at `pos`; `depth` counts this group.
    fn group(&mut self, depth: usize) -> Result<Node, TemplateError> {
        let start = self.pos;
        if depth > MAX_NESTING {
            return Err(self.error(start, Kind::TooDeep { limit: MAX_NESTING }));
        }
        self.pos += 1;
        let group = self.groups;
        self.groups += 1;
        let mut options = Vec::new();
        loop {
            let (nodes, end) = self.sequence(depth)?;
            options.push(nodes);
            match end {
                End::Separator => {}
                End::Close => break,
                End::Eof => {
                    // `{{name}` lands here (its `{{` is not closed by `}}`), and is best
                    // described as the variable its author meant.
                    let kind = if options.len() == 1 && self.source[start..].starts_with("{{") {
                        Kind::UnclosedVariable
                    } else {
                        Kind::UnclosedGroup
                    };
                    return Err(self.error(start, kind));
                }
            }
        }
        if options.len() > 1 {
            return Ok(Node::Spintax { group, options });
        }
        if let [only] = options.as_slice()
            && let [Node::Text(text)] = only.as_slice()
            && is_identifier(text.trim())
        {
            return Ok(Node::Variable {
                name: text.trim().to_owned(),
                fallback: None,
            });
        }
        Err(self.error(start, Kind::NotAConstruct))
    }
}

fn flush_text(text: &mut String, nodes: &mut Vec<Node>) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text)));
    }
}

fn is_escapable(c: char) -> bool {
    matches!(c, '{' | '}' | '|' | '\\')
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unescape(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(&next) if c == '\\' && is_escapable(next) => {
                text.push(next);
                chars.next();
            }
            _ => text.push(c),
        }
    }
    text
}
