//! Lowering: syntax tree -> typed, resolved [`Program`].
//!
//! Input: an [`ast::File`] (from [`crate::parse_file`]) and optionally the catalog of the stream
//! the rules will run on (a tape's schemas). Output: a [`cep_core::rule::Program`] whose rules
//! carry [`cep_core::nfa::Nfa`]s built with [`cep_core::nfa::Builder`]. Next stage: a matcher.
//!
//! Windowed queries are lowered first, in file order (see `query`): each appends its output type
//! to the catalog as a derived type after the stream's types (whose ids never change), so rules
//! and later queries can read it with `from NAME`.
//!
//! Names are resolved here: event types, fields (to per-type slots), pattern variables, enum
//! variants and string literals (interned into the caller's [`SymbolTable`]). Every error is a
//! [`Diagnostic`] pointing at the offending text.

use std::collections::{BTreeMap, HashMap};

use cep_core::expr::{AggFunc, CmpOp, Expr, FieldAccess, Pick, VarId};
use cep_core::nfa::{self, Builder};
use cep_core::rule::{
    EmitField, EmitSpec, MAX_KEY_FIELDS, ModelRef, Program, Rule, ScoreSource, ScoreSpec,
};
use cep_core::schema::{Catalog, EnumId, FieldType, TypeId};
use cep_core::symbol::SymbolTable;
use cep_core::value::{ArithOp, Value};

use crate::ast::{self, BinaryOp, ExprKind, InRhs, Item, UnaryOp};
use crate::diag::{Diagnostic, Span};
use crate::params::ParamValue;

mod query;

/// Parses and lowers `source`.
///
/// With `stream` = `None` the file's own `event`/`enum` declarations form the catalog. With a
/// stream catalog (e.g. a tape's), every declared type must exist there with the declared fields
/// and types; rules are then compiled against the stream's type ids and slots.
/// Parameters take their declared defaults (see [`compile_with_params`]).
pub fn compile(
    source: &str,
    stream: Option<&Catalog>,
    symbols: &mut SymbolTable,
) -> Result<Program, Diagnostic> {
    compile_with_params(source, stream, symbols, &BTreeMap::new())
}

/// Parses and lowers `source` (see [`compile`]) with some parameters set: each `$NAME` stands
/// for its override when `overrides` has one, else for the default of its `param` declaration.
/// The program is the one compiled from the source with each value written in place of its
/// references. An override must name a declared parameter and have its kind (an integer is
/// accepted for a float).
pub fn compile_with_params(
    source: &str,
    stream: Option<&Catalog>,
    symbols: &mut SymbolTable,
    overrides: &BTreeMap<String, ParamValue>,
) -> Result<Program, Diagnostic> {
    let file = crate::parse::parse_file_with_params(source, overrides)?;
    lower_file(&file, stream, symbols)
}

/// Lowers a parsed file (see [`compile`]).
pub fn lower_file(
    file: &ast::File,
    stream: Option<&Catalog>,
    symbols: &mut SymbolTable,
) -> Result<Program, Diagnostic> {
    let declared = declare(file)?;
    let mut catalog = match stream {
        None => declared,
        Some(stream) => {
            check_compatible(file, &declared, stream)?;
            stream.clone()
        }
    };
    // Queries first: they append their output types, which rules anywhere in the file may read.
    let queries = query::lower_queries(file, &mut catalog, symbols)?;
    let mut rules = Vec::new();
    let mut names: HashMap<&str, Span> = HashMap::new();
    for item in &file.items {
        if let Item::Rule(r) = item {
            if names.insert(&r.name.name, r.name.span).is_some() {
                return Err(Diagnostic::new(
                    format!("rule `{}` is defined twice", r.name.name),
                    r.name.span,
                ));
            }
            rules.push(lower_rule(r, &catalog, symbols)?);
        }
    }
    Ok(Program {
        catalog,
        rules,
        queries,
    })
}

/// Builds the catalog of the file's own declarations.
fn declare(file: &ast::File) -> Result<Catalog, Diagnostic> {
    let mut c = Catalog::new();
    for item in &file.items {
        if let Item::Enum(e) = item {
            let variants: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
            for (i, v) in e.variants.iter().enumerate() {
                if e.variants[..i].iter().any(|w| w.name == v.name) {
                    return Err(Diagnostic::new(
                        format!("variant `{}` appears twice", v.name),
                        v.span,
                    ));
                }
            }
            c.add_enum(&e.name.name, &variants)
                .map_err(|err| Diagnostic::new(err.to_string(), e.name.span))?;
        }
    }
    for item in &file.items {
        if let Item::Event(ev) = item {
            let mut fields = Vec::with_capacity(ev.fields.len());
            for f in &ev.fields {
                let ty = c.field_type(&f.ty.name).ok_or_else(|| {
                    Diagnostic::new(format!("unknown field type `{}`", f.ty.name), f.ty.span).with_help(
                        "field types are i64, u64, f64, bool, sym, ts, side, or an enum declared with `enum`",
                    )
                })?;
                fields.push((f.name.name.as_str(), ty));
            }
            c.add_type(&ev.name.name, &fields).map_err(|err| {
                let span = match &err {
                    cep_core::schema::SchemaError::DuplicateField { field, .. }
                    | cep_core::schema::SchemaError::ReservedField(field) => ev
                        .fields
                        .iter()
                        .rev()
                        .find(|f| &f.name.name == field)
                        .map_or(ev.name.span, |f| f.name.span),
                    _ => ev.name.span,
                };
                Diagnostic::new(err.to_string(), span)
            })?;
        }
    }
    Ok(c)
}

/// Checks that the file's declarations are a view of the stream's catalog.
fn check_compatible(
    file: &ast::File,
    declared: &Catalog,
    stream: &Catalog,
) -> Result<(), Diagnostic> {
    for item in &file.items {
        match item {
            Item::Event(ev) => {
                let Some(st) = stream
                    .type_by_name(&ev.name.name)
                    .and_then(|t| stream.event_type(t))
                else {
                    let have: Vec<&str> = stream.types().iter().map(|t| t.name.as_str()).collect();
                    return Err(Diagnostic::new(
                        format!("event type `{}` is not in the input stream", ev.name.name),
                        ev.name.span,
                    )
                    .with_help(format!("the stream has: {}", have.join(", "))));
                };
                for f in &ev.fields {
                    let decl_ty = declared.field_type(&f.ty.name);
                    let Some(sf) = st.fields.iter().find(|sf| sf.name == f.name.name) else {
                        let have: Vec<&str> = st.fields.iter().map(|f| f.name.as_str()).collect();
                        return Err(Diagnostic::new(
                            format!(
                                "field `{}` of `{}` is not in the input stream",
                                f.name.name, ev.name.name
                            ),
                            f.name.span,
                        )
                        .with_help(format!(
                            "the stream's `{}` has: {}",
                            st.name,
                            have.join(", ")
                        )));
                    };
                    let same = match (decl_ty, sf.ty) {
                        (Some(FieldType::Enum(a)), FieldType::Enum(b)) => {
                            declared.enum_def(a).map(|d| &d.name)
                                == stream.enum_def(b).map(|d| &d.name)
                        }
                        (Some(a), b) => a == b,
                        (None, _) => false,
                    };
                    if !same {
                        return Err(Diagnostic::new(
                            format!(
                                "field `{}` is declared `{}` but the input stream has `{}`",
                                f.name.name,
                                f.ty.name,
                                stream.type_name(sf.ty)
                            ),
                            f.ty.span,
                        ));
                    }
                }
            }
            Item::Enum(e) => {
                let Some(se) = stream
                    .enum_by_name(&e.name.name)
                    .and_then(|id| stream.enum_def(id))
                else {
                    return Err(Diagnostic::new(
                        format!("enum `{}` is not in the input stream", e.name.name),
                        e.name.span,
                    ));
                };
                for v in &e.variants {
                    if !se.variants.contains(&v.name) {
                        return Err(Diagnostic::new(
                            format!(
                                "variant `{}` of `{}` is not in the input stream",
                                v.name, e.name.name
                            ),
                            v.span,
                        )
                        .with_help(format!(
                            "the stream's `{}` has: {}",
                            se.name,
                            se.variants.join(", ")
                        )));
                    }
                }
            }
            Item::Rule(_) | Item::Query(_) | Item::Param(_) => {}
        }
    }
    Ok(())
}

/// Clause keywords, for spotting misspellings that parse as pattern variables.
const CLAUSE_WORDS: &[&str] = &[
    "define",
    "within",
    "select",
    "after",
    "emit",
    "partition",
    "from",
];

/// The static type of a lowered expression.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Int,
    UInt,
    Float,
    Bool,
    Sym,
    Enum(EnumId),
    /// A string literal not yet coerced to a symbol or enum variant.
    Str(String),
}

impl Ty {
    fn of(ft: FieldType) -> Self {
        match ft {
            FieldType::I64 | FieldType::Ts => Ty::Int,
            FieldType::U64 => Ty::UInt,
            FieldType::F64 => Ty::Float,
            FieldType::Bool => Ty::Bool,
            FieldType::Sym => Ty::Sym,
            FieldType::Enum(e) => Ty::Enum(e),
        }
    }
    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Float)
    }
    fn describe(&self, c: &Catalog) -> String {
        match self {
            Ty::Int => "an integer".into(),
            Ty::UInt => "an unsigned integer".into(),
            Ty::Float => "a number (f64)".into(),
            Ty::Bool => "a boolean".into(),
            Ty::Sym => "a symbol (sym)".into(),
            Ty::Enum(e) => format!("an enum `{}`", c.type_name(FieldType::Enum(*e))),
            Ty::Str(_) => "a string literal".into(),
        }
    }
}

/// Where an expression is evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// A `define` condition: the current event is the candidate event.
    Define,
    /// An `emit` field: the current event is the match's last event; bare names are partition fields.
    Emit,
}

struct RuleCtx<'a> {
    catalog: &'a Catalog,
    from: Vec<TypeId>,
    vars: Vec<String>,
    /// Whether each variable is negated (`!x`): it binds nothing and cannot be referred to.
    negated: Vec<bool>,
    /// Types each variable can bind.
    var_types: Vec<Vec<TypeId>>,
    partition: Vec<String>,
}

struct ExprCtx<'a> {
    place: Place,
    /// Types the current event can have.
    current: &'a [TypeId],
    /// Inside an aggregate over this variable: `v.f` reads the aggregated event's field.
    agg_var: Option<VarId>,
}

fn lower_rule(
    r: &ast::RuleDecl,
    catalog: &Catalog,
    symbols: &mut SymbolTable,
) -> Result<Rule, Diagnostic> {
    // from
    let mut from = Vec::new();
    for t in &r.from {
        let id = catalog
            .type_by_name(&t.name)
            .ok_or_else(|| unknown_type(catalog, t))?;
        if !from.contains(&id) {
            from.push(id);
        }
    }
    query::check_from_kinds(catalog, &r.from)?;
    if from.is_empty() {
        from = query::stream_types(catalog);
    }
    if from.is_empty() {
        return Err(Diagnostic::new(
            format!(
                "rule `{}` reads no events: declare an event type",
                r.name.name
            ),
            r.name.span,
        ));
    }

    // pattern variables, in order of appearance (negated ones included: their conditions guard)
    let mut pattern_vars: Vec<(&ast::Ident, bool)> = Vec::new();
    for alt in &r.pattern.alternatives {
        collect_vars(alt, &mut pattern_vars);
    }
    let mut vars: Vec<String> = Vec::new();
    let mut negated: Vec<bool> = Vec::new();
    for &(v, neg) in &pattern_vars {
        if vars.contains(&v.name) {
            return Err(Diagnostic::new(
                format!("variable `{}` appears twice in the pattern", v.name),
                v.span,
            )
            .with_help("give each occurrence its own name and define both"));
        }
        if catalog.type_by_name(&v.name).is_some() {
            return Err(Diagnostic::new(
                format!(
                    "pattern variable `{}` has the name of an event type",
                    v.name
                ),
                v.span,
            )
            .with_help(format!(
                "use a lower-case name and `define x as {}`",
                v.name
            )));
        }
        vars.push(v.name.clone());
        negated.push(neg);
    }
    for &(v, _) in &pattern_vars {
        let undefined = !r.defines.iter().any(|d| d.var.name == v.name);
        if let Some(kw) = CLAUSE_WORDS
            .iter()
            .find(|k| undefined && similar(k, &v.name))
        {
            return Err(Diagnostic::new(
                format!("pattern variable `{}` is never defined; did you mean the clause `{kw}`?", v.name),
                v.span,
            )
            .with_help("an undefined pattern variable matches any event; a misspelled clause keyword reads as one"));
        }
    }
    let mut defines: Vec<Option<&ast::Define>> = vec![None; vars.len()];
    for d in &r.defines {
        let Some(i) = vars.iter().position(|v| *v == d.var.name) else {
            return Err(Diagnostic::new(
                format!("`{}` is defined but not used in the pattern", d.var.name),
                d.var.span,
            )
            .with_help(format!("pattern variables: {}", vars.join(", "))));
        };
        if defines[i].is_some() {
            return Err(Diagnostic::new(
                format!("`{}` is defined twice", d.var.name),
                d.var.span,
            ));
        }
        defines[i] = Some(d);
    }
    let mut var_types = Vec::with_capacity(vars.len());
    for d in &defines {
        let types = match d {
            Some(d) => type_tests(&d.cond, catalog, &from)?.unwrap_or_else(|| from.clone()),
            None => from.clone(),
        };
        var_types.push(types);
    }

    // partition by
    let mut partition_by = Vec::new();
    if r.partition_by.len() > MAX_KEY_FIELDS {
        return Err(Diagnostic::new(
            format!("at most {MAX_KEY_FIELDS} partition fields are supported"),
            r.partition_by[MAX_KEY_FIELDS].span,
        ));
    }
    for f in &r.partition_by {
        partition_by.push(resolve_field(catalog, &from, f, "partition key")?);
    }

    let ctx = RuleCtx {
        catalog,
        from: from.clone(),
        vars: vars.clone(),
        negated: negated.clone(),
        var_types,
        partition: r.partition_by.iter().map(|i| i.name.clone()).collect(),
    };

    let mut b = Builder::new();
    for (i, v) in vars.iter().enumerate() {
        let cond = match defines[i] {
            Some(d) => {
                let ec = ExprCtx {
                    place: Place::Define,
                    current: &ctx.var_types[i],
                    agg_var: None,
                };
                let (e, ty) = lower_expr(&ctx, &ec, &d.cond, symbols)?;
                expect_bool(catalog, &ty, &d.cond)?;
                e
            }
            None => Expr::Const(Value::Bool(true)),
        };
        b.var(v, cond);
    }
    // Trailing absences (`-> !x` with only optional elements after it) wait for `within`.
    if r.within.is_none() {
        for alt in &r.pattern.alternatives {
            let last_not = alt
                .elements
                .iter()
                .rposition(|e| matches!(e.kind, ast::ElementKind::Not(_)));
            if let Some(i) = last_not
                && alt.elements[i + 1..].iter().all(ast::Element::nullable)
            {
                let e = &alt.elements[i];
                let name = e.var().map_or("", |v| v.name.as_str());
                return Err(Diagnostic::new(
                    format!("the absence `!{name}` at the end of the pattern needs `within`"),
                    e.span,
                )
                .with_help(format!(
                    "add e.g. `within 15m`: the match completes when that much time has passed after its first event with no `{name}`"
                )));
            }
        }
    }
    if let Some(t) = &r.timeout
        && r.within.is_none()
    {
        return Err(Diagnostic::new(
            "`on timeout emit` needs `within`: partial matches time out when `within` expires",
            t.span,
        ));
    }
    b.pattern(pattern_node(&r.pattern.alternatives, &vars));
    if let Some((ns, span)) = r.within {
        if ns <= 0 {
            return Err(Diagnostic::new("`within` must be positive", span));
        }
        b.within(Some(ns));
    }
    if let Some((s, _)) = r.select {
        b.selection(match s {
            ast::Selection::All => nfa::Selection::All,
            ast::Selection::First => nfa::Selection::First,
        });
    }
    if let Some((a, _)) = &r.after_match {
        let var = |id: &ast::Ident| var_id(&ctx, &id.name, id.span);
        b.after_match(match a {
            ast::AfterMatch::NoSkip => nfa::AfterMatch::NoSkip,
            ast::AfterMatch::ToNext => nfa::AfterMatch::ToNext,
            ast::AfterMatch::PastLast => nfa::AfterMatch::PastLast,
            ast::AfterMatch::ToFirst(id) => nfa::AfterMatch::ToFirst(var(id)?),
            ast::AfterMatch::ToLast(id) => nfa::AfterMatch::ToLast(var(id)?),
        });
    }
    let nfa = b
        .build()
        .map_err(|e| Diagnostic::new(e.to_string(), r.pattern.span))?;

    let emit = match &r.emit {
        None => EmitSpec {
            signal: r.name.name.clone(),
            fields: Vec::new(),
            score: None,
        },
        Some(em) => lower_emit(&ctx, em, symbols)?,
    };
    let timeout = match &r.timeout {
        None => None,
        Some(em) => Some(lower_emit(&ctx, em, symbols)?),
    };
    Ok(Rule {
        name: r.name.name.clone(),
        from,
        partition_by,
        nfa,
        emit,
        timeout,
    })
}

/// Lowers an `emit` or `on timeout emit` clause. Fields are evaluated with the last bound event
/// as the current event; a variable with no events gives Null (aggregates: see `count`, `sum`).
fn lower_emit(
    ctx: &RuleCtx<'_>,
    em: &ast::Emit,
    symbols: &mut SymbolTable,
) -> Result<EmitSpec, Diagnostic> {
    let mut fields: Vec<EmitField> = Vec::new();
    for f in &em.fields {
        if fields.iter().any(|x| x.name == f.name.name) {
            return Err(Diagnostic::new(
                format!("emit field `{}` appears twice", f.name.name),
                f.name.span,
            ));
        }
        let ec = ExprCtx {
            place: Place::Emit,
            current: &ctx.from,
            agg_var: None,
        };
        let (expr, ty) = lower_expr(ctx, &ec, &f.value, symbols)?;
        let ty = match ty {
            Ty::Sym => Some(FieldType::Sym),
            Ty::Enum(e) => Some(FieldType::Enum(e)),
            Ty::Str(_) => {
                return Err(Diagnostic::new(
                    "a string literal cannot be emitted on its own",
                    f.value.span,
                ));
            }
            _ => None,
        };
        fields.push(EmitField {
            name: f.name.name.clone(),
            expr,
            ty,
        });
    }
    Ok(EmitSpec {
        signal: em.signal.name.clone(),
        fields,
        score: em
            .score
            .as_ref()
            .map(|s| lower_score(ctx, s, symbols))
            .transpose()?,
    })
}

/// Lowers a score clause: an expression must be numeric (it is evaluated like an emit field); a
/// model reference is kept for the scorer stage, which resolves and checks it.
fn lower_score(
    ctx: &RuleCtx<'_>,
    score: &ast::Score,
    symbols: &mut SymbolTable,
) -> Result<ScoreSpec, Diagnostic> {
    let source = match &score.source {
        ast::ScoreSource::Expr(e) => {
            let ec = ExprCtx {
                place: Place::Emit,
                current: &ctx.from,
                agg_var: None,
            };
            let (expr, ty) = lower_expr(ctx, &ec, e, symbols)?;
            if !ty.numeric() {
                return Err(Diagnostic::new(
                    format!(
                        "a score must be a number, but this is {}",
                        ty.describe(ctx.catalog)
                    ),
                    e.span,
                ));
            }
            ScoreSource::Expr(expr)
        }
        ast::ScoreSource::Model {
            name,
            is_path,
            line_col: (line, col),
            ..
        } => ScoreSource::Model(ModelRef {
            name: name.clone(),
            is_path: *is_path,
            line: *line,
            col: *col,
        }),
    };
    Ok(ScoreSpec {
        source,
        threshold: score.threshold.map(|(t, _)| t),
    })
}

/// The variables of a sequence in order of appearance, with whether each is negated.
fn collect_vars<'a>(seq: &'a ast::Sequence, out: &mut Vec<(&'a ast::Ident, bool)>) {
    for e in &seq.elements {
        match &e.kind {
            ast::ElementKind::Var(v) => out.push((v, false)),
            ast::ElementKind::Not(v) => out.push((v, true)),
            ast::ElementKind::Group(alts) => alts.iter().for_each(|a| collect_vars(a, out)),
        }
    }
}

fn contiguity(c: ast::Contiguity) -> nfa::Contiguity {
    match c {
        ast::Contiguity::Strict => nfa::Contiguity::Strict,
        ast::Contiguity::Relaxed => nfa::Contiguity::Relaxed,
        ast::Contiguity::Any => nfa::Contiguity::Any,
    }
}

fn quantifier(q: &ast::Quantifier) -> nfa::Quantifier {
    nfa::Quantifier {
        min: q.min,
        max: q.max,
        greedy: q.greedy,
    }
}

/// The automaton builder's pattern tree for a list of alternatives (variables by position in
/// `vars`, which holds every pattern variable).
fn pattern_node(alts: &[ast::Sequence], vars: &[String]) -> nfa::PatternNode {
    // `vars` was collected from these very elements, so the lookup always succeeds.
    let var = |v: &ast::Ident| vars.iter().position(|n| *n == v.name).unwrap_or(0) as VarId;
    let seq = |s: &ast::Sequence| {
        nfa::PatternNode::Seq(
            s.elements
                .iter()
                .map(|e| nfa::Step {
                    op: contiguity(e.contiguity),
                    node: match &e.kind {
                        ast::ElementKind::Var(v) => nfa::PatternNode::Var {
                            var: var(v),
                            quantifier: quantifier(&e.quantifier),
                        },
                        ast::ElementKind::Not(v) => nfa::PatternNode::Not(var(v)),
                        ast::ElementKind::Group(inner) => nfa::PatternNode::Group {
                            body: Box::new(pattern_node(inner, vars)),
                            quantifier: quantifier(&e.quantifier),
                        },
                    },
                })
                .collect(),
        )
    };
    match alts {
        [one] => seq(one),
        _ => nfa::PatternNode::Alt(alts.iter().map(seq).collect()),
    }
}

fn unknown_type(catalog: &Catalog, t: &ast::Ident) -> Diagnostic {
    let have: Vec<&str> = catalog.types().iter().map(|t| t.name.as_str()).collect();
    Diagnostic::new(format!("unknown event type `{}`", t.name), t.span).with_help(format!(
        "declared event types: {}",
        if have.is_empty() {
            "none".into()
        } else {
            have.join(", ")
        }
    ))
}

/// Event types named by the condition's top-level type tests (`Order and ...`, `(A or B) and ...`),
/// intersected; `None` if it has none.
fn type_tests(
    cond: &ast::Expr,
    catalog: &Catalog,
    from: &[TypeId],
) -> Result<Option<Vec<TypeId>>, Diagnostic> {
    fn disjunction(e: &ast::Expr, catalog: &Catalog) -> Option<Vec<(TypeId, Span)>> {
        match &e.kind {
            ExprKind::Name(n) => catalog.type_by_name(n).map(|t| vec![(t, e.span)]),
            ExprKind::Binary {
                op: BinaryOp::Or,
                lhs,
                rhs,
            } => {
                let mut a = disjunction(lhs, catalog)?;
                a.extend(disjunction(rhs, catalog)?);
                Some(a)
            }
            _ => None,
        }
    }
    fn conjuncts<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Expr>) {
        match &e.kind {
            ExprKind::Binary {
                op: BinaryOp::And,
                lhs,
                rhs,
            } => {
                conjuncts(lhs, out);
                conjuncts(rhs, out);
            }
            _ => out.push(e),
        }
    }
    let mut terms = Vec::new();
    conjuncts(cond, &mut terms);
    let mut result: Option<Vec<TypeId>> = None;
    for t in terms {
        if let Some(types) = disjunction(t, catalog) {
            for (ty, span) in &types {
                if !from.contains(ty) {
                    let name = catalog.event_type(*ty).map_or("?", |t| t.name.as_str());
                    return Err(Diagnostic::new(
                        format!("`{name}` is not read by this rule"),
                        *span,
                    )
                    .with_help(format!(
                        "add it to the rule's `from` clause: from ..., {name}"
                    )));
                }
            }
            let ids: Vec<TypeId> = types.into_iter().map(|(t, _)| t).collect();
            result = Some(match result {
                None => ids,
                Some(prev) => prev.into_iter().filter(|t| ids.contains(t)).collect(),
            });
        }
    }
    Ok(result)
}

/// Resolves a field that every type in `types` must have, with one type.
fn resolve_field(
    catalog: &Catalog,
    types: &[TypeId],
    f: &ast::Ident,
    what: &str,
) -> Result<FieldAccess, Diagnostic> {
    let mut slots = vec![None; catalog.types().len()];
    let mut ty: Option<FieldType> = None;
    let mut missing: Vec<&str> = Vec::new();
    for &t in types {
        let Some(et) = catalog.event_type(t) else {
            continue;
        };
        match et.slot(&f.name) {
            Some(s) => {
                let fty = et.fields[s].ty;
                if let Some(prev) = ty
                    && prev != fty
                {
                    return Err(Diagnostic::new(
                        format!(
                            "field `{}` has different types in different events ({} and {})",
                            f.name,
                            catalog.type_name(prev),
                            catalog.type_name(fty)
                        ),
                        f.span,
                    ));
                }
                ty = Some(fty);
                slots[t as usize] = Some(s as u8);
            }
            None => missing.push(&et.name),
        }
    }
    match ty {
        Some(ty) if missing.is_empty() => Ok(FieldAccess { name: f.name.clone(), ty, slots }),
        Some(_) => Err(Diagnostic::new(
            format!("{what} `{}` is not a field of `{}`", f.name, missing.join("`, `")),
            f.span,
        )
        .with_help("narrow the event type with a type test such as `Order and ...`, or add the field to every event type")),
        None => {
            let mut d = Diagnostic::new(
                format!(
                    "unknown field `{}` on event `{}`",
                    f.name,
                    types.iter().filter_map(|t| catalog.event_type(*t)).map(|t| t.name.as_str()).collect::<Vec<_>>().join("` or `")
                ),
                f.span,
            );
            if let Some(et) = types.first().and_then(|t| catalog.event_type(*t)) {
                let names: Vec<&str> = et.fields.iter().map(|f| f.name.as_str()).collect();
                let close = names.iter().find(|n| similar(n, &f.name));
                d = d.with_help(match close {
                    Some(c) => format!("did you mean `{c}`? fields of {}: {}", et.name, names.join(", ")),
                    None => format!("fields of {}: {}", et.name, names.join(", ")),
                });
            }
            Err(d)
        }
    }
}

/// Loose similarity for "did you mean": same letters with at most two edits (cheap Levenshtein).
fn similar(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

fn expect_bool(catalog: &Catalog, ty: &Ty, e: &ast::Expr) -> Result<(), Diagnostic> {
    if *ty == Ty::Bool {
        Ok(())
    } else {
        Err(Diagnostic::new(
            format!(
                "expected a condition (boolean), found {}",
                ty.describe(catalog)
            ),
            e.span,
        ))
    }
}

fn lower_expr(
    ctx: &RuleCtx<'_>,
    ec: &ExprCtx<'_>,
    e: &ast::Expr,
    symbols: &mut SymbolTable,
) -> Result<(Expr, Ty), Diagnostic> {
    let catalog = ctx.catalog;
    match &e.kind {
        ExprKind::Int(v) => Ok(match i64::try_from(*v) {
            Ok(i) => (Expr::Const(Value::I64(i)), Ty::Int),
            Err(_) => (Expr::Const(Value::U64(*v)), Ty::UInt),
        }),
        ExprKind::Float(f) => Ok((Expr::Const(Value::F64(*f)), Ty::Float)),
        ExprKind::Duration(ns) => Ok((Expr::Const(Value::I64(*ns)), Ty::Int)),
        ExprKind::Bool(b) => Ok((Expr::Const(Value::Bool(*b)), Ty::Bool)),
        ExprKind::Str(s) => Ok((Expr::Const(Value::Null), Ty::Str(s.clone()))),
        ExprKind::Name(n) => lower_name(ctx, ec, n, e.span),
        ExprKind::Member { base, field } => lower_member(ctx, ec, base, field, e.span),
        ExprKind::Index { base, .. } => {
            Err(Diagnostic::new("an indexed variable needs a field", e.span)
                .with_help(format!("write e.g. `{}.qty`", &text_of(base))))
        }
        ExprKind::Call { func, args } => lower_call(ctx, ec, func, args, e, symbols),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => {
            let (x, ty) = lower_expr(ctx, ec, operand, symbols)?;
            if !ty.numeric() {
                return Err(Diagnostic::new(
                    format!("`-` needs a number, found {}", ty.describe(catalog)),
                    operand.span,
                ));
            }
            let ty = if ty == Ty::UInt { Ty::Int } else { ty };
            Ok((Expr::Neg(Box::new(x)), ty))
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => {
            let (x, ty) = lower_expr(ctx, ec, operand, symbols)?;
            expect_bool(catalog, &ty, operand)?;
            Ok((Expr::Not(Box::new(x)), Ty::Bool))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (l, lt) = lower_expr(ctx, ec, lhs, symbols)?;
            let (r, rt) = lower_expr(ctx, ec, rhs, symbols)?;
            match op {
                BinaryOp::And | BinaryOp::Or => {
                    expect_bool(catalog, &lt, lhs)?;
                    expect_bool(catalog, &rt, rhs)?;
                    let (l, r) = (Box::new(l), Box::new(r));
                    Ok((
                        if *op == BinaryOp::And {
                            Expr::And(l, r)
                        } else {
                            Expr::Or(l, r)
                        },
                        Ty::Bool,
                    ))
                }
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                    let (aop, ty) = arith_types(catalog, *op, (&lt, lhs), (&rt, rhs))?;
                    Ok((Expr::Arith(aop, Box::new(l), Box::new(r)), ty))
                }
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => {
                    let (l, lt) = coerce(catalog, l, lt, &rt, lhs, symbols)?;
                    let (r, rt) = coerce(catalog, r, rt, &lt, rhs, symbols)?;
                    let ordered = !matches!(op, BinaryOp::Eq | BinaryOp::Ne);
                    check_comparable(catalog, &lt, &rt, ordered, e.span, op.as_str())?;
                    let cop = cmp_op(*op);
                    Ok((Expr::Cmp(cop, Box::new(l), Box::new(r)), Ty::Bool))
                }
            }
        }
        ExprKind::In {
            needle,
            haystack,
            negated,
        } => {
            let (n, nt) = lower_expr(ctx, ec, needle, symbols)?;
            let expr = match haystack {
                InRhs::List(items) => {
                    let mut list = Vec::with_capacity(items.len());
                    let mut nt2 = nt.clone();
                    let mut n2 = n;
                    for it in items {
                        let (x, xt) = lower_expr(ctx, ec, it, symbols)?;
                        let (x, xt) = coerce(catalog, x, xt, &nt2, it, symbols)?;
                        let (nn, nnt) = coerce(catalog, n2, nt2, &xt, needle, symbols)?;
                        n2 = nn;
                        nt2 = nnt;
                        check_comparable(catalog, &nt2, &xt, false, it.span, "in")?;
                        list.push(x);
                    }
                    Expr::InList {
                        needle: Box::new(n2),
                        list,
                    }
                }
                InRhs::Expr(h) => {
                    let ExprKind::Member { base, field } = &h.kind else {
                        return Err(Diagnostic::new(
                            "expected a list `(a, b)` or a variable's field such as `big.id`",
                            h.span,
                        ));
                    };
                    let ExprKind::Name(vname) = &base.kind else {
                        return Err(Diagnostic::new(
                            "expected a pattern variable before `.`",
                            base.span,
                        ));
                    };
                    let var = var_id(ctx, vname, base.span)?;
                    let fa = resolve_field(catalog, &ctx.var_types[var as usize], field, "field")?;
                    let ft = Ty::of(fa.ty);
                    let (n, nt) = coerce(catalog, n, nt, &ft, needle, symbols)?;
                    check_comparable(catalog, &nt, &ft, false, e.span, "in")?;
                    Expr::InVar {
                        needle: Box::new(n),
                        var,
                        field: fa,
                    }
                }
            };
            Ok((
                if *negated {
                    Expr::Not(Box::new(expr))
                } else {
                    expr
                },
                Ty::Bool,
            ))
        }
    }
}

fn text_of(e: &ast::Expr) -> String {
    match &e.kind {
        ExprKind::Name(n) => n.clone(),
        ExprKind::Index { base, index } => format!("{}[{index}]", text_of(base)),
        ExprKind::Call { func, .. } => format!("{}(..)", func.name),
        _ => "v".into(),
    }
}

fn var_id(ctx: &RuleCtx<'_>, name: &str, span: Span) -> Result<VarId, Diagnostic> {
    let i = ctx.vars.iter().position(|v| v == name).ok_or_else(|| {
        Diagnostic::new(format!("`{name}` is not a pattern variable"), span)
            .with_help(format!("pattern variables: {}", ctx.vars.join(", ")))
    })?;
    if ctx.negated.get(i).copied().unwrap_or(false) {
        return Err(Diagnostic::new(
            format!("`{name}` is negated (`!{name}`) and binds no events"),
            span,
        )
        .with_help(
            "a negated variable appears only in the pattern, with its condition in `define`",
        ));
    }
    Ok(i as VarId)
}

fn lower_name(
    ctx: &RuleCtx<'_>,
    ec: &ExprCtx<'_>,
    n: &str,
    span: Span,
) -> Result<(Expr, Ty), Diagnostic> {
    let catalog = ctx.catalog;
    match n {
        "ts" => return Ok((Expr::Ts, Ty::Int)),
        "seq" => return Ok((Expr::Seq, Ty::UInt)),
        _ => {}
    }
    if ec.place == Place::Emit {
        if ctx.partition.iter().any(|p| p == n) {
            let fa = resolve_field(
                catalog,
                &ctx.from,
                &ast::Ident {
                    name: n.into(),
                    span,
                },
                "field",
            )?;
            let ty = Ty::of(fa.ty);
            return Ok((Expr::Field(fa), ty));
        }
        if ctx.vars.iter().any(|v| v == n) {
            return Err(Diagnostic::new(
                format!("`{n}` is a pattern variable; emit one of its fields"),
                span,
            )
            .with_help(format!(
                "e.g. `{n}.price`, `first({n}).price` or `count({n})`"
            )));
        }
        return Err(Diagnostic::new(format!("`{n}` is not a partition key field"), span).with_help(
            "in `emit`, a bare name must be a `partition by` field; use `var.field` for the fields of matched events",
        ));
    }
    let ident = ast::Ident {
        name: n.into(),
        span,
    };
    let has_field = ec.current.iter().any(|t| {
        catalog
            .event_type(*t)
            .is_some_and(|et| et.slot(n).is_some())
    });
    if has_field {
        let fa = resolve_field(catalog, ec.current, &ident, "field")?;
        let ty = Ty::of(fa.ty);
        return Ok((Expr::Field(fa), ty));
    }
    if let Some(t) = catalog.type_by_name(n) {
        return Ok((Expr::TypeIs(vec![t]), Ty::Bool));
    }
    if ctx.vars.iter().any(|v| v == n) {
        return Err(
            Diagnostic::new(format!("`{n}` is a pattern variable, not a value"), span).with_help(
                format!(
                    "use one of its fields, e.g. `{n}.price`, `first({n}).price` or `count({n})`"
                ),
            ),
        );
    }
    resolve_field(catalog, ec.current, &ident, "field").map(|fa| {
        let ty = Ty::of(fa.ty);
        (Expr::Field(fa), ty)
    })
}

fn lower_member(
    ctx: &RuleCtx<'_>,
    ec: &ExprCtx<'_>,
    base: &ast::Expr,
    field: &ast::Ident,
    span: Span,
) -> Result<(Expr, Ty), Diagnostic> {
    let catalog = ctx.catalog;
    let (var, pick, vspan) = match &base.kind {
        ExprKind::Name(v) => (var_id(ctx, v, base.span)?, Pick::Last, base.span),
        ExprKind::Index { base: b, index } => match &b.kind {
            ExprKind::Name(v) => {
                let i = u32::try_from(*index)
                    .map_err(|_| Diagnostic::new("index too large", base.span))?;
                (var_id(ctx, v, b.span)?, Pick::Index(i), b.span)
            }
            _ => {
                return Err(Diagnostic::new(
                    "only pattern variables can be indexed",
                    b.span,
                ));
            }
        },
        ExprKind::Call { func, args } if matches!(func.name.as_str(), "first" | "last") => {
            let [arg] = args.as_slice() else {
                return Err(Diagnostic::new(
                    format!("`{}` takes one pattern variable", func.name),
                    func.span,
                ));
            };
            let ExprKind::Name(v) = &arg.kind else {
                return Err(Diagnostic::new("expected a pattern variable", arg.span));
            };
            let pick = if func.name == "first" {
                Pick::First
            } else {
                Pick::Last
            };
            (var_id(ctx, v, arg.span)?, pick, arg.span)
        }
        _ => {
            return Err(Diagnostic::new(
                "expected a pattern variable, `first(v)`, `last(v)` or `v[i]` before `.`",
                base.span,
            ));
        }
    };
    let _ = (vspan, span);
    let types = &ctx.var_types[var as usize];
    if field.name == "ts" {
        if ec.agg_var == Some(var) && pick == Pick::Last && matches!(base.kind, ExprKind::Name(_)) {
            return Ok((Expr::Ts, Ty::Int));
        }
        return Ok((
            Expr::VarField {
                var,
                pick,
                field: None,
            },
            Ty::Int,
        ));
    }
    let fa = resolve_field(catalog, types, field, "field")?;
    let ty = Ty::of(fa.ty);
    if ec.agg_var == Some(var) && matches!(base.kind, ExprKind::Name(_)) {
        // Inside `sum(v.x ...)`, `v.x` is the field of each aggregated event.
        return Ok((Expr::Field(fa), ty));
    }
    Ok((
        Expr::VarField {
            var,
            pick,
            field: Some(fa),
        },
        ty,
    ))
}

fn lower_call(
    ctx: &RuleCtx<'_>,
    ec: &ExprCtx<'_>,
    func: &ast::Ident,
    args: &[ast::Expr],
    whole: &ast::Expr,
    symbols: &mut SymbolTable,
) -> Result<(Expr, Ty), Diagnostic> {
    let catalog = ctx.catalog;
    match func.name.as_str() {
        "count" => {
            let [arg] = args else {
                return Err(Diagnostic::new(
                    "`count` takes one pattern variable: count(v)",
                    whole.span,
                ));
            };
            let ExprKind::Name(v) = &arg.kind else {
                return Err(Diagnostic::new("expected a pattern variable", arg.span));
            };
            Ok((Expr::VarCount(var_id(ctx, v, arg.span)?), Ty::Int))
        }
        "sum" | "avg" | "min" | "max" => {
            let [arg] = args else {
                return Err(Diagnostic::new(
                    format!(
                        "`{}` takes one argument, e.g. {}(v.qty)",
                        func.name, func.name
                    ),
                    whole.span,
                ));
            };
            let var = agg_variable(ctx, arg)?.ok_or_else(|| {
                Diagnostic::new(
                    format!(
                        "`{}` aggregates a pattern variable's events: write e.g. `{}(v.qty)`",
                        func.name, func.name
                    ),
                    arg.span,
                )
            })?;
            let types = ctx.var_types[var as usize].clone();
            let inner = ExprCtx {
                place: ec.place,
                current: &types,
                agg_var: Some(var),
            };
            let (a, ty) = lower_expr(ctx, &inner, arg, symbols)?;
            if !ty.numeric() {
                return Err(Diagnostic::new(
                    format!(
                        "`{}` needs numbers, found {}",
                        func.name,
                        ty.describe(catalog)
                    ),
                    arg.span,
                ));
            }
            let f = match func.name.as_str() {
                "sum" => AggFunc::Sum,
                "avg" => AggFunc::Avg,
                "min" => AggFunc::Min,
                _ => AggFunc::Max,
            };
            let ty = if f == AggFunc::Avg { Ty::Float } else { ty };
            Ok((
                Expr::VarAgg {
                    func: f,
                    var,
                    arg: Box::new(a),
                },
                ty,
            ))
        }
        "prev" => {
            let (fname, n) = match args {
                [f] => (f, 1u32),
                [f, n] => match n.kind {
                    ExprKind::Int(k) if (1..=1_000).contains(&k) => (f, k as u32),
                    _ => {
                        return Err(Diagnostic::new(
                            "`prev` distance must be an integer from 1 to 1000",
                            n.span,
                        ));
                    }
                },
                _ => {
                    return Err(Diagnostic::new(
                        "`prev` takes a field and a distance: prev(price, 1)",
                        whole.span,
                    ));
                }
            };
            let ExprKind::Name(name) = &fname.kind else {
                return Err(Diagnostic::new(
                    "`prev` takes a field name of the partition's events",
                    fname.span,
                ));
            };
            // The previous event can be of any type the rule reads: resolve over those having the field.
            let having: Vec<TypeId> = ctx
                .from
                .iter()
                .copied()
                .filter(|t| {
                    catalog
                        .event_type(*t)
                        .is_some_and(|et| et.slot(name).is_some())
                })
                .collect();
            let ident = ast::Ident {
                name: name.clone(),
                span: fname.span,
            };
            let fa = resolve_field(
                catalog,
                if having.is_empty() {
                    &ctx.from
                } else {
                    &having
                },
                &ident,
                "field",
            )?;
            let ty = Ty::of(fa.ty);
            Ok((Expr::Prev { field: fa, n }, ty))
        }
        "first" | "last" => Err(Diagnostic::new(
            format!("`{}(v)` needs a field: `{}(v).price`", func.name, func.name),
            whole.span,
        )),
        other => Err(
            Diagnostic::new(format!("unknown function `{other}`"), func.span)
                .with_help("functions: count, sum, avg, min, max, first, last, prev"),
        ),
    }
}

/// The variable an aggregate argument ranges over: the only variable referenced as `v.field`.
fn agg_variable(ctx: &RuleCtx<'_>, e: &ast::Expr) -> Result<Option<VarId>, Diagnostic> {
    let mut found: Option<(VarId, Span)> = None;
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match &x.kind {
            ExprKind::Member { base, .. } => {
                if let ExprKind::Name(v) = &base.kind
                    && let Some(i) = ctx.vars.iter().position(|n| n == v)
                {
                    let id = i as VarId;
                    if let Some((prev, _)) = found
                        && prev != id
                    {
                        return Err(Diagnostic::new(
                            "an aggregate ranges over one pattern variable; this one mixes two",
                            x.span,
                        ));
                    }
                    found = Some((id, x.span));
                } else {
                    stack.push(base);
                }
            }
            ExprKind::Unary { operand, .. } => stack.push(operand),
            ExprKind::Binary { lhs, rhs, .. } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            ExprKind::Call { args, .. } => stack.extend(args.iter()),
            _ => {}
        }
    }
    Ok(found.map(|f| f.0))
}

/// Coerces a string literal to the other side's symbol or enum type.
fn coerce(
    catalog: &Catalog,
    e: Expr,
    ty: Ty,
    other: &Ty,
    src: &ast::Expr,
    symbols: &mut SymbolTable,
) -> Result<(Expr, Ty), Diagnostic> {
    let Ty::Str(s) = &ty else { return Ok((e, ty)) };
    match other {
        Ty::Sym => Ok((Expr::Const(Value::Sym(symbols.intern(s))), Ty::Sym)),
        Ty::Enum(id) => {
            let def = catalog
                .enum_def(*id)
                .ok_or_else(|| Diagnostic::new("unknown enum", src.span))?;
            match def.variants.iter().position(|v| v.eq_ignore_ascii_case(s)) {
                Some(i) => Ok((Expr::Const(Value::Enum(i as u32)), Ty::Enum(*id))),
                None => Err(Diagnostic::new(
                    format!("\"{s}\" is not a variant of enum `{}`", def.name),
                    src.span,
                )
                .with_help(format!("variants: {}", def.variants.join(", ")))),
            }
        }
        Ty::Str(_) => Ok((e, ty)),
        _ => Err(Diagnostic::new(
            format!(
                "a string literal cannot be compared with {}",
                other.describe(catalog)
            ),
            src.span,
        )),
    }
}

fn check_comparable(
    catalog: &Catalog,
    a: &Ty,
    b: &Ty,
    ordered: bool,
    span: Span,
    op: &str,
) -> Result<(), Diagnostic> {
    let ok = match (a, b) {
        (x, y) if x.numeric() && y.numeric() => true,
        (Ty::Sym, Ty::Sym) | (Ty::Bool, Ty::Bool) => !ordered,
        (Ty::Enum(x), Ty::Enum(y)) => x == y && !ordered,
        _ => false,
    };
    if ok {
        Ok(())
    } else if ordered && a == b {
        Err(Diagnostic::new(
            format!(
                "`{op}` needs numbers; {} can only be tested with == or !=",
                a.describe(catalog)
            ),
            span,
        ))
    } else {
        Err(Diagnostic::new(
            format!(
                "cannot compare {} with {} using `{op}`",
                a.describe(catalog),
                b.describe(catalog)
            ),
            span,
        ))
    }
}

/// The comparison a comparison operator (`==` `!=` `<` `<=` `>` `>=`) stands for.
fn cmp_op(op: BinaryOp) -> CmpOp {
    match op {
        BinaryOp::Eq => CmpOp::Eq,
        BinaryOp::Ne => CmpOp::Ne,
        BinaryOp::Lt => CmpOp::Lt,
        BinaryOp::Le => CmpOp::Le,
        BinaryOp::Gt => CmpOp::Gt,
        _ => CmpOp::Ge,
    }
}

/// Checks that both operands of arithmetic `op` are numbers; returns the operator and the
/// result type (`/` and anything with an `f64` give `f64`, otherwise an integer).
fn arith_types(
    catalog: &Catalog,
    op: BinaryOp,
    lhs: (&Ty, &ast::Expr),
    rhs: (&Ty, &ast::Expr),
) -> Result<(ArithOp, Ty), Diagnostic> {
    for (t, x) in [lhs, rhs] {
        if !t.numeric() {
            return Err(Diagnostic::new(
                format!(
                    "`{}` needs numbers, found {}",
                    op.as_str(),
                    t.describe(catalog)
                ),
                x.span,
            ));
        }
    }
    let aop = match op {
        BinaryOp::Add => ArithOp::Add,
        BinaryOp::Sub => ArithOp::Sub,
        BinaryOp::Mul => ArithOp::Mul,
        BinaryOp::Div => ArithOp::Div,
        _ => ArithOp::Rem,
    };
    let ty = if aop == ArithOp::Div || *lhs.0 == Ty::Float || *rhs.0 == Ty::Float {
        Ty::Float
    } else {
        Ty::Int
    };
    Ok((aop, ty))
}
