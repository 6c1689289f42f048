//! Why a template was rejected and where, in the terms an editor shows (line and column in
//! characters) and the byte offset a program can slice with.

/// A rejected template. Displays as ``line 2, column 5: unclosed `{{` ``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct TemplateError {
    pub kind: TemplateErrorKind,
    /// 1-based.
    pub line: usize,
    /// 1-based, counted in characters so it matches the cursor position of an editor.
    pub column: usize,
    /// Byte offset into the source.
    pub offset: usize,
}

impl TemplateError {
    /// `offset` is a char boundary of `source` wherever the parser reports from.
    pub(super) fn at(source: &str, offset: usize, kind: TemplateErrorKind) -> Self {
        let before = source.get(..offset).unwrap_or(source);
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            kind,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            offset,
        }
    }

    /// The problem without its position, for APIs that report the position separately.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateErrorKind {
    #[error("the template is longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("unclosed `{{{{`")]
    UnclosedVariable,
    #[error("unclosed `{{`")]
    UnclosedGroup,
    #[error("unexpected `}}`: write `\\}}` for a literal brace")]
    UnexpectedClose,
    #[error("empty variable name")]
    EmptyVariableName,
    #[error(
        "invalid variable name `{name}`: use letters, digits and `_`, not starting with a digit"
    )]
    InvalidVariableName { name: String },
    #[error("a variable takes at most one fallback, as in `{{{{name|fallback}}}}`")]
    MultipleFallbacks,
    #[error(
        "`{{` starts neither a variable (`{{name}}`) nor spintax (`{{a|b}}`): write `\\{{` for a \
         literal brace"
    )]
    NotAConstruct,
    #[error("spintax nested more than {limit} levels deep")]
    TooDeep { limit: usize },
}
