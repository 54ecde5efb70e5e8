//! Syntax tree of a `.cep` file, exactly as written.
//!
//! Produced by [`crate::parse::parse_file`]; consumed by the lowering stage, which resolves names
//! against event schemas and checks types. Nothing here is resolved or type checked: an event type
//! such as `f64` or `venue` is kept as an [`Ident`], and a condition such as `qty >= 10` refers to
//! `qty` only by name.
//!
//! Every node carries a [`Span`] of byte offsets into the source so that later stages can point
//! carets at exactly the offending text (an [`Ident`]'s span covers exactly the identifier).

use crate::diag::Span;
use crate::params::ParamValue;

/// A whole `.cep` file: its items in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// Declarations and rules, in the order they were written.
    pub items: Vec<Item>,
}

/// One top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `enum NAME { A, B }`
    Enum(EnumDecl),
    /// `event NAME { field: type, ... }`
    Event(EventDecl),
    /// `rule NAME clause*` (boxed: a rule is much larger than a declaration).
    Rule(Box<RuleDecl>),
    /// `query NAME clause*`: a windowed query (boxed like a rule).
    Query(Box<QueryDecl>),
    /// `param NAME = LITERAL`: a value that `$NAME` stands for (already substituted in this
    /// tree: the parser replaces each reference with the parameter's value).
    Param(ParamItem),
}

/// `param NAME = LITERAL`
#[derive(Debug, Clone, PartialEq)]
pub struct ParamItem {
    /// The parameter's name (without `$`).
    pub name: Ident,
    /// The literal written in the declaration (its default).
    pub default: ParamValue,
    /// From `param` to the end of the literal.
    pub span: Span,
}

/// An identifier and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The identifier text.
    pub name: String,
    /// Span of exactly the identifier.
    pub span: Span,
}

/// `enum NAME { VARIANT, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct EnumDecl {
    /// The enum's name.
    pub name: Ident,
    /// Variants in declaration order (at least one).
    pub variants: Vec<Ident>,
    /// From `enum` to the closing `}`.
    pub span: Span,
}

/// `event NAME { field: type, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    /// The event type's name.
    pub name: Ident,
    /// Fields in declaration order (at least one).
    pub fields: Vec<FieldDecl>,
    /// From `event` to the closing `}`.
    pub span: Span,
}

/// `name: type` inside an event declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    /// The field's name.
    pub name: Ident,
    /// The type as written (`i64`, `u64`, `f64`, `bool`, `sym`, `ts`, `side`, or an enum name);
    /// checking it is the lowering's job.
    pub ty: Ident,
}

/// `rule NAME` followed by its clauses (each at most once, in any order).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecl {
    /// The rule's name.
    pub name: Ident,
    /// `from A, B`: event types the rule reads (empty if the clause is absent).
    pub from: Vec<Ident>,
    /// `partition by f, g`: partition key fields (empty if the clause is absent).
    pub partition_by: Vec<Ident>,
    /// `pattern ...` (required).
    pub pattern: Pattern,
    /// `define V as COND ...`, in source order (empty if the clause is absent).
    pub defines: Vec<Define>,
    /// `within DURATION`: nanoseconds, and the span of the duration literal.
    pub within: Option<(i64, Span)>,
    /// `select all|first`, and the span of the `all`/`first` word.
    pub select: Option<(Selection, Span)>,
    /// `after match SKIP`, and the span of the skip strategy (the words after `after match`).
    pub after_match: Option<(AfterMatch, Span)>,
    /// `emit NAME { ... }`.
    pub emit: Option<Emit>,
    /// `on timeout emit NAME { ... }`: the signal for partial matches that `within` expires (its
    /// span runs from `on` to the closing `}`).
    pub timeout: Option<Emit>,
    /// From `rule` to the end of its last clause.
    pub span: Span,
}

/// A pattern: one or more alternatives, most preferred first (`a -> b | c`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// Top-level alternatives separated by `|` (one for a plain sequence).
    pub alternatives: Vec<Sequence>,
    /// From the first element to the end of the last one.
    pub span: Span,
}

/// A sequence of elements: `a b{2,} -> c ->> !x -> d?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Elements in order (at least one).
    pub elements: Vec<Element>,
    /// From the first element to the end of the last one.
    pub span: Span,
}

/// One element of a sequence with its quantifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// A variable, a parenthesized group or a negation.
    pub kind: ElementKind,
    /// How many times the variable or group repeats; `{1,1}` greedy when none is written (and
    /// always for a negation).
    pub quantifier: Quantifier,
    /// Contiguity of the operator written *before* this element (juxtaposition = strict, `->` =
    /// relaxed, `->>` = any). A sequence's first element is `Strict`.
    pub contiguity: Contiguity,
    /// From the variable, `!` or `(` to the end of the quantifier.
    pub span: Span,
}

/// What a pattern element is.
#[derive(Debug, Clone, PartialEq)]
pub enum ElementKind {
    /// A pattern variable.
    Var(Ident),
    /// `( alternative | ... )`: a group of alternatives, most preferred first.
    Group(Vec<Sequence>),
    /// `!x`: no event satisfying `x` (strict: right after the previous element; relaxed: before
    /// the next element, or before `within` expires at the end of the pattern).
    Not(Ident),
}

impl Element {
    /// The variable this element takes or negates (`None` for a group).
    pub fn var(&self) -> Option<&Ident> {
        match &self.kind {
            ElementKind::Var(v) | ElementKind::Not(v) => Some(v),
            ElementKind::Group(_) => None,
        }
    }

    /// True if the element can match without taking an event.
    pub fn nullable(&self) -> bool {
        match &self.kind {
            ElementKind::Var(_) => self.quantifier.min == 0,
            ElementKind::Not(_) => true,
            ElementKind::Group(alts) => {
                self.quantifier.min == 0 || alts.iter().any(Sequence::nullable)
            }
        }
    }
}

impl Sequence {
    /// True if the sequence can match without taking an event.
    pub fn nullable(&self) -> bool {
        self.elements.iter().all(Element::nullable)
    }
}

/// `?`, `*`, `+`, `{n}`, `{n,}`, `{n,m}`, each optionally followed by `?` (reluctant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantifier {
    /// Minimum number of events.
    pub min: u32,
    /// Maximum number of events; `None` = unbounded.
    pub max: Option<u32>,
    /// `true` unless a trailing `?` made it reluctant.
    pub greedy: bool,
    /// The quantifier text; an empty span right after the variable when none was written.
    pub span: Span,
}

impl Quantifier {
    /// The implicit quantifier `{1,1}` (greedy), with an empty span at `at`.
    pub fn one(at: usize) -> Self {
        Quantifier {
            min: 1,
            max: Some(1),
            greedy: true,
            span: Span::new(at, at),
        }
    }
}

/// Event contiguity between two pattern elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contiguity {
    /// Juxtaposition: the next event in the partition must match.
    Strict,
    /// `->`: skip till next match.
    Relaxed,
    /// `->>`: skip till any match.
    Any,
}

/// `select all` (every match) or `select first` (preferred match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// `select all`
    All,
    /// `select first`
    First,
}

/// After-match skip strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterMatch {
    /// `no skip`
    NoSkip,
    /// `skip to next`
    ToNext,
    /// `skip past last`
    PastLast,
    /// `skip to first VAR`
    ToFirst(Ident),
    /// `skip to last VAR`
    ToLast(Ident),
}

/// `VAR as CONDITION` inside a `define` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Define {
    /// The pattern variable being defined.
    pub var: Ident,
    /// The condition an event must satisfy to bind to `var`.
    pub cond: Expr,
}

/// `emit SIGNAL { field: expr, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    /// The emitted signal's name.
    pub signal: Ident,
    /// Output fields in order (may be empty).
    pub fields: Vec<EmitField>,
    /// `score ...` after the field block (a rule's `emit` only).
    pub score: Option<Score>,
    /// From `emit` to the closing `}` (the score clause not included).
    pub span: Span,
}

/// `score EXPR` or `score using MODEL`, optionally followed by `threshold NUMBER`.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Where the score comes from.
    pub source: ScoreSource,
    /// `threshold NUMBER` (or `$param`), and the span of the number or reference.
    pub threshold: Option<(f64, Span)>,
    /// From `score` to the end of the clause.
    pub span: Span,
}

/// The source of a score.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreSource {
    /// `score EXPR`
    Expr(Expr),
    /// `score using NAME` or `score using "path"`.
    Model {
        /// The name, or the path without quotes.
        name: String,
        /// True for a string literal (a path).
        is_path: bool,
        /// The name or string literal as written.
        span: Span,
        /// 1-based line and column of `span`'s start (later stages have no source text).
        line_col: (u32, u32),
    },
}

/// One output field of an `emit` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitField {
    /// The output field's name.
    pub name: Ident,
    /// Its value; a bare `name` is shorthand for `name: name` and yields `ExprKind::Name` with the
    /// same span as `name`.
    pub value: Expr,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What kind of expression this is.
    pub kind: ExprKind,
    /// The expression's text (including enclosing parentheses when it was parenthesized).
    pub span: Span,
}

/// Expression variants.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// Integer literal, e.g. `1_000`.
    Int(u64),
    /// Float literal, e.g. `1.5`, `2e3`.
    Float(f64),
    /// Duration literal in nanoseconds, e.g. `500ms`.
    Duration(i64),
    /// String literal with escapes resolved.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// A bare name: a field of the current event, a pattern variable, an event type or an enum
    /// variant (the lowering decides which).
    Name(String),
    /// `func(args)`.
    Call {
        /// The function name.
        func: Ident,
        /// Arguments in order.
        args: Vec<Expr>,
    },
    /// `base.field`.
    Member {
        /// The expression before the dot.
        base: Box<Expr>,
        /// The field name after the dot.
        field: Ident,
    },
    /// `base[index]`.
    Index {
        /// The indexed expression.
        base: Box<Expr>,
        /// The literal index.
        index: u64,
    },
    /// `-x`, `not x`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// Its operand.
        operand: Box<Expr>,
    },
    /// `lhs op rhs`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `needle in haystack` / `needle not in haystack`.
    In {
        /// The value looked for.
        needle: Box<Expr>,
        /// Where it is looked for.
        haystack: InRhs,
        /// `true` for `not in`.
        negated: bool,
    },
}

/// Right-hand side of `in`.
#[derive(Debug, Clone, PartialEq)]
pub enum InRhs {
    /// A parenthesized list: `("buy", "sell")`.
    List(Vec<Expr>),
    /// Any other expression, e.g. `big.id` (the values bound so far).
    Expr(Box<Expr>),
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `not`
    Not,
}

/// Infix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==` or `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
}

impl BinaryOp {
    /// The operator as it is canonically written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }
}

/// `query NAME` followed by its clauses (each at most once, in any order):
/// `from A, B`, `where COND`, `group by f, g`, `window ...`, `having COND`, `emit NAME { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryDecl {
    /// The query's name.
    pub name: Ident,
    /// `from A, B` (required): event types or earlier queries' output types.
    pub from: Vec<Ident>,
    /// `where COND`: a per-event filter.
    pub filter: Option<Expr>,
    /// `group by f, g` (empty if the clause is absent).
    pub group_by: Vec<Ident>,
    /// `window ...` (required).
    pub window: Window,
    /// `having COND`: a filter over each closed window's aggregates.
    pub having: Option<Expr>,
    /// `emit NAME { ... }` (required): the derived event type and its fields.
    pub emit: Emit,
    /// From `query` to the end of its last clause.
    pub span: Span,
}

/// A duration literal in nanoseconds and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    /// Nanoseconds.
    pub ns: i64,
    /// The literal's text.
    pub span: Span,
}

/// `window tumbling D`, `window sliding D every S` or `window session gap G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kind and sizes.
    pub kind: WindowKind,
    /// From the word after `window` to the last duration.
    pub span: Span,
}

/// Window kinds of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `tumbling D`
    Tumbling(Duration),
    /// `sliding D every S`
    Sliding {
        /// Window size.
        size: Duration,
        /// Distance between window ends.
        every: Duration,
    },
    /// `session gap G`
    Session(Duration),
}
