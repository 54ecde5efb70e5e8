//! Source spans and error diagnostics rendered rustc-style with a caret line.
//!
//! Every stage of `pattern-lang` (parsing now, lowering later) reports errors as a [`Diagnostic`]:
//! a message, the [`Span`] of the offending text and an optional help line.
//! [`Diagnostic::render`] turns it into the text `strix check` prints:
//!
//! ```text
//! error: unknown field `qyt` on event `Order`
//!  --> rules.cep:7:20
//!   |
//! 7 |   big as Order and qyt >= 10
//!   |                    ^^^
//!   = help: fields of Order: id, account
//! ```

use std::fmt::Write as _;

/// A half-open range `start..end` of byte offsets into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// An error with a message, the span it is about and an optional help line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    /// What went wrong, e.g. "expected `}` or `,` after field, found `;`".
    pub message: String,
    /// The offending source text.
    pub span: Span,
    /// An optional hint printed as `= help: ...`.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without help.
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            help: None,
        }
    }

    /// The same diagnostic with a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic rustc-style: `error: MESSAGE`, a ` --> FILE:LINE:COL` line, the
    /// source line and a caret line under the span (at least one caret; a span running over
    /// several lines is underlined to the end of its first line), then `= help: ...` if any.
    ///
    /// Line and column are 1-based; the column counts chars. The result has no trailing newline.
    /// Offsets beyond the source or inside a multi-byte char are clamped, so this never panics.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let start = floor_char_boundary(source, self.span.start);
        let end = floor_char_boundary(source, self.span.end.max(start));
        let (line, col) = line_col(source, start);
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let text = source[line_start..line_end]
            .strip_suffix('\r')
            .unwrap_or(&source[line_start..line_end]);
        let underlined = source[start..end.min(line_end)].chars().count();
        let carets = underlined.max(1);
        // Mirror tabs in the caret indentation so the carets line up in a terminal.
        let indent: String = source[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();

        let number = line.to_string();
        let pad = " ".repeat(number.len());
        let mut out = String::new();
        // Writing to a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(out, "error: {}", self.message);
        let _ = writeln!(out, "{pad}--> {file_name}:{line}:{col}");
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{number} | {text}");
        let _ = write!(out, "{pad} | {indent}{}", "^".repeat(carets));
        if let Some(help) = &self.help {
            let _ = write!(out, "\n{pad} = help: {help}");
        }
        out
    }
}

/// The 1-based (line, column) of byte `offset` in `source`, the column counted in chars.
///
/// An offset past the end is clamped to the end; one inside a multi-byte char is moved back to
/// that char's start.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The largest char boundary `<= offset` (and `<= source.len()`).
fn floor_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let source = "a\nb\nc\nd\ne\nf\n  big as Order and qyt >= 10\n";
        let start = source.find("qyt").unwrap_or(0);
        let d = Diagnostic::new(
            "unknown field `qyt` on event `Order`",
            Span::new(start, start + 3),
        )
        .with_help("fields of Order: id, account");
        let expected = "error: unknown field `qyt` on event `Order`
 --> rules.cep:7:20
  |
7 |   big as Order and qyt >= 10
  |                    ^^^
  = help: fields of Order: id, account";
        assert_eq!(d.render("rules.cep", source), expected);
        assert_eq!(d.to_string(), "unknown field `qyt` on event `Order`");
    }

    #[test]
    fn wide_line_numbers_and_empty_spans() {
        let source = format!("{}x = 1", "\n".repeat(11));
        let d = Diagnostic::new("boom", Span::new(11, 11));
        let expected = "error: boom
  --> f.cep:12:1
   |
12 | x = 1
   | ^";
        assert_eq!(d.render("f.cep", &source), expected);
    }

    #[test]
    fn multiline_span_is_cut_at_line_end_and_chars_are_counted() {
        let source = "é = \"ab\ncd\"";
        let d = Diagnostic::new("m", Span::new(5, source.len()));
        let r = d.render("f", source);
        assert!(r.contains("f:1:5"), "{r}");
        assert!(r.ends_with("1 | é = \"ab\n  |     ^^^"), "{r}");
    }

    #[test]
    fn line_col_clamps() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 3), (2, 1));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
        assert_eq!(line_col("é", 1), (1, 1));
        let d = Diagnostic::new("m", Span::new(50, 40));
        assert!(d.render("f", "abc").contains("f:1:4"));
    }
}
