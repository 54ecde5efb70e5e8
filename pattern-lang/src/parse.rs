//! Parser: `.cep` source text -> syntax tree ([`File`]).
//!
//! Input is the text of a `.cep` file; output is the AST [`File`] defined in [`crate::ast`], with a
//! byte [`Span`] on every node. The next stage is lowering, which resolves names against the
//! declared events and checks types; this module only checks syntax.
//!
//! The work is done in two steps:
//!
//! 1. a lexer built from small `nom` token parsers turns the text into tokens (identifiers,
//!    numbers, durations, strings, punctuation), skipping whitespace and `#` / `//` comments;
//! 2. a hand-written recursive-descent parser over those tokens builds the tree.
//!
//! The first error stops parsing and is returned as a [`Diagnostic`] saying what was expected at
//! that point, e.g. ``expected `}` or `,` after field, found `;` ``. No input makes the parser
//! panic; expressions nested deeper than a fixed limit are rejected rather than overflowing the
//! stack.

use nom::{
    IResult, Parser as _,
    branch::alt,
    bytes::complete::{tag, take_till, take_while},
    character::complete::{char, digit1, multispace1, one_of, satisfy},
    combinator::{opt, recognize, value},
    multi::many0_count,
    sequence::pair,
};

use crate::ast::{
    AfterMatch, BinaryOp, Contiguity, Define, Element, ElementKind, Emit, EmitField, EnumDecl,
    EventDecl, Expr, ExprKind, FieldDecl, File, Ident, InRhs, Item, Pattern, Quantifier, RuleDecl,
    Selection, Sequence, UnaryOp,
};
use crate::ast::{Duration, ParamItem, QueryDecl, Score, ScoreSource, Window, WindowKind};
use crate::diag::{Diagnostic, Span};
use crate::params::{ParamDecl, ParamValue};
use std::collections::BTreeMap;

/// Words that cannot name rules, events, enums, fields or pattern variables.
pub const RESERVED_WORDS: &[&str] = &[
    "event",
    "enum",
    "rule",
    "query",
    "from",
    "partition",
    "by",
    "pattern",
    "define",
    "within",
    "select",
    "after",
    "match",
    "emit",
    "as",
    "and",
    "or",
    "not",
    "in",
    "true",
    "false",
    "param",
];

/// Words that start a rule clause.
const CLAUSE_KEYWORDS: &[&str] = &[
    "from",
    "partition",
    "pattern",
    "define",
    "within",
    "select",
    "after",
    "emit",
];

/// Words that start a query clause (not reserved: outside a query they are ordinary names).
const QUERY_CLAUSE_KEYWORDS: &[&str] = &["from", "where", "group", "window", "having", "emit"];

/// Words that start a top-level item.
const ITEM_KEYWORDS: &[&str] = &["rule", "event", "enum", "query", "param"];

/// Duration units and their length in nanoseconds.
const DURATION_UNITS: &[(&str, i64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Maximum expression nesting (parentheses, calls, lists, prefix operators). Each level costs ten
/// parser frames (about 16 KiB of stack in an unoptimized build), so this keeps deeply nested
/// input from overflowing the stack; real conditions nest a handful of levels.
const MAX_DEPTH: usize = 32;

/// Maximum number of chained binary and postfix operators along one path of an expression (e.g.
/// the terms of `a + b + c`). Bounds the depth of the resulting tree, which later stages walk
/// recursively.
const MAX_CHAIN: usize = 256;

/// Whether `word` is reserved (see [`RESERVED_WORDS`]).
pub fn is_reserved(word: &str) -> bool {
    RESERVED_WORDS.contains(&word)
}

/// Parses a whole `.cep` file.
///
/// Returns the first syntax error as a [`Diagnostic`] whose span points at the offending token (or
/// just after the last token when the input ends too early). Empty input gives a file with no
/// items.
///
/// Parameters take their declared defaults (see [`parse_file_with_params`]).
pub fn parse_file(source: &str) -> Result<File, Diagnostic> {
    parse_file_with_params(source, &BTreeMap::new())
}

/// Parses a whole `.cep` file with some parameters set (see
/// [`crate::compile_with_params`]): every `$NAME` is replaced by its value while parsing.
///
/// The `param` declarations are read first (they may come after their uses), then the overrides
/// are checked against them (see [`crate::params`]), then the file is parsed with each reference
/// replaced by its value, so the tree holds no parameter references.
pub fn parse_file_with_params(
    source: &str,
    overrides: &BTreeMap<String, ParamValue>,
) -> Result<File, Diagnostic> {
    let mut p = Parser::new(source);
    let (decls, pending) = p.collect_params()?;
    p.values = crate::params::resolve(&decls, overrides)?;
    p.declared = decls.iter().map(|d| d.name.clone()).collect();
    match (p.file(), pending) {
        (Ok(file), None) => Ok(file),
        // A declaration that does not parse fails the main pass too, there or earlier.
        (Ok(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e),
        (Err(e), Some(bad_decl)) => {
            // A reference to the broken declaration reads as unknown: report the declaration.
            if e.span.start < bad_decl.span.start && !e.message.starts_with("unknown parameter") {
                Err(e)
            } else {
                Err(bad_decl)
            }
        }
    }
}

/// The `param` declarations of a `.cep` file, in source order. The whole file must parse with
/// the declared defaults.
pub fn params(source: &str) -> Result<Vec<ParamDecl>, Diagnostic> {
    let file = parse_file(source)?;
    Ok(file
        .items
        .into_iter()
        .filter_map(|i| match i {
            Item::Param(p) => Some(ParamDecl {
                name: p.name.name,
                default: p.default,
                span: p.span,
            }),
            _ => None,
        })
        .collect())
}

/// Parses a single expression (the whole input must be one expression).
///
/// Useful for tools and tests that enter the pipeline in the middle; spans are offsets into
/// `source`.
pub fn parse_expr(source: &str) -> Result<Expr, Diagnostic> {
    let mut p = Parser::new(source);
    let e = p.expr()?;
    if !matches!(p.tok().kind, Tok::Eof) {
        return Err(p.expected("an operator or the end of the expression"));
    }
    Ok(e)
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Identifier or keyword; its text is the source under the token's span.
    Ident,
    /// `$NAME`, a parameter reference; its text is the source under the token's span.
    Param,
    Int(u64),
    Float(f64),
    Duration(i64),
    Str(String),
    Punct(&'static str),
    /// A character no token starts with.
    Unknown,
    /// A lexical error; the parser reports it as soon as it reaches this token.
    Error(Box<Diagnostic>),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Tok,
    span: Span,
}

type LexResult<'a, O> = IResult<&'a str, O>;

fn line_comment(i: &str) -> LexResult<'_, &str> {
    recognize(pair(alt((tag("#"), tag("//"))), take_till(|c| c == '\n'))).parse(i)
}

/// Whitespace and comments.
fn trivia(i: &str) -> LexResult<'_, usize> {
    many0_count(alt((multispace1, line_comment))).parse(i)
}

fn ident(i: &str) -> LexResult<'_, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        word_tail,
    ))
    .parse(i)
}

/// Identifier characters (possibly none); also the letters right after a number.
fn word_tail(i: &str) -> LexResult<'_, &str> {
    take_while(|c: char| c.is_ascii_alphanumeric() || c == '_').parse(i)
}

/// Digits with `_` separators, starting with a digit.
fn digits(i: &str) -> LexResult<'_, &str> {
    recognize(pair(
        digit1,
        take_while(|c: char| c.is_ascii_digit() || c == '_'),
    ))
    .parse(i)
}

/// `digits ("." digit+)? (("e"|"E") ("+"|"-")? digit+)?`
fn number(i: &str) -> LexResult<'_, (&str, Option<&str>, Option<&str>)> {
    (
        digits,
        opt(recognize(pair(char('.'), digit1))),
        opt(recognize((one_of("eE"), opt(one_of("+-")), digit1))),
    )
        .parse(i)
}

fn punct(i: &str) -> LexResult<'_, &'static str> {
    alt((
        alt((
            value("->>", tag("->>")),
            value("->", tag("->")),
            value("==", tag("==")),
            value("!=", tag("!=")),
            value("<>", tag("<>")),
            value("<=", tag("<=")),
            value(">=", tag(">=")),
        )),
        alt((
            value("{", char('{')),
            value("}", char('}')),
            value("(", char('(')),
            value(")", char(')')),
            value("[", char('[')),
            value("]", char(']')),
            value(",", char(',')),
            value(":", char(':')),
            value(".", char('.')),
            value("?", char('?')),
            value("|", char('|')),
            value("!", char('!')),
            value("*", char('*')),
            value("+", char('+')),
            value("-", char('-')),
            value("/", char('/')),
            value("%", char('%')),
            value("=", char('=')),
            value("<", char('<')),
            value(">", char('>')),
        )),
    ))
    .parse(i)
}

/// Splits `source` into tokens. The result always ends with `Eof`; a lexical error becomes an
/// `Error` token right before it (nothing after the error is lexed).
fn lex(source: &str) -> Vec<Token> {
    let offset = |rest: &str| source.len() - rest.len();
    let mut tokens = Vec::new();
    let mut rest = source;
    loop {
        if let Ok((r, _)) = trivia(rest) {
            rest = r;
        }
        let start = offset(rest);
        if rest.is_empty() {
            break;
        }
        match lex_token(rest, start) {
            Ok((r, kind)) => {
                tokens.push(Token {
                    kind,
                    span: Span::new(start, offset(r)),
                });
                rest = r;
            }
            Err(diag) => {
                let span = diag.span;
                tokens.push(Token {
                    kind: Tok::Error(Box::new(diag)),
                    span,
                });
                break;
            }
        }
    }
    // End of input is reported right after the last real token, not after trailing blank lines.
    let end = tokens.last().map_or(0, |t| t.span.end);
    tokens.push(Token {
        kind: Tok::Eof,
        span: Span::new(end, end),
    });
    tokens
}

/// Lexes one token at the start of `rest` (non-empty, no leading trivia); `start` is its offset.
fn lex_token(rest: &str, start: usize) -> Result<(&str, Tok), Diagnostic> {
    if let Ok((r, _)) = ident(rest) {
        return Ok((r, Tok::Ident));
    }
    if let Some(after) = rest.strip_prefix('$') {
        return match ident(after) {
            Ok((r, _)) => Ok((r, Tok::Param)),
            Err(_) => Err(Diagnostic::new(
                "expected a parameter name after `$`",
                Span::new(start, start + 1),
            )
            .with_help("parameters are declared with `param NAME = VALUE` and used as `$NAME`")),
        };
    }
    if let Ok((r, parts)) = number(rest) {
        return lex_number(rest, r, start, parts);
    }
    if let Some(body) = rest.strip_prefix('"') {
        return lex_string(body, start).map(|(r, s)| (r, Tok::Str(s)));
    }
    if let Ok((r, p)) = punct(rest) {
        return Ok((r, Tok::Punct(p)));
    }
    let len = rest.chars().next().map_or(1, char::len_utf8);
    Ok((&rest[len..], Tok::Unknown))
}

fn lex_number<'a>(
    all: &'a str,
    after: &'a str,
    start: usize,
    (int_part, frac, exp): (&str, Option<&str>, Option<&str>),
) -> Result<(&'a str, Tok), Diagnostic> {
    let num_len = all.len() - after.len();
    let literal = &all[..num_len];
    // Letters glued to the number: a duration unit, or an error.
    let (rest, letters) = word_tail(after).unwrap_or((after, ""));
    let letters_span = Span::new(start + num_len, start + num_len + letters.len());
    let whole = Span::new(start, letters_span.end);
    let cleaned: String = literal.chars().filter(|&c| c != '_').collect();

    if frac.is_some() || exp.is_some() {
        if !letters.is_empty() {
            return Err(Diagnostic::new(
                format!("unexpected `{letters}` after number `{literal}`"),
                letters_span,
            )
            .with_help(
                "durations are whole numbers with a unit, e.g. `1500ms` rather than `1.5s`",
            ));
        }
        let value: f64 = cleaned
            .parse()
            .map_err(|_| Diagnostic::new(format!("invalid float literal `{literal}`"), whole))?;
        if !value.is_finite() {
            return Err(Diagnostic::new(
                format!("float literal `{literal}` is out of range"),
                whole,
            ));
        }
        return Ok((rest, Tok::Float(value)));
    }

    let digits_only: String = int_part.chars().filter(|&c| c != '_').collect();
    let value: u64 = digits_only.parse().map_err(|_| {
        Diagnostic::new(
            format!(
                "integer literal `{int_part}` is too large (the maximum is {})",
                u64::MAX
            ),
            Span::new(start, start + int_part.len()),
        )
    })?;
    if letters.is_empty() {
        return Ok((rest, Tok::Int(value)));
    }
    let Some(&(_, unit_ns)) = DURATION_UNITS.iter().find(|(u, _)| *u == letters) else {
        return Err(Diagnostic::new(
            format!(
                "expected a duration unit (ns, us, ms, s, m, h, d) after `{int_part}`, found `{letters}`"
            ),
            letters_span,
        )
        .with_help("durations are written like `500ms`, `2s` or `15m`; put a space between a number and a name"));
    };
    let nanos = i64::try_from(value)
        .ok()
        .and_then(|v| v.checked_mul(unit_ns))
        .ok_or_else(|| {
            Diagnostic::new(
                format!(
                    "duration `{int_part}{letters}` is too long (the maximum is {} ns, about 292 years)",
                    i64::MAX
                ),
                whole,
            )
        })?;
    Ok((rest, Tok::Duration(nanos)))
}

/// Lexes a string literal; `body` starts right after the opening quote at offset `start`.
fn lex_string(body: &str, start: usize) -> Result<(&str, String), Diagnostic> {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (r, chunk) =
            take_till::<_, _, nom::error::Error<&str>>(|c| c == '"' || c == '\\' || c == '\n')(
                rest,
            )
            .unwrap_or((rest, ""));
        out.push_str(chunk);
        rest = r;
        let mut chars = rest.chars();
        match chars.next() {
            Some('"') => return Ok((chars.as_str(), out)),
            Some('\\') => {
                let at = start + 1 + (body.len() - rest.len());
                match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) if c != '\n' => {
                        return Err(Diagnostic::new(
                            format!("unknown escape `\\{c}` in string literal"),
                            Span::new(at, at + 1 + c.len_utf8()),
                        )
                        .with_help(r#"the escapes are \" \\ \n \t"#));
                    }
                    _ => return Err(unterminated_string(start)),
                }
                rest = chars.as_str();
            }
            _ => return Err(unterminated_string(start)),
        }
    }
}

fn unterminated_string(start: usize) -> Diagnostic {
    Diagnostic::new("unterminated string literal", Span::new(start, start + 1))
        .with_help("a string literal must end with `\"` on the line where it starts")
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

type PResult<T> = Result<T, Diagnostic>;

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    pos: usize,
    /// End of the last consumed token.
    prev_end: usize,
    /// Current expression nesting, bounded by [`MAX_DEPTH`].
    depth: usize,
    /// Operators chained so far on the current path, bounded by [`MAX_CHAIN`].
    chain: usize,
    /// Returned by `tok()` should `pos` ever run past the tokens (it does not).
    eof: Token,
    /// The value of every declared parameter (defaults with overrides applied).
    values: BTreeMap<String, ParamValue>,
    /// Declared parameter names in source order, for messages.
    declared: Vec<String>,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Self {
        let toks = lex(src);
        let eof = toks.last().cloned().unwrap_or(Token {
            kind: Tok::Eof,
            span: Span::new(0, 0),
        });
        Parser {
            src,
            toks,
            pos: 0,
            prev_end: 0,
            depth: 0,
            chain: 0,
            eof,
            values: BTreeMap::new(),
            declared: Vec::new(),
        }
    }

    // ----- token helpers -----

    fn nth(&self, n: usize) -> &Token {
        self.toks.get(self.pos + n).unwrap_or(&self.eof)
    }

    fn tok(&self) -> &Token {
        self.nth(0)
    }

    fn text(&self, span: Span) -> &'s str {
        self.src.get(span.start..span.end).unwrap_or("")
    }

    /// The identifier text of the `n`th next token, if it is an identifier.
    fn word_at(&self, n: usize) -> Option<&'s str> {
        let t = self.nth(n);
        matches!(t.kind, Tok::Ident).then(|| self.text(t.span))
    }

    fn word(&self) -> Option<&'s str> {
        self.word_at(0)
    }

    fn is_word(&self, w: &str) -> bool {
        self.word() == Some(w)
    }

    /// The current token is an identifier that is not reserved.
    fn at_name(&self) -> bool {
        self.word().is_some_and(|w| !is_reserved(w))
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(self.tok().kind, Tok::Punct(q) if q == p)
    }

    fn at_eof(&self) -> bool {
        matches!(self.tok().kind, Tok::Eof)
    }

    /// Consumes the current token (never moves past `Eof`) and returns its span.
    fn bump(&mut self) -> Span {
        let span = self.tok().span;
        if !self.at_eof() {
            self.pos += 1;
            self.prev_end = span.end;
        }
        span
    }

    fn eat_punct(&mut self, p: &str) -> Option<Span> {
        self.at_punct(p).then(|| self.bump())
    }

    fn eat_word(&mut self, w: &str) -> Option<Span> {
        self.is_word(w).then(|| self.bump())
    }

    fn expect_punct(&mut self, p: &str, what: &str) -> PResult<Span> {
        self.eat_punct(p).ok_or_else(|| self.expected(what))
    }

    fn expect_word(&mut self, w: &str, what: &str) -> PResult<Span> {
        self.eat_word(w).ok_or_else(|| self.expected(what))
    }

    /// How the current token is named in "found ..." messages.
    fn describe(&self) -> String {
        let t = self.tok();
        match t.kind {
            Tok::Eof => "end of input".to_string(),
            Tok::Ident if is_reserved(self.text(t.span)) => {
                format!("keyword `{}`", self.text(t.span))
            }
            Tok::Str(_) => "a string literal".to_string(),
            _ => format!("`{}`", self.text(t.span)),
        }
    }

    /// "expected WHAT, found ..." at the current token, or the lexical error if the current
    /// token is one.
    fn expected(&self, what: &str) -> Diagnostic {
        let t = self.tok();
        if let Tok::Error(d) = &t.kind {
            return (**d).clone();
        }
        Diagnostic::new(
            format!("expected {what}, found {}", self.describe()),
            t.span,
        )
    }

    /// An identifier usable as a name. `context` (e.g. " after `->`") is appended to "expected
    /// WHAT" in the error message.
    fn expect_name(&mut self, what: &str, context: &str) -> PResult<Ident> {
        if let Some(w) = self.word() {
            let span = self.tok().span;
            if !is_reserved(w) {
                self.bump();
                return Ok(Ident {
                    name: w.to_string(),
                    span,
                });
            }
            if !CLAUSE_KEYWORDS.contains(&w) && !ITEM_KEYWORDS.contains(&w) {
                return Err(Diagnostic::new(
                    format!("`{w}` is a reserved word and cannot be used as {what}"),
                    span,
                ));
            }
            return Err(self
                .expected(&format!("{what}{context}"))
                .with_help(format!("`{w}` is a reserved word")));
        }
        Err(self.expected(&format!("{what}{context}")))
    }

    // ----- items -----

    fn file(&mut self) -> PResult<File> {
        let mut items = Vec::new();
        loop {
            match self.word() {
                _ if self.at_eof() => break,
                Some("enum") => items.push(Item::Enum(self.enum_decl()?)),
                Some("event") => items.push(Item::Event(self.event_decl()?)),
                Some("rule") => items.push(Item::Rule(Box::new(self.rule()?))),
                Some("query") => items.push(Item::Query(Box::new(self.query()?))),
                Some("param") => items.push(Item::Param(self.param_item()?)),
                other => {
                    let mut d =
                        self.expected("an item (`enum`, `event`, `rule`, `query`, or `param`)");
                    if let Some(s) = other.and_then(|w| suggest(w, ITEM_KEYWORDS)) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    return Err(d);
                }
            }
        }
        Ok(File { items })
    }

    /// `param NAME = LITERAL` (the current token is `param`).
    fn param_item(&mut self) -> PResult<ParamItem> {
        let kw = self.bump();
        let name = self.expect_name("a parameter name", " after `param`")?;
        self.expect_punct("=", &format!("`=` after parameter name `{}`", name.name))?;
        let minus = self.eat_punct("-");
        let t = self.tok();
        let span = t.span;
        let negative_duration = || {
            Diagnostic::new(
                "a duration parameter cannot be negative",
                minus.unwrap_or(span).to(span),
            )
        };
        let default = match (&t.kind, minus) {
            (Tok::Int(v), None) => ParamValue::Int(i64::try_from(*v).map_err(|_| {
                Diagnostic::new(
                    format!(
                        "integer parameter `{}` is too large (the maximum is {})",
                        self.text(span),
                        i64::MAX
                    ),
                    span,
                )
            })?),
            (Tok::Int(v), Some(m)) => {
                let neg = 0i128 - i128::from(*v);
                ParamValue::Int(i64::try_from(neg).map_err(|_| {
                    Diagnostic::new(
                        format!(
                            "integer parameter `-{}` is too small (the minimum is {})",
                            self.text(span),
                            i64::MIN
                        ),
                        m.to(span),
                    )
                })?)
            }
            (Tok::Float(v), m) => ParamValue::Float(if m.is_some() { -v } else { *v }),
            (Tok::Duration(_), Some(_)) => return Err(negative_duration()),
            (Tok::Duration(ns), None) => ParamValue::Duration(*ns),
            (Tok::Str(s), None) => ParamValue::Str(s.clone()),
            (Tok::Param, _) => {
                return Err(Diagnostic::new(
                    "a parameter's value must be a literal, not another parameter",
                    span,
                ));
            }
            _ => {
                let what = if minus.is_some() {
                    "a number after `-`"
                } else {
                    "a literal value after `=` (an integer, a float, a duration such as `10m`, or a string)"
                };
                return Err(self.expected(what));
            }
        };
        self.bump();
        Ok(ParamItem {
            name,
            default,
            span: kw.to(span),
        })
    }

    /// Reads every `param` declaration (`param` is reserved, so each occurrence starts one),
    /// wherever it is in the file, then rewinds to the start. Returns the declarations that
    /// parse and the first error of one that does not (reported by the main pass's caller); a
    /// name declared twice is an error right away.
    fn collect_params(&mut self) -> PResult<(Vec<ParamDecl>, Option<Diagnostic>)> {
        let mut decls: Vec<ParamDecl> = Vec::new();
        let mut pending = None;
        for i in 0..self.toks.len() {
            let t = &self.toks[i];
            if !(matches!(t.kind, Tok::Ident) && self.text(t.span) == "param") {
                continue;
            }
            self.pos = i;
            match self.param_item() {
                Ok(item) => {
                    if let Some(first) = decls.iter().find(|d| d.name == item.name.name) {
                        let (line, _) = crate::diag::line_col(self.src, first.span.start);
                        return Err(Diagnostic::new(
                            format!("parameter `${}` is declared twice", item.name.name),
                            item.name.span,
                        )
                        .with_help(format!("the first declaration is on line {line}")));
                    }
                    decls.push(ParamDecl {
                        name: item.name.name,
                        default: item.default,
                        span: item.span,
                    });
                }
                Err(e) => {
                    pending.get_or_insert(e);
                }
            }
        }
        self.pos = 0;
        self.prev_end = 0;
        Ok((decls, pending))
    }

    /// The value of the parameter reference at the current token (not consumed), with the
    /// reference's name (without `$`) and span. Unknown names are errors.
    fn param_ref(&self) -> PResult<(ParamValue, &'s str, Span)> {
        let span = self.tok().span;
        let name = self.text(span).get(1..).unwrap_or("");
        if let Some(v) = self.values.get(name) {
            return Ok((v.clone(), name, span));
        }
        let mut d = Diagnostic::new(format!("unknown parameter `${name}`"), span);
        let close = self
            .declared
            .iter()
            .map(|c| (edit_distance(name, c), c))
            .filter(|&(dist, c)| dist <= 2 && dist < c.len().min(name.len().max(1)))
            .min_by_key(|&(dist, _)| dist);
        d = match close {
            Some((_, c)) => d.with_help(format!("did you mean `${c}`?")),
            None if self.declared.is_empty() => d.with_help(format!(
                "declare it with `param {name} = VALUE` (the file declares no parameters)"
            )),
            None => {
                let names: Vec<String> = self.declared.iter().map(|c| format!("${c}")).collect();
                d.with_help(format!("declared parameters: {}", names.join(", ")))
            }
        };
        Err(d)
    }

    /// A kind mismatch at a parameter reference: `$name` holds `value` but `needs` is required.
    fn param_kind_error(name: &str, value: &ParamValue, span: Span, needs: &str) -> Diagnostic {
        Diagnostic::new(
            format!(
                "parameter `${name}` is {} (`{value}`), but {needs}",
                value.kind_with_article()
            ),
            span,
        )
    }

    /// A duration parameter at the current token for `clause` (e.g. "`within`"): consumed, with
    /// its span; it must be positive.
    fn duration_param(&mut self, clause: &str) -> PResult<Duration> {
        let (v, name, span) = self.param_ref()?;
        let ParamValue::Duration(ns) = v else {
            return Err(Self::param_kind_error(
                name,
                &v,
                span,
                &format!("{clause} needs a duration"),
            ));
        };
        if ns <= 0 {
            return Err(Diagnostic::new(
                format!("{clause} must be positive, but `${name}` is {v}"),
                span,
            ));
        }
        self.bump();
        Ok(Duration { ns, span })
    }

    fn enum_decl(&mut self) -> PResult<EnumDecl> {
        let kw = self.bump();
        let name = self.expect_name("an enum name", " after `enum`")?;
        self.expect_punct("{", &format!("`{{` after enum name `{}`", name.name))?;
        let mut variants = Vec::new();
        loop {
            let ctx = if variants.is_empty() { "" } else { " or `}`" };
            variants.push(self.expect_name("an enum variant", ctx)?);
            if self.eat_punct(",").is_some() {
                if self.at_punct("}") {
                    break;
                }
            } else if self.at_punct("}") {
                break;
            } else {
                return Err(self.expected("`}` or `,` after enum variant"));
            }
        }
        let close = self.bump();
        Ok(EnumDecl {
            name,
            variants,
            span: kw.to(close),
        })
    }

    fn event_decl(&mut self) -> PResult<EventDecl> {
        let kw = self.bump();
        let name = self.expect_name("an event name", " after `event`")?;
        self.expect_punct("{", &format!("`{{` after event name `{}`", name.name))?;
        let mut fields = Vec::new();
        loop {
            let ctx = if fields.is_empty() { "" } else { " or `}`" };
            let fname = self.expect_name("a field name", ctx)?;
            self.expect_punct(":", &format!("`:` after field name `{}`", fname.name))?;
            let ty = if self.at_name() {
                let span = self.bump();
                Ident {
                    name: self.text(span).to_string(),
                    span,
                }
            } else {
                return Err(self.expected(
                    "a field type (i64, u64, f64, bool, sym, ts, side, or an enum name)",
                ));
            };
            fields.push(FieldDecl { name: fname, ty });
            if self.eat_punct(",").is_some() {
                if self.at_punct("}") {
                    break;
                }
            } else if self.at_punct("}") {
                break;
            } else {
                return Err(self.expected("`}` or `,` after field"));
            }
        }
        let close = self.bump();
        Ok(EventDecl {
            name,
            fields,
            span: kw.to(close),
        })
    }

    fn rule(&mut self) -> PResult<RuleDecl> {
        let kw = self.bump();
        let name = self.expect_name("a rule name", " after `rule`")?;
        let mut from = None;
        let mut partition_by = None;
        let mut pattern = None;
        let mut defines = None;
        let mut within = None;
        let mut select = None;
        let mut after_match = None;
        let mut emit = None;
        let mut timeout = None;
        let mut last_clause = None;

        while let Some(clause) = self
            .word()
            .filter(|w| CLAUSE_KEYWORDS.contains(w) || self.at_timeout_clause())
        {
            let clause_span = self.tok().span;
            let seen = match clause {
                "from" => from.is_some(),
                "partition" => partition_by.is_some(),
                "pattern" => pattern.is_some(),
                "define" => defines.is_some(),
                "within" => within.is_some(),
                "select" => select.is_some(),
                "after" => after_match.is_some(),
                "on" => timeout.is_some(),
                _ => emit.is_some(),
            };
            if seen {
                return Err(Diagnostic::new(
                    format!(
                        "duplicate `{}` clause in rule `{}`",
                        if clause == "on" { "on timeout" } else { clause },
                        name.name
                    ),
                    clause_span,
                )
                .with_help("each clause may appear at most once per rule"));
            }
            self.bump();
            match clause {
                "from" => from = Some(self.name_list("an event name", " after `from`")?),
                "partition" => {
                    self.expect_word("by", "`by` after `partition`")?;
                    partition_by = Some(self.name_list("a field name", " after `partition by`")?);
                }
                "pattern" => pattern = Some(self.pattern()?),
                "define" => defines = Some(self.defines()?),
                "within" => within = Some(self.within()?),
                "select" => select = Some(self.select()?),
                "after" => after_match = Some(self.after_match()?),
                "on" => {
                    self.bump(); // `timeout`, checked by `at_timeout_clause`
                    self.expect_word("emit", "`emit` after `on timeout`")?;
                    timeout = Some(self.emit(clause_span, Some("`on timeout emit`"))?);
                }
                _ => emit = Some(self.emit(clause_span, None)?),
            }
            last_clause = Some(clause);
        }

        let at_item_end = self.at_eof() || self.word().is_some_and(|w| ITEM_KEYWORDS.contains(&w));
        if !at_item_end {
            let what = if last_clause == Some("define") {
                "an operator, another `VAR as CONDITION`, or a clause keyword (from, partition, pattern, define, within, select, after, emit)"
            } else {
                "a clause keyword (from, partition, pattern, define, within, select, after, emit) or a new item"
            };
            let mut d = self.expected(what);
            if let Some(s) = self.word().and_then(|w| suggest(w, CLAUSE_KEYWORDS)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            return Err(d);
        }

        let Some(pattern) = pattern else {
            return Err(Diagnostic::new(
                format!("rule `{}` has no `pattern` clause", name.name),
                name.span,
            )
            .with_help("every rule needs a pattern, e.g. `pattern a -> b`"));
        };
        Ok(RuleDecl {
            name,
            from: from.unwrap_or_default(),
            partition_by: partition_by.unwrap_or_default(),
            pattern,
            defines: defines.unwrap_or_default(),
            within,
            select,
            after_match,
            emit,
            timeout,
            span: kw.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    fn query(&mut self) -> PResult<QueryDecl> {
        let kw = self.bump();
        let name = self.expect_name("a query name", " after `query`")?;
        let mut from = None;
        let mut filter = None;
        let mut group_by = None;
        let mut window = None;
        let mut having = None;
        let mut emit = None;

        while let Some(clause) = self.word().filter(|w| QUERY_CLAUSE_KEYWORDS.contains(w)) {
            let clause_span = self.tok().span;
            let seen = match clause {
                "from" => from.is_some(),
                "where" => filter.is_some(),
                "group" => group_by.is_some(),
                "window" => window.is_some(),
                "having" => having.is_some(),
                _ => emit.is_some(),
            };
            if seen {
                return Err(Diagnostic::new(
                    format!("duplicate `{clause}` clause in query `{}`", name.name),
                    clause_span,
                )
                .with_help("each clause may appear at most once per query"));
            }
            self.bump();
            match clause {
                "from" => from = Some(self.name_list("an event name", " after `from`")?),
                "where" => filter = Some(self.expr()?),
                "group" => {
                    self.expect_word("by", "`by` after `group`")?;
                    group_by = Some(self.name_list("a field name", " after `group by`")?);
                }
                "window" => window = Some(self.window()?),
                "having" => having = Some(self.expr()?),
                _ => emit = Some(self.emit(clause_span, Some("a query's `emit`"))?),
            }
        }

        let at_item_end = self.at_eof() || self.word().is_some_and(|w| ITEM_KEYWORDS.contains(&w));
        if !at_item_end {
            let mut d = self.expected(
                "an operator, a query clause keyword (from, where, group, window, having, emit) or a new item",
            );
            if let Some(s) = self.word().and_then(|w| suggest(w, QUERY_CLAUSE_KEYWORDS)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            return Err(d);
        }
        let missing = |clause: &str, example: &str| {
            Diagnostic::new(
                format!("query `{}` has no `{clause}` clause", name.name),
                name.span,
            )
            .with_help(format!("every query needs one, e.g. `{example}`"))
        };
        let from = from.ok_or_else(|| missing("from", "from Trade"))?;
        let window = window.ok_or_else(|| missing("window", "window tumbling 1m"))?;
        let emit =
            emit.ok_or_else(|| missing("emit", "emit bar { symbol, close: last(price) }"))?;
        Ok(QueryDecl {
            name,
            from,
            filter,
            group_by: group_by.unwrap_or_default(),
            window,
            having,
            emit,
            span: kw.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    /// `tumbling D`, `sliding D every S` or `session gap G` (after `window`).
    fn window(&mut self) -> PResult<Window> {
        let start = self.tok().span;
        let kind = if self.eat_word("tumbling").is_some() {
            WindowKind::Tumbling(self.duration(
                "a window size (e.g. `5m`) after `tumbling`",
                "the window size",
            )?)
        } else if self.eat_word("sliding").is_some() {
            let size = self.duration(
                "a window size (e.g. `5m`) after `sliding`",
                "the window size",
            )?;
            self.expect_word("every", "`every` and the slide after the window size")?;
            let every = self.duration("a slide (e.g. `1m`) after `every`", "the slide")?;
            WindowKind::Sliding { size, every }
        } else if self.eat_word("session").is_some() {
            self.expect_word("gap", "`gap` after `session`")?;
            WindowKind::Session(
                self.duration("a gap (e.g. `30s`) after `session gap`", "the session gap")?,
            )
        } else {
            return Err(self.expected(
                "a window kind after `window` (`tumbling D`, `sliding D every S` or `session gap G`)",
            ));
        };
        Ok(Window {
            kind,
            span: start.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    /// A duration literal or parameter; `what` is what the error says was expected, `clause`
    /// what a parameter's value is for (e.g. "the window size").
    fn duration(&mut self, what: &str, clause: &str) -> PResult<Duration> {
        match self.tok().kind {
            Tok::Duration(ns) => {
                let span = self.bump();
                Ok(Duration { ns, span })
            }
            Tok::Param => self.duration_param(clause),
            Tok::Int(_) => Err(self
                .expected(what)
                .with_help("add a unit right after the number: ns, us, ms, s, m, h or d")),
            _ => Err(self.expected(what)),
        }
    }

    /// `NAME ("," NAME)*`
    fn name_list(&mut self, what: &str, context: &str) -> PResult<Vec<Ident>> {
        let mut names = vec![self.expect_name(what, context)?];
        while self.eat_punct(",").is_some() {
            names.push(self.expect_name(what, " after `,`")?);
        }
        Ok(names)
    }

    // ----- patterns -----

    /// `on timeout` starts the timeout clause (`on` is not reserved: only this pair is a clause).
    fn at_timeout_clause(&self) -> bool {
        self.is_word("on") && self.word_at(1) == Some("timeout")
    }

    /// Whether the current token ends a pattern (a clause or item keyword, or the input's end).
    fn at_pattern_end(&self) -> bool {
        self.at_eof()
            || self.at_timeout_clause()
            || self
                .word()
                .is_some_and(|w| CLAUSE_KEYWORDS.contains(&w) || ITEM_KEYWORDS.contains(&w))
    }

    fn pattern(&mut self) -> PResult<Pattern> {
        let alternatives = self.alternatives(true, " after `pattern`")?;
        let span = match (alternatives.first(), alternatives.last()) {
            (Some(f), Some(l)) => f.span.to(l.span),
            _ => Span::default(),
        };
        Ok(Pattern { alternatives, span })
    }

    /// `sequence ("|" sequence)*`; `top` is false inside parentheses.
    fn alternatives(&mut self, top: bool, context: &str) -> PResult<Vec<Sequence>> {
        let mut alts = vec![self.sequence(top, context)?];
        while self.eat_punct("|").is_some() {
            alts.push(self.sequence(top, " after `|`")?);
        }
        Ok(alts)
    }

    fn sequence(&mut self, top: bool, context: &str) -> PResult<Sequence> {
        let mut elements = vec![self.element(Contiguity::Strict, context)?];
        loop {
            let (contiguity, context) = if self.eat_punct("->>").is_some() {
                (Contiguity::Any, " after `->>`")
            } else if self.eat_punct("->").is_some() {
                (Contiguity::Relaxed, " after `->`")
            } else if self.at_punct("|")
                || (!top && self.at_punct(")"))
                || (top && self.at_pattern_end())
            {
                break;
            } else if self.at_name() || self.at_punct("!") || self.at_punct("(") {
                (Contiguity::Strict, "")
            } else {
                let what = if top {
                    "`->`, `->>`, `|`, a pattern element, or a clause keyword (define, within, select, after, emit)"
                } else {
                    "`->`, `->>`, `|`, a pattern element, or `)`"
                };
                let mut d = self.expected(what);
                // A misspelled clause keyword right after the pattern reads as a strictly
                // contiguous pattern variable; point that out.
                let misspelled = elements.iter().skip(1).find_map(|e| {
                    let ElementKind::Var(v) = &e.kind else {
                        return None;
                    };
                    let s = suggest(&v.name, CLAUSE_KEYWORDS)?;
                    (e.contiguity == Contiguity::Strict).then_some((v.name.as_str(), s))
                });
                if let Some((word, keyword)) = misspelled {
                    d = d.with_help(format!(
                        "`{word}` was read as a pattern variable; did you mean the clause keyword `{keyword}`?"
                    ));
                }
                return Err(d);
            };
            elements.push(self.element(contiguity, context)?);
        }
        // Negations: only in a top-level sequence, never first, never strict at the end.
        for (i, e) in elements.iter().enumerate() {
            let ElementKind::Not(v) = &e.kind else {
                continue;
            };
            if !top {
                return Err(Diagnostic::new(
                    format!("negation `!{}` inside parentheses", v.name),
                    e.span,
                )
                .with_help("a negation is an element of the top-level sequence only"));
            }
            if i == 0 {
                return Err(Diagnostic::new(
                    format!("a pattern cannot start with the negation `!{}`", v.name),
                    e.span,
                )
                .with_help("a negation says what must not happen after an earlier element, e.g. `a -> !x -> b`"));
            }
            if i + 1 == elements.len() && e.contiguity == Contiguity::Strict {
                return Err(Diagnostic::new(
                    format!(
                        "a pattern cannot end with the strict negation `!{}`",
                        v.name
                    ),
                    e.span,
                )
                .with_help(format!(
                    "for \"no `{}` before `within` expires\", write `-> !{}` and add `within`",
                    v.name, v.name
                )));
            }
        }
        let span = match (elements.first(), elements.last()) {
            (Some(f), Some(l)) => f.span.to(l.span),
            _ => Span::default(),
        };
        Ok(Sequence { elements, span })
    }

    fn element(&mut self, contiguity: Contiguity, context: &str) -> PResult<Element> {
        if let Some(bang) = self.eat_punct("!") {
            let var = self.expect_name("a pattern variable", " after `!`")?;
            let span = bang.to(var.span);
            if self.at_punct("?") || self.at_punct("*") || self.at_punct("+") || self.at_punct("{")
            {
                return Err(Diagnostic::new(
                    format!("the negation `!{}` cannot have a quantifier", var.name),
                    self.tok().span,
                )
                .with_help("a negation takes no events; quantify a group or variable instead"));
            }
            return Ok(Element {
                kind: ElementKind::Not(var),
                quantifier: Quantifier::one(span.end),
                contiguity,
                span,
            });
        }
        if let Some(open) = self.eat_punct("(") {
            if self.at_punct(")") {
                return Err(self.expected("a pattern element inside `( )`"));
            }
            let alts = self.alternatives(false, " after `(`")?;
            let close = self.expect_punct(")", "`)` to close the group")?;
            let quantifier = self.quantifier(close.end)?;
            let span = open.to(quantifier.span);
            let once = quantifier.min == 1 && quantifier.max == Some(1);
            if !once && alts.iter().any(Sequence::nullable) {
                return Err(Diagnostic::new(
                    "this quantified group can match no events",
                    span,
                )
                .with_help("every repetition of a group must take an event: make an element inside it mandatory"));
            }
            return Ok(Element {
                kind: ElementKind::Group(alts),
                quantifier,
                contiguity,
                span,
            });
        }
        let var = self.expect_name("a pattern variable", context)?;
        let quantifier = self.quantifier(var.span.end)?;
        Ok(Element {
            span: var.span.to(quantifier.span),
            kind: ElementKind::Var(var),
            quantifier,
            contiguity,
        })
    }

    /// An optional quantifier; `at` is where the implicit `{1,1}` gets its empty span.
    fn quantifier(&mut self, at: usize) -> PResult<Quantifier> {
        let start = self.tok().span;
        let (min, max) = if self.eat_punct("?").is_some() {
            (0, Some(1))
        } else if self.eat_punct("*").is_some() {
            (0, None)
        } else if self.eat_punct("+").is_some() {
            (1, None)
        } else if self.at_punct("{") {
            self.braced_quantifier()?
        } else {
            return Ok(Quantifier::one(at));
        };
        let greedy = self.eat_punct("?").is_none();
        Ok(Quantifier {
            min,
            max,
            greedy,
            span: start.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    /// `{n}`, `{n,}` or `{n,m}`.
    fn braced_quantifier(&mut self) -> PResult<(u32, Option<u32>)> {
        let open = self.bump();
        let min = self.quantifier_bound("a number in the quantifier")?;
        let (max, text) = if self.at_punct("}") {
            (Some(min), format!("{{{min}}}"))
        } else if self.eat_punct(",").is_some() {
            if self.at_punct("}") {
                (None, format!("{{{min},}}"))
            } else {
                let max = self.quantifier_bound("a number or `}` after `,` in the quantifier")?;
                (Some(max), format!("{{{min},{max}}}"))
            }
        } else {
            return Err(self.expected("`,` or `}` in the quantifier"));
        };
        let close = self.expect_punct("}", "`}` to close the quantifier")?;
        let span = open.to(close);
        match max {
            Some(max) if max < min => Err(Diagnostic::new(
                format!("quantifier `{text}`: minimum is larger than maximum"),
                span,
            )),
            Some(0) => Err(Diagnostic::new(
                format!("quantifier `{text}`: maximum must be at least 1"),
                span,
            )
            .with_help("use `?` or `*` for an element that may be absent")),
            _ => Ok((min, max)),
        }
    }

    fn quantifier_bound(&mut self, what: &str) -> PResult<u32> {
        if matches!(self.tok().kind, Tok::Param) {
            let (v, name, span) = self.param_ref()?;
            let ParamValue::Int(n) = v else {
                return Err(Self::param_kind_error(
                    name,
                    &v,
                    span,
                    "a quantifier bound needs an integer",
                ));
            };
            let n = u32::try_from(n).map_err(|_| {
                let why = if n < 0 {
                    "cannot be negative".to_string()
                } else {
                    format!("is at most {}", u32::MAX)
                };
                Diagnostic::new(
                    format!("quantifier bound `${name}` is {n}, but a bound {why}"),
                    span,
                )
            })?;
            self.bump();
            return Ok(n);
        }
        let t = self.tok();
        let (Tok::Int(v), span) = (&t.kind, t.span) else {
            return Err(self.expected(what));
        };
        let v = u32::try_from(*v).map_err(|_| {
            Diagnostic::new(
                format!(
                    "quantifier bound `{}` is too large (the maximum is {})",
                    self.text(span),
                    u32::MAX
                ),
                span,
            )
        })?;
        self.bump();
        Ok(v)
    }

    // ----- other clauses -----

    fn defines(&mut self) -> PResult<Vec<Define>> {
        let mut defines = Vec::new();
        let mut context = " after `define`";
        loop {
            let var = self.expect_name("a pattern variable", context)?;
            self.expect_word("as", &format!("`as` after `{}` in define", var.name))?;
            let cond = self.expr()?;
            defines.push(Define { var, cond });
            if self.eat_punct(",").is_some() {
                context = " after `,`";
                continue;
            }
            if self.at_name() && self.word_at(1) == Some("as") {
                context = "";
                continue;
            }
            break;
        }
        Ok(defines)
    }

    fn within(&mut self) -> PResult<(i64, Span)> {
        let t = self.tok();
        match t.kind {
            Tok::Duration(ns) => {
                let span = self.bump();
                Ok((ns, span))
            }
            Tok::Param => self.duration_param("`within`").map(|d| (d.ns, d.span)),
            Tok::Int(_) => Err(self
                .expected("a duration (e.g. `2s`, `500ms`) after `within`")
                .with_help("add a unit right after the number: ns, us, ms, s, m, h or d")),
            _ => Err(self.expected("a duration (e.g. `2s`, `500ms`) after `within`")),
        }
    }

    fn select(&mut self) -> PResult<(Selection, Span)> {
        if let Some(span) = self.eat_word("all") {
            Ok((Selection::All, span))
        } else if let Some(span) = self.eat_word("first") {
            Ok((Selection::First, span))
        } else {
            Err(self.expected("`all` or `first` after `select`"))
        }
    }

    fn after_match(&mut self) -> PResult<(AfterMatch, Span)> {
        self.expect_word("match", "`match` after `after`")?;
        let start = self.tok().span;
        let skip = if self.eat_word("no").is_some() {
            self.expect_word("skip", "`skip` after `no`")?;
            AfterMatch::NoSkip
        } else if self.eat_word("skip").is_some() {
            if self.eat_word("to").is_some() {
                if self.eat_word("next").is_some() {
                    AfterMatch::ToNext
                } else if self.eat_word("first").is_some() {
                    AfterMatch::ToFirst(
                        self.expect_name("a pattern variable", " after `skip to first`")?,
                    )
                } else if self.eat_word("last").is_some() {
                    AfterMatch::ToLast(
                        self.expect_name("a pattern variable", " after `skip to last`")?,
                    )
                } else {
                    return Err(self.expected("`next`, `first VAR`, or `last VAR` after `skip to`"));
                }
            } else if self.eat_word("past").is_some() {
                self.expect_word("last", "`last` after `skip past`")?;
                AfterMatch::PastLast
            } else {
                return Err(self.expected("`to` or `past` after `skip`"));
            }
        } else {
            return Err(self.expected(
                "a skip strategy after `after match` (`no skip`, `skip to next`, `skip past last`, `skip to first VAR`, or `skip to last VAR`)",
            ));
        };
        Ok((skip, start.to(Span::new(self.prev_end, self.prev_end))))
    }

    /// `emit NAME { ... }` (after `emit`) and, unless `no_score` names what this emit is
    /// (scores are for a rule's match signals only), an optional score clause.
    fn emit(&mut self, kw: Span, no_score: Option<&str>) -> PResult<Emit> {
        let signal = self.expect_name("a signal name", " after `emit`")?;
        self.expect_punct("{", &format!("`{{` after signal name `{}`", signal.name))?;
        let mut fields = Vec::new();
        while !self.at_punct("}") {
            let name = self.expect_name("an output field name or `}`", "")?;
            let value = if self.eat_punct(":").is_some() {
                self.expr()?
            } else {
                Expr {
                    kind: ExprKind::Name(name.name.clone()),
                    span: name.span,
                }
            };
            fields.push(EmitField { name, value });
            if self.eat_punct(",").is_none() && !self.at_punct("}") {
                let what = if self.at_name() {
                    "`}` or `,` after emit field (or `:` and a value after a field name)"
                } else {
                    "`}` or `,` after emit field"
                };
                return Err(self.expected(what));
            }
        }
        let close = self.bump();
        let score = if self.is_word("score") {
            if let Some(what) = no_score {
                return Err(Diagnostic::new(
                    format!("{what} cannot have a `score` clause"),
                    self.tok().span,
                )
                .with_help("a score belongs to a rule's `emit NAME { ... }`"));
            }
            Some(self.score()?)
        } else {
            None
        };
        Ok(Emit {
            signal,
            fields,
            score,
            span: kw.to(close),
        })
    }

    /// `score EXPR` or `score using MODEL`, then optionally `threshold NUMBER` (the current
    /// token is `score`).
    fn score(&mut self) -> PResult<Score> {
        let kw = self.bump();
        let model = self.is_word("using")
            && match &self.nth(1).kind {
                Tok::Str(_) => true,
                Tok::Ident => self.word_at(1).is_some_and(|w| !is_reserved(w)),
                _ => false,
            };
        let source = if model {
            self.bump();
            let t = self.tok();
            let span = t.span;
            let (name, is_path) = match &t.kind {
                Tok::Str(s) => (s.clone(), true),
                _ => (self.text(span).to_string(), false),
            };
            if name.is_empty() {
                return Err(Diagnostic::new("the model path is empty", span));
            }
            let (line, col) = crate::diag::line_col(self.src, span.start);
            self.bump();
            ScoreSource::Model {
                name,
                is_path,
                span,
                line_col: (
                    u32::try_from(line).unwrap_or(u32::MAX),
                    u32::try_from(col).unwrap_or(u32::MAX),
                ),
            }
        } else if self.is_word("using") && !matches!(self.nth(1).kind, Tok::Punct(_)) {
            self.bump();
            return Err(self.expected("a model name or a string path after `score using`"));
        } else {
            ScoreSource::Expr(self.expr()?)
        };
        let threshold = if self.eat_word("threshold").is_some() {
            Some(self.threshold()?)
        } else {
            None
        };
        Ok(Score {
            source,
            threshold,
            span: kw.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    /// A number, `-` and a number, or a numeric parameter (after `threshold`).
    fn threshold(&mut self) -> PResult<(f64, Span)> {
        let minus = self.eat_punct("-");
        let t = self.tok();
        let span = t.span;
        let v = match &t.kind {
            Tok::Int(v) => *v as f64,
            Tok::Float(v) => *v,
            Tok::Param => {
                let (v, name, span) = self.param_ref()?;
                match v {
                    ParamValue::Int(i) => i as f64,
                    ParamValue::Float(f) => f,
                    _ => {
                        return Err(Self::param_kind_error(
                            name,
                            &v,
                            span,
                            "`threshold` needs a number",
                        ));
                    }
                }
            }
            _ => return Err(self.expected("a number or a `$parameter` after `threshold`")),
        };
        self.bump();
        Ok(match minus {
            Some(m) => (-v, m.to(span)),
            None => (v, span),
        })
    }

    // ----- expressions -----

    /// Enters one nesting level; errors out beyond [`MAX_DEPTH`].
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
                self.tok().span,
            )
            .with_help("split the condition into simpler parts"));
        }
        Ok(())
    }

    /// Counts one more chained operator; errors out beyond [`MAX_CHAIN`].
    fn extend_chain(&mut self) -> PResult<()> {
        self.chain += 1;
        if self.chain > MAX_CHAIN {
            return Err(Diagnostic::new(
                format!("expression has too many chained operators (more than {MAX_CHAIN})"),
                self.tok().span,
            )
            .with_help("split the condition into simpler parts"));
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.or_expr()?;
        self.depth -= 1;
        Ok(e)
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let saved = self.chain;
        let mut lhs = self.and_expr()?;
        while self.eat_word("or").is_some() {
            self.extend_chain()?;
            let rhs = self.and_expr()?;
            lhs = binary(BinaryOp::Or, lhs, rhs);
        }
        self.chain = saved;
        Ok(lhs)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let saved = self.chain;
        let mut lhs = self.not_expr()?;
        while self.eat_word("and").is_some() {
            self.extend_chain()?;
            let rhs = self.not_expr()?;
            lhs = binary(BinaryOp::And, lhs, rhs);
        }
        self.chain = saved;
        Ok(lhs)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if let Some(kw) = self.eat_word("not") {
            self.enter()?;
            let operand = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr {
                span: kw.to(operand.span),
                kind: ExprKind::Unary {
                    op: UnaryOp::Not,
                    operand: Box::new(operand),
                },
            });
        }
        self.cmp_expr()
    }

    fn cmp_op(&self) -> Option<BinaryOp> {
        match self.tok().kind {
            Tok::Punct("==" | "=") => Some(BinaryOp::Eq),
            Tok::Punct("!=" | "<>") => Some(BinaryOp::Ne),
            Tok::Punct("<") => Some(BinaryOp::Lt),
            Tok::Punct("<=") => Some(BinaryOp::Le),
            Tok::Punct(">") => Some(BinaryOp::Gt),
            Tok::Punct(">=") => Some(BinaryOp::Ge),
            _ => None,
        }
    }

    fn at_not_in(&self) -> bool {
        self.is_word("not") && self.word_at(1) == Some("in")
    }

    fn cmp_expr(&mut self) -> PResult<Expr> {
        let lhs = self.add_expr()?;
        let e = if let Some(op) = self.cmp_op() {
            self.bump();
            let rhs = self.add_expr()?;
            binary(op, lhs, rhs)
        } else if self.is_word("in") || self.at_not_in() {
            let negated = self.eat_word("not").is_some();
            self.bump();
            let (haystack, end) = self.in_rhs()?;
            Expr {
                span: lhs.span.to(end),
                kind: ExprKind::In {
                    needle: Box::new(lhs),
                    haystack,
                    negated,
                },
            }
        } else {
            return Ok(lhs);
        };
        if self.cmp_op().is_some() || self.is_word("in") || self.at_not_in() {
            return Err(Diagnostic::new(
                format!(
                    "comparison operators cannot be chained, found {}",
                    self.describe()
                ),
                self.tok().span,
            )
            .with_help("combine comparisons with `and`, e.g. `a < b and b < c`"));
        }
        Ok(e)
    }

    /// The right side of `in`: a parenthesized list or an additive expression. Returns it with
    /// its span.
    fn in_rhs(&mut self) -> PResult<(InRhs, Span)> {
        if let Some(open) = self.eat_punct("(") {
            let mut items = Vec::new();
            loop {
                items.push(self.expr()?);
                if self.eat_punct(",").is_none() {
                    break;
                }
            }
            let close = self.expect_punct(")", "`,` or `)` in the list")?;
            return Ok((InRhs::List(items), open.to(close)));
        }
        let e = self.add_expr()?;
        let span = e.span;
        Ok((InRhs::Expr(Box::new(e)), span))
    }

    fn add_expr(&mut self) -> PResult<Expr> {
        let saved = self.chain;
        let mut lhs = self.mul_expr()?;
        loop {
            let op = match self.tok().kind {
                Tok::Punct("+") => BinaryOp::Add,
                Tok::Punct("-") => BinaryOp::Sub,
                _ => break,
            };
            self.bump();
            self.extend_chain()?;
            let rhs = self.mul_expr()?;
            lhs = binary(op, lhs, rhs);
        }
        self.chain = saved;
        Ok(lhs)
    }

    fn mul_expr(&mut self) -> PResult<Expr> {
        let saved = self.chain;
        let mut lhs = self.unary_expr()?;
        loop {
            let op = match self.tok().kind {
                Tok::Punct("*") => BinaryOp::Mul,
                Tok::Punct("/") => BinaryOp::Div,
                Tok::Punct("%") => BinaryOp::Rem,
                _ => break,
            };
            self.bump();
            self.extend_chain()?;
            let rhs = self.unary_expr()?;
            lhs = binary(op, lhs, rhs);
        }
        self.chain = saved;
        Ok(lhs)
    }

    fn unary_expr(&mut self) -> PResult<Expr> {
        if let Some(minus) = self.eat_punct("-") {
            self.enter()?;
            let operand = self.unary_expr()?;
            self.depth -= 1;
            return Ok(Expr {
                span: minus.to(operand.span),
                kind: ExprKind::Unary {
                    op: UnaryOp::Neg,
                    operand: Box::new(operand),
                },
            });
        }
        self.postfix_expr()
    }

    fn postfix_expr(&mut self) -> PResult<Expr> {
        let saved = self.chain;
        let mut e = self.primary()?;
        loop {
            if self.eat_punct(".").is_some() {
                self.extend_chain()?;
                let field = self.expect_name("a field name", " after `.`")?;
                e = Expr {
                    span: e.span.to(field.span),
                    kind: ExprKind::Member {
                        base: Box::new(e),
                        field,
                    },
                };
            } else if self.eat_punct("[").is_some() {
                self.extend_chain()?;
                let Tok::Int(index) = self.tok().kind else {
                    return Err(self.expected("an integer index after `[`"));
                };
                self.bump();
                let close = self.expect_punct("]", "`]` after the index")?;
                e = Expr {
                    span: e.span.to(close),
                    kind: ExprKind::Index {
                        base: Box::new(e),
                        index,
                    },
                };
            } else {
                break;
            }
        }
        self.chain = saved;
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.tok();
        let span = t.span;
        let kind = match &t.kind {
            Tok::Int(v) => ExprKind::Int(*v),
            Tok::Float(v) => ExprKind::Float(*v),
            Tok::Duration(v) => ExprKind::Duration(*v),
            Tok::Str(s) => ExprKind::Str(s.clone()),
            Tok::Param => {
                let (v, _, span) = self.param_ref()?;
                self.bump();
                return Ok(param_expr(&v, span));
            }
            Tok::Ident => match self.text(span) {
                "true" => ExprKind::Bool(true),
                "false" => ExprKind::Bool(false),
                w if is_reserved(w) => return Err(self.expected("an expression")),
                w => {
                    self.bump();
                    let name = Ident {
                        name: w.to_string(),
                        span,
                    };
                    if self.at_punct("(") {
                        return self.call(name);
                    }
                    return Ok(Expr {
                        kind: ExprKind::Name(name.name),
                        span,
                    });
                }
            },
            Tok::Punct("(") => {
                self.bump();
                let inner = self.expr()?;
                let close = self.expect_punct(")", "`)` or an operator")?;
                return Ok(Expr {
                    kind: inner.kind,
                    span: span.to(close),
                });
            }
            _ => return Err(self.expected("an expression")),
        };
        self.bump();
        Ok(Expr { kind, span })
    }

    /// `func(args)`; the current token is `(`.
    fn call(&mut self, func: Ident) -> PResult<Expr> {
        self.bump();
        let mut args = Vec::new();
        // `count(*)`: the star is kept as the name `*`; only windowed queries accept it.
        if self.at_punct("*") && matches!(self.nth(1).kind, Tok::Punct(")")) {
            let span = self.bump();
            args.push(Expr {
                kind: ExprKind::Name("*".into()),
                span,
            });
        }
        if !self.at_punct(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_punct(",").is_none() {
                    break;
                }
            }
        }
        let close = self.expect_punct(")", "`,` or `)` in the argument list")?;
        Ok(Expr {
            span: func.span.to(close),
            kind: ExprKind::Call { func, args },
        })
    }
}

/// The expression a parameter reference stands for: the literal as the parser reads it when
/// written in place (a negative number is `-` applied to its magnitude), spanning the reference.
fn param_expr(v: &ParamValue, span: Span) -> Expr {
    let neg = |kind: ExprKind| Expr {
        kind: ExprKind::Unary {
            op: UnaryOp::Neg,
            operand: Box::new(Expr { kind, span }),
        },
        span,
    };
    match v {
        ParamValue::Int(i) if *i < 0 => neg(ExprKind::Int(i.unsigned_abs())),
        ParamValue::Int(i) => Expr {
            kind: ExprKind::Int(i.unsigned_abs()),
            span,
        },
        ParamValue::Float(f) if f.is_sign_negative() => neg(ExprKind::Float(-f)),
        ParamValue::Float(f) => Expr {
            kind: ExprKind::Float(*f),
            span,
        },
        ParamValue::Duration(ns) if *ns < 0 => neg(ExprKind::Duration(ns.saturating_neg())),
        ParamValue::Duration(ns) => Expr {
            kind: ExprKind::Duration(*ns),
            span,
        },
        ParamValue::Str(s) => Expr {
            kind: ExprKind::Str(s.clone()),
            span,
        },
    }
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr {
        span: lhs.span.to(rhs.span),
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
    }
}

/// The candidate closest to `word` if it is a likely misspelling of it (and not `word` itself).
fn suggest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|&c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d > 0 && d <= 2 && d < c.len().min(word.len().max(1)))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            let del = prev[j + 1] + 1;
            let ins = cur[j] + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str) -> RuleDecl {
        match parse_file(src) {
            Ok(file) => match file.items.into_iter().next() {
                Some(Item::Rule(r)) => *r,
                other => panic!("expected a rule, got {other:?}"),
            },
            Err(e) => panic!("{}", e.render("t.cep", src)),
        }
    }

    fn expr(src: &str) -> Expr {
        parse_expr(src).unwrap_or_else(|e| panic!("{}", e.render("t.cep", src)))
    }

    /// A compact, fully parenthesized rendering of an expression for shape assertions.
    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(v) => v.to_string(),
            ExprKind::Float(v) => format!("{v:?}"),
            ExprKind::Duration(v) => format!("{v}ns"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Name(n) => n.clone(),
            ExprKind::Call { func, args } => format!(
                "{}({})",
                func.name,
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::Member { base, field } => format!("{}.{}", show(base), field.name),
            ExprKind::Index { base, index } => format!("{}[{index}]", show(base)),
            ExprKind::Unary { op, operand } => match op {
                UnaryOp::Neg => format!("(-{})", show(operand)),
                UnaryOp::Not => format!("(not {})", show(operand)),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", show(lhs), op.as_str(), show(rhs))
            }
            ExprKind::In {
                needle,
                haystack,
                negated,
            } => {
                let rhs = match haystack {
                    InRhs::List(items) => format!(
                        "[{}]",
                        items.iter().map(show).collect::<Vec<_>>().join(", ")
                    ),
                    InRhs::Expr(e) => show(e),
                };
                let op = if *negated { "not in" } else { "in" };
                format!("({} {op} {rhs})", show(needle))
            }
        }
    }

    fn text(src: &str, span: Span) -> &str {
        &src[span.start..span.end]
    }

    fn quants(src: &str) -> Vec<(String, u32, Option<u32>, bool)> {
        rule(src).pattern.alternatives[0]
            .elements
            .iter()
            .map(|e| {
                let q = e.quantifier;
                (e.var().unwrap().name.clone(), q.min, q.max, q.greedy)
            })
            .collect()
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(parse_file("").map(|f| f.items.len()), Ok(0));
        assert_eq!(
            parse_file("  # nothing\n// here either\n\n").map(|f| f.items.len()),
            Ok(0)
        );
    }

    #[test]
    fn enum_and_event_declarations() {
        let src = "enum venue { nasdaq, nyse, }\nevent Order { id: u64, venue: venue }";
        let file = parse_file(src).unwrap_or_else(|e| panic!("{e}"));
        let [Item::Enum(en), Item::Event(ev)] = file.items.as_slice() else {
            panic!("{file:?}")
        };
        assert_eq!(en.name.name, "venue");
        assert_eq!(text(src, en.name.span), "venue");
        let variants: Vec<_> = en.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(variants, ["nasdaq", "nyse"]);
        assert_eq!(text(src, en.span), "enum venue { nasdaq, nyse, }");
        assert_eq!(ev.name.name, "Order");
        assert_eq!(ev.fields.len(), 2);
        assert_eq!(ev.fields[1].name.name, "venue");
        assert_eq!(ev.fields[1].ty.name, "venue");
        assert_eq!(text(src, ev.fields[0].ty.span), "u64");
        assert_eq!(text(src, ev.span), "event Order { id: u64, venue: venue }");
    }

    #[test]
    fn quantifiers() {
        let q = quants("rule r pattern a b? c* d+ e{3} f{2,} g{2,5}? h?? i*? j+? k{1,}?");
        let expect = [
            ("a", 1, Some(1), true),
            ("b", 0, Some(1), true),
            ("c", 0, None, true),
            ("d", 1, None, true),
            ("e", 3, Some(3), true),
            ("f", 2, None, true),
            ("g", 2, Some(5), false),
            ("h", 0, Some(1), false),
            ("i", 0, None, false),
            ("j", 1, None, false),
            ("k", 1, None, false),
        ];
        let expect: Vec<_> = expect
            .iter()
            .map(|&(v, min, max, g)| (v.to_string(), min, max, g))
            .collect();
        assert_eq!(q, expect);
    }

    #[test]
    fn quantifier_and_element_spans() {
        let src = "rule r pattern big{2, 5}? -> c";
        let r = rule(src);
        let big = &r.pattern.alternatives[0].elements[0];
        assert_eq!(text(src, big.var().unwrap().span), "big");
        assert_eq!(text(src, big.quantifier.span), "{2, 5}?");
        assert_eq!(text(src, big.span), "big{2, 5}?");
        let c = &r.pattern.alternatives[0].elements[1];
        assert!(c.quantifier.span.is_empty());
        assert_eq!(c.quantifier.span.start, src.len());
        assert_eq!(text(src, r.pattern.span), "big{2, 5}? -> c");
    }

    #[test]
    fn contiguities() {
        let r = rule("rule r pattern a b -> c ->> d e+->f");
        let got: Vec<_> = r.pattern.alternatives[0]
            .elements
            .iter()
            .map(|e| (e.var().unwrap().name.as_str(), e.contiguity))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Contiguity::Strict),
                ("b", Contiguity::Strict),
                ("c", Contiguity::Relaxed),
                ("d", Contiguity::Any),
                ("e", Contiguity::Strict),
                ("f", Contiguity::Relaxed),
            ]
        );
    }

    #[test]
    fn every_skip_strategy() {
        let cases = [
            ("no skip", AfterMatch::NoSkip),
            ("skip to next", AfterMatch::ToNext),
            ("skip past last", AfterMatch::PastLast),
        ];
        for (words, expect) in cases {
            let src = format!("rule r pattern a b after match {words}");
            let r = rule(&src);
            let (skip, span) = r.after_match.clone().unwrap_or_else(|| panic!("{r:?}"));
            assert_eq!(skip, expect);
            assert_eq!(text(&src, span), words);
        }
        let src = "rule r pattern a b after match skip to first b";
        let Some((AfterMatch::ToFirst(v), _)) = rule(src).after_match else {
            panic!()
        };
        assert_eq!((v.name.as_str(), text(src, v.span)), ("b", "b"));
        let src = "rule r pattern a b after match skip to last a";
        let Some((AfterMatch::ToLast(v), _)) = rule(src).after_match else {
            panic!()
        };
        assert_eq!(v.name, "a");
    }

    #[test]
    fn durations() {
        let cases = [
            ("7ns", 7),
            ("3us", 3_000),
            ("500ms", 500_000_000),
            ("2s", 2_000_000_000),
            ("15m", 900_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1d", 86_400_000_000_000),
            ("1_500ms", 1_500_000_000),
        ];
        for (lit, ns) in cases {
            let src = format!("rule r pattern a within {lit}");
            let (got, span) = rule(&src).within.unwrap_or_default();
            assert_eq!(got, ns, "{lit}");
            assert_eq!(text(&src, span), lit);
            assert_eq!(expr(lit).kind, ExprKind::Duration(ns));
        }
        // `5 m` is an integer and a name, not a duration.
        assert_eq!(show(&expr("5 * m")), "(5 * m)");
        let err = parse_expr("300000d").unwrap_err();
        assert!(err.message.contains("too long"), "{err}");
    }

    #[test]
    fn literals() {
        assert_eq!(expr("1_000").kind, ExprKind::Int(1000));
        assert_eq!(expr(&u64::MAX.to_string()).kind, ExprKind::Int(u64::MAX));
        assert_eq!(expr("1.5").kind, ExprKind::Float(1.5));
        assert_eq!(expr("2e3").kind, ExprKind::Float(2000.0));
        assert_eq!(expr("1.5e-3").kind, ExprKind::Float(0.0015));
        assert_eq!(expr("true").kind, ExprKind::Bool(true));
        assert_eq!(expr("false").kind, ExprKind::Bool(false));
        assert_eq!(
            expr(r#""a \"q\" \\ \n\t""#).kind,
            ExprKind::Str("a \"q\" \\ \n\t".to_string())
        );
        assert_eq!(expr(r#""""#).kind, ExprKind::Str(String::new()));
    }

    #[test]
    fn precedence() {
        assert_eq!(
            show(&expr("a + b * c > 2 and not x or y")),
            "((((a + (b * c)) > 2) and (not x)) or y)"
        );
        assert_eq!(show(&expr("a - b - c")), "((a - b) - c)");
        assert_eq!(show(&expr("a / b % c * d")), "(((a / b) % c) * d)");
        assert_eq!(show(&expr("-a * -b")), "((-a) * (-b))");
        assert_eq!(show(&expr("(a + b) * c")), "((a + b) * c)");
        assert_eq!(show(&expr("not not a == b")), "(not (not (a == b)))");
        assert_eq!(show(&expr("a = 1 or b <> 2")), "((a == 1) or (b != 2))");
        assert_eq!(
            show(&expr("a <= 1 and b >= 2 and c < 3 and d > 4")),
            "((((a <= 1) and (b >= 2)) and (c < 3)) and (d > 4))"
        );
    }

    #[test]
    fn in_forms() {
        assert_eq!(show(&expr("id in big.id")), "(id in big.id)");
        assert_eq!(
            show(&expr(r#"side in ("buy", "sell")"#)),
            r#"(side in ["buy", "sell"])"#
        );
        assert_eq!(
            show(&expr("x not in (1, 2 + 3)")),
            "(x not in [1, (2 + 3)])"
        );
        assert_eq!(
            show(&expr("a + 1 in b.c and d")),
            "(((a + 1) in b.c) and d)"
        );
        assert_eq!(show(&expr("not x in y")), "(not (x in y))");
        let src = "id not in (1, 2)";
        assert_eq!(expr(src).span, Span::new(0, src.len()));
    }

    #[test]
    fn postfix_chains() {
        let src = "first(big).side";
        let e = expr(src);
        assert_eq!(show(&e), "first(big).side");
        let ExprKind::Member { base, field } = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(text(src, field.span), "side");
        assert_eq!(text(src, base.span), "first(big)");
        let ExprKind::Call { func, args } = &base.kind else {
            panic!()
        };
        assert_eq!(text(src, func.span), "first");
        assert_eq!(text(src, args[0].span), "big");

        let src = "v[2].qty";
        let e = expr(src);
        assert_eq!(show(&e), "v[2].qty");
        let ExprKind::Member { base, .. } = &e.kind else {
            panic!()
        };
        assert_eq!(text(src, base.span), "v[2]");

        assert_eq!(show(&expr("big.id")), "big.id");
        assert_eq!(show(&expr("a.b.c[0][1]")), "a.b.c[0][1]");
        assert_eq!(show(&expr("now()")), "now()");
        assert_eq!(show(&expr("f(a, g(b), 1)")), "f(a, g(b), 1)");
    }

    #[test]
    fn expression_spans() {
        let src = "rule r pattern big define\n  big as Order and qyt >= 10";
        let r = rule(src);
        let cond = &r.defines[0].cond;
        assert_eq!(text(src, cond.span), "Order and qyt >= 10");
        assert_eq!(text(src, r.defines[0].var.span), "big");
        let e = expr("Order and qyt >= 10");
        let ExprKind::Binary { rhs, .. } = &e.kind else {
            panic!()
        };
        let ExprKind::Binary { lhs, .. } = &rhs.kind else {
            panic!()
        };
        assert_eq!(lhs.span, Span::new(10, 13));
        assert_eq!(e.span, Span::new(0, 19));
        assert_eq!(expr(" ( a ) ").span, Span::new(1, 6));
    }

    #[test]
    fn defines_with_and_without_commas() {
        let r = rule("rule r pattern a b c define a as x > 1 b as y, c as not z");
        let vars: Vec<_> = r.defines.iter().map(|d| d.var.name.as_str()).collect();
        assert_eq!(vars, ["a", "b", "c"]);
        assert_eq!(show(&r.defines[2].cond), "(not z)");
    }

    #[test]
    fn clauses_in_any_order() {
        let src = "rule r emit s { } select all within 1m pattern a partition by k, j from A";
        let r = rule(src);
        assert_eq!(r.from.len(), 1);
        let keys: Vec<_> = r.partition_by.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["k", "j"]);
        assert_eq!(r.select.map(|s| s.0), Some(Selection::All));
        assert_eq!(r.within.map(|w| w.0), Some(60_000_000_000));
        assert_eq!(r.emit.map(|e| e.fields.len()), Some(0));
        assert_eq!(text(src, r.span), src);
    }

    #[test]
    fn emit_fields() {
        let src = "rule r pattern a emit sig { account, n: count(a), }";
        let r = rule(src);
        let emit = r.emit.unwrap_or_else(|| panic!("no emit"));
        assert_eq!(emit.signal.name, "sig");
        assert_eq!(text(src, emit.span), "emit sig { account, n: count(a), }");
        assert_eq!(emit.fields.len(), 2);
        assert_eq!(emit.fields[0].name.name, "account");
        assert_eq!(emit.fields[0].value.kind, ExprKind::Name("account".into()));
        assert_eq!(emit.fields[0].value.span, emit.fields[0].name.span);
        assert_eq!(show(&emit.fields[1].value), "count(a)");
    }

    #[test]
    fn several_rules_and_comments() {
        let src = "rule a pattern x // one\nrule b # two\n pattern y -> z within 5s\n";
        let file = parse_file(src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.items.len(), 2);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for src in [
            "(".repeat(100_000),
            "-".repeat(100_000),
            "not ".repeat(100_000),
            format!("{}1", "1 + ".repeat(100_000)),
            format!("a{}", ".b".repeat(100_000)),
        ] {
            let err = parse_expr(&src).unwrap_err();
            assert!(
                err.message.contains("nested too deeply")
                    || err.message.contains("too many chained"),
                "{err}"
            );
        }
        // Moderate nesting and long chains are fine.
        let src = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(expr(&src).kind, ExprKind::Int(1));
        let src = format!("{}1", "1 + ".repeat(MAX_CHAIN));
        assert!(parse_expr(&src).is_ok());
        let src = format!("{}1", "1 + ".repeat(MAX_CHAIN + 1));
        assert!(parse_expr(&src).is_err());
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for src in [
            "\u{feff}",
            "é",
            "rule é",
            "\"",
            "\"\\",
            "event E { a: é }",
            "1e",
            "1.",
            "1e+",
            "rule r pattern a{",
            "rule r pattern a{1,",
            "rule r pattern a{99999999999}",
            "rule r pattern a define a as \"x\\",
            "\r\n\r",
            "rule\u{0}",
            "#",
            "//",
            "/",
        ] {
            let _ = parse_file(src);
            let _ = parse_expr(src);
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("defin", CLAUSE_KEYWORDS), Some("define"));
        assert_eq!(suggest("wthin", CLAUSE_KEYWORDS), Some("within"));
        assert_eq!(suggest("define", CLAUSE_KEYWORDS), None);
        assert_eq!(suggest("a", CLAUSE_KEYWORDS), None);
        assert_eq!(suggest("zzzzzz", CLAUSE_KEYWORDS), None);
    }
}
