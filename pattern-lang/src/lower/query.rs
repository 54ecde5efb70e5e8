//! Lowering of windowed queries: [`ast::QueryDecl`] -> [`cep_core::query::Query`].
//!
//! Input: the file's `query` items in file order and the catalog built so far (the stream's or the
//! file's types). Output: one [`Query`] per item, each with its output type appended to the
//! catalog as a derived type (so later queries and every rule can read it with `from NAME`).
//! Next stage: rule lowering, then the engine's query operators.
//!
//! Per-event expressions (`where`, aggregate arguments) are lowered by the rule expression
//! lowering with no pattern variables; per-window expressions (`having`, `emit`) are lowered here
//! to [`WindowExpr`]s over the query's distinct aggregates, `ema`s and group-by fields.

use cep_core::expr::{CmpOp, Expr};
use cep_core::query::{
    Aggregate, Ema, MAX_WINDOWS_PER_EVENT, OutputField, Query, WindowExpr, WindowFunc, WindowSpec,
};
use cep_core::rule::MAX_KEY_FIELDS;
use cep_core::schema::{Catalog, FieldType, SchemaError, TypeId};
use cep_core::symbol::SymbolTable;
use cep_core::value::Value;

use super::{
    ExprCtx, Place, RuleCtx, Ty, arith_types, check_comparable, cmp_op, coerce, expect_bool,
    lower_expr, resolve_field, type_tests, unknown_type,
};
use crate::ast::{self, BinaryOp, ExprKind, InRhs, Item, UnaryOp, WindowKind};
use crate::diag::{Diagnostic, Span};

/// Aggregate functions of queries (besides `ema`).
const AGGREGATES: &[&str] = &[
    "count", "sum", "avg", "min", "max", "first", "last", "stddev",
];

/// Lowers every query of `file` in order, appending their output types to `catalog`.
pub(super) fn lower_queries(
    file: &ast::File,
    catalog: &mut Catalog,
    symbols: &mut SymbolTable,
) -> Result<Vec<Query>, Diagnostic> {
    let decls: Vec<&ast::QueryDecl> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Query(q) => Some(&**q),
            _ => None,
        })
        .collect();
    let mut queries: Vec<Query> = Vec::with_capacity(decls.len());
    for (k, q) in decls.iter().enumerate() {
        let clash = queries.iter().any(|p| p.name == q.name.name)
            || file
                .items
                .iter()
                .any(|i| matches!(i, Item::Rule(r) if r.name.name == q.name.name));
        if clash {
            return Err(Diagnostic::new(
                format!("`{}` is defined twice", q.name.name),
                q.name.span,
            )
            .with_help("rules and queries need distinct names"));
        }
        let later: Vec<&str> = decls[k + 1..]
            .iter()
            .map(|d| d.emit.signal.name.as_str())
            .collect();
        queries.push(lower_query(q, catalog, symbols, &later)?);
    }
    Ok(queries)
}

/// Checks that a `from` list names only stream types or only query outputs (a rule or query
/// reads one kind of stream: derived events arrive at window ends, in their own order).
pub(super) fn check_from_kinds(catalog: &Catalog, from: &[ast::Ident]) -> Result<(), Diagnostic> {
    let kind = |t: &ast::Ident| {
        catalog
            .type_by_name(&t.name)
            .map(|id| catalog.is_derived(id))
    };
    let Some(first) = from.iter().find_map(kind) else {
        return Ok(());
    };
    match from.iter().find(|t| kind(t).is_some_and(|d| d != first)) {
        None => Ok(()),
        Some(t) => Err(Diagnostic::new(
            format!(
                "`from` mixes stream event types and query outputs (`{}` is {})",
                t.name,
                if first {
                    "a stream event type"
                } else {
                    "a query output"
                }
            ),
            t.span,
        )
        .with_help("read either stream events or query outputs; a query can combine them into one derived stream")),
    }
}

/// The stream types (not derived) of a catalog: what a rule without `from` reads.
pub(super) fn stream_types(catalog: &Catalog) -> Vec<TypeId> {
    (0..catalog.types().len() as TypeId)
        .filter(|t| !catalog.is_derived(*t))
        .collect()
}

/// The query being lowered: what per-window expressions can refer to.
struct QueryCtx<'a> {
    rule: RuleCtx<'a>,
    group_names: Vec<&'a ast::Ident>,
    group_types: Vec<FieldType>,
    aggregates: Vec<Aggregate>,
    emas: Vec<Ema>,
}

fn lower_query(
    q: &ast::QueryDecl,
    catalog: &mut Catalog,
    symbols: &mut SymbolTable,
    later_outputs: &[&str],
) -> Result<Query, Diagnostic> {
    // from
    let mut from = Vec::new();
    for t in &q.from {
        let id = catalog.type_by_name(&t.name).ok_or_else(|| {
            let d = unknown_type(catalog, t);
            if later_outputs.contains(&t.name.as_str()) {
                d.with_help(format!(
                    "`{}` is the output of a later query; a query reads only stream types and earlier queries' outputs",
                    t.name
                ))
            } else {
                d
            }
        })?;
        if !from.contains(&id) {
            from.push(id);
        }
    }
    check_from_kinds(catalog, &q.from)?;

    // The output type is registered after everything else resolved, so it is appended last.
    let cat: &Catalog = catalog;
    // Type tests in `where` (`where Trade and ...`) narrow the types that per-event expressions
    // and `group by` see, as they narrow a pattern variable's types in a rule.
    let current = match &q.filter {
        Some(cond) => type_tests(cond, cat, &from)?.unwrap_or_else(|| from.clone()),
        None => from.clone(),
    };
    let rule = RuleCtx {
        catalog: cat,
        from: current.clone(),
        vars: Vec::new(),
        var_types: Vec::new(),
        partition: Vec::new(),
        negated: Vec::new(),
    };

    let filter = match &q.filter {
        Some(cond) => {
            check_event_expr(cond, "`where`")?;
            let (e, ty) = lower_event_expr(&rule, cond, symbols)?;
            expect_bool(cat, &ty, cond)?;
            Some(e)
        }
        None => None,
    };

    if q.group_by.len() > MAX_KEY_FIELDS {
        return Err(Diagnostic::new(
            format!("at most {MAX_KEY_FIELDS} group by fields are supported"),
            q.group_by[MAX_KEY_FIELDS].span,
        ));
    }
    let mut group_by = Vec::with_capacity(q.group_by.len());
    for (i, g) in q.group_by.iter().enumerate() {
        if q.group_by[..i].iter().any(|h| h.name == g.name) {
            return Err(Diagnostic::new(
                format!("`{}` appears twice in `group by`", g.name),
                g.span,
            ));
        }
        group_by.push(resolve_field(cat, &current, g, "group by field")?);
    }

    let window = lower_window(&q.window)?;

    let mut ctx = QueryCtx {
        group_types: group_by.iter().map(|f| f.ty).collect(),
        group_names: q.group_by.iter().collect(),
        rule,
        aggregates: Vec::new(),
        emas: Vec::new(),
    };

    let having = match &q.having {
        Some(cond) => {
            let (e, ty, _) = lower_window_expr(&mut ctx, cond, false, symbols)?;
            expect_bool(cat, &ty, cond)?;
            Some(e)
        }
        None => None,
    };

    let mut emit: Vec<OutputField> = Vec::with_capacity(q.emit.fields.len());
    for f in &q.emit.fields {
        if emit.iter().any(|o| o.name == f.name.name) {
            return Err(Diagnostic::new(
                format!("emit field `{}` appears twice", f.name.name),
                f.name.span,
            ));
        }
        let (expr, ty, exact) = lower_window_expr(&mut ctx, &f.value, false, symbols)?;
        let ty = match (exact, ty) {
            (Some(t), _) => t,
            (None, Ty::Int) => FieldType::I64,
            (None, Ty::UInt) => FieldType::U64,
            (None, Ty::Float) => FieldType::F64,
            (None, Ty::Bool) => FieldType::Bool,
            (None, Ty::Sym) => FieldType::Sym,
            (None, Ty::Enum(e)) => FieldType::Enum(e),
            (None, Ty::Str(_)) => {
                return Err(Diagnostic::new(
                    "a string literal cannot be emitted on its own",
                    f.value.span,
                ));
            }
        };
        emit.push(OutputField {
            name: f.name.name.clone(),
            ty,
            expr,
        });
    }
    let QueryCtx {
        aggregates, emas, ..
    } = ctx;

    let out = &q.emit.signal;
    let fields: Vec<(&str, FieldType)> = emit.iter().map(|f| (f.name.as_str(), f.ty)).collect();
    if let Some(existing) = catalog.type_by_name(&out.name) {
        let what = if catalog.is_derived(existing) {
            "the output of an earlier query"
        } else {
            "an event type"
        };
        return Err(Diagnostic::new(
            format!("query output `{}` is already {what}", out.name),
            out.span,
        )
        .with_help("give the derived events a name of their own"));
    }
    let output = catalog
        .add_derived_type(&out.name, &fields)
        .map_err(|err| {
            let span = match &err {
                SchemaError::ReservedField(field) | SchemaError::DuplicateField { field, .. } => q
                    .emit
                    .fields
                    .iter()
                    .find(|f| &f.name.name == field)
                    .map_or(out.span, |f| f.name.span),
                _ => out.span,
            };
            Diagnostic::new(err.to_string(), span)
        })?;

    Ok(Query {
        name: q.name.name.clone(),
        from,
        output,
        filter,
        group_by,
        window,
        aggregates,
        emas,
        having,
        emit,
    })
}

fn lower_window(w: &ast::Window) -> Result<WindowSpec, Diagnostic> {
    let positive = |d: ast::Duration, what: &str| {
        if d.ns > 0 {
            Ok(d.ns)
        } else {
            Err(Diagnostic::new(format!("{what} must be positive"), d.span))
        }
    };
    Ok(match w.kind {
        WindowKind::Tumbling(size) => WindowSpec::Tumbling {
            size: positive(size, "the window size")?,
        },
        WindowKind::Session(gap) => WindowSpec::Session {
            gap: positive(gap, "the session gap")?,
        },
        WindowKind::Sliding { size, every } => {
            let s = positive(size, "the window size")?;
            let e = positive(every, "the slide")?;
            if s % e != 0 {
                return Err(Diagnostic::new(
                    "the window size must be a whole multiple of the slide",
                    size.span.to(every.span),
                )
                .with_help(
                    "windows end at multiples of the slide, so each event is in exactly size / slide windows; e.g. `sliding 5m every 1m`",
                ));
            }
            if s / e > MAX_WINDOWS_PER_EVENT {
                return Err(Diagnostic::new(
                    format!(
                        "each event would be in {} windows; at most {MAX_WINDOWS_PER_EVENT} are supported",
                        s / e
                    ),
                    size.span.to(every.span),
                )
                .with_help("use a larger slide"));
            }
            WindowSpec::Sliding { size: s, slide: e }
        }
    })
}

/// Rejects what a per-event expression (`where`, an aggregate's argument) cannot contain.
fn check_event_expr(e: &ast::Expr, place: &str) -> Result<(), Diagnostic> {
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match &x.kind {
            ExprKind::Call { func, args } => {
                let f = func.name.as_str();
                if AGGREGATES.contains(&f) || f == "ema" {
                    let msg = if place == "`where`" {
                        format!("`where` filters single events and cannot use the aggregate `{f}`")
                    } else {
                        format!("aggregates cannot be nested: `{f}` inside {place}")
                    };
                    let help = if place == "`where`" {
                        "filter windows by their aggregates with `having`"
                    } else {
                        "an aggregate's argument is evaluated per event, e.g. `sum(price * qty)`"
                    };
                    return Err(Diagnostic::new(msg, x.span).with_help(help));
                }
                if f == "prev" {
                    return Err(
                        Diagnostic::new("`prev` is not available in queries", func.span)
                            .with_help("use `first`, `last` or other aggregates of the window"),
                    );
                }
                stack.extend(args.iter());
            }
            ExprKind::Member { .. } | ExprKind::Index { .. } => {
                return Err(Diagnostic::new(
                    "queries have no pattern variables; refer to fields by name",
                    x.span,
                ));
            }
            ExprKind::Name(n) if n == "*" => {
                return Err(Diagnostic::new("`*` is only allowed in `count(*)`", x.span));
            }
            ExprKind::Name(n) if n == "window_start" || n == "window_end" => {
                return Err(Diagnostic::new(
                    format!("`{n}` is a property of a window, not of {place}"),
                    x.span,
                )
                .with_help("use it in `having` or `emit`"));
            }
            ExprKind::Unary { operand, .. } => stack.push(operand),
            ExprKind::Binary { lhs, rhs, .. } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            ExprKind::In {
                needle, haystack, ..
            } => {
                stack.push(needle);
                match haystack {
                    InRhs::List(items) => stack.extend(items.iter()),
                    InRhs::Expr(h) => stack.push(h),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn lower_event_expr(
    rule: &RuleCtx<'_>,
    e: &ast::Expr,
    symbols: &mut SymbolTable,
) -> Result<(Expr, Ty), Diagnostic> {
    let ec = ExprCtx {
        place: Place::Define,
        current: &rule.from,
        agg_var: None,
    };
    lower_expr(rule, &ec, e, symbols)
}

/// The exact field type of a per-event expression when it is a plain field or `ts`.
fn exact_type(e: &Expr) -> Option<FieldType> {
    match e {
        Expr::Field(f) => Some(f.ty),
        Expr::Ts => Some(FieldType::Ts),
        _ => None,
    }
}

fn contains_aggregate(e: &WindowExpr) -> bool {
    match e {
        WindowExpr::Agg(_) | WindowExpr::Ema(_) => true,
        WindowExpr::Const(_)
        | WindowExpr::Group(_)
        | WindowExpr::WindowStart
        | WindowExpr::WindowEnd => false,
        WindowExpr::Arith(_, l, r)
        | WindowExpr::Cmp(_, l, r)
        | WindowExpr::And(l, r)
        | WindowExpr::Or(l, r) => contains_aggregate(l) || contains_aggregate(r),
        WindowExpr::Neg(x) | WindowExpr::Not(x) => contains_aggregate(x),
    }
}

type Lowered = (WindowExpr, Ty, Option<FieldType>);

/// Lowers a per-window expression (`having`, `emit`, an `ema` argument when `in_ema`).
fn lower_window_expr(
    ctx: &mut QueryCtx<'_>,
    e: &ast::Expr,
    in_ema: bool,
    symbols: &mut SymbolTable,
) -> Result<Lowered, Diagnostic> {
    let catalog = ctx.rule.catalog;
    let konst = |v: Value, t: Ty| Ok((WindowExpr::Const(v), t, None));
    match &e.kind {
        ExprKind::Int(v) => match i64::try_from(*v) {
            Ok(i) => konst(Value::I64(i), Ty::Int),
            Err(_) => konst(Value::U64(*v), Ty::UInt),
        },
        ExprKind::Float(f) => konst(Value::F64(*f), Ty::Float),
        ExprKind::Duration(ns) => konst(Value::I64(*ns), Ty::Int),
        ExprKind::Bool(b) => konst(Value::Bool(*b), Ty::Bool),
        ExprKind::Str(s) => konst(Value::Null, Ty::Str(s.clone())),
        ExprKind::Name(n) => lower_window_name(ctx, n, e.span),
        ExprKind::Member { .. } | ExprKind::Index { .. } => Err(Diagnostic::new(
            "queries have no pattern variables; refer to fields by name",
            e.span,
        )),
        ExprKind::Call { func, args } => lower_window_call(ctx, func, args, e, in_ema, symbols),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => {
            let (x, ty, _) = lower_window_expr(ctx, operand, in_ema, symbols)?;
            if !ty.numeric() {
                return Err(Diagnostic::new(
                    format!("`-` needs a number, found {}", ty.describe(catalog)),
                    operand.span,
                ));
            }
            let ty = if ty == Ty::UInt { Ty::Int } else { ty };
            Ok((WindowExpr::Neg(Box::new(x)), ty, None))
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => {
            let (x, ty, _) = lower_window_expr(ctx, operand, in_ema, symbols)?;
            expect_bool(catalog, &ty, operand)?;
            Ok((WindowExpr::Not(Box::new(x)), Ty::Bool, None))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (l, lt, _) = lower_window_expr(ctx, lhs, in_ema, symbols)?;
            let (r, rt, _) = lower_window_expr(ctx, rhs, in_ema, symbols)?;
            let (l, r) = (Box::new(l), Box::new(r));
            match op {
                BinaryOp::And | BinaryOp::Or => {
                    expect_bool(catalog, &lt, lhs)?;
                    expect_bool(catalog, &rt, rhs)?;
                    let x = if *op == BinaryOp::And {
                        WindowExpr::And(l, r)
                    } else {
                        WindowExpr::Or(l, r)
                    };
                    Ok((x, Ty::Bool, None))
                }
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                    let (aop, ty) = arith_types(catalog, *op, (&lt, lhs), (&rt, rhs))?;
                    Ok((WindowExpr::Arith(aop, l, r), ty, None))
                }
                _ => {
                    let (l, lt) = coerce_window(catalog, *l, lt, &rt, lhs, symbols)?;
                    let (r, rt) = coerce_window(catalog, *r, rt, &lt, rhs, symbols)?;
                    let ordered = !matches!(op, BinaryOp::Eq | BinaryOp::Ne);
                    check_comparable(catalog, &lt, &rt, ordered, e.span, op.as_str())?;
                    let cop = cmp_op(*op);
                    Ok((
                        WindowExpr::Cmp(cop, Box::new(l), Box::new(r)),
                        Ty::Bool,
                        None,
                    ))
                }
            }
        }
        ExprKind::In {
            needle,
            haystack,
            negated,
        } => {
            let InRhs::List(items) = haystack else {
                return Err(Diagnostic::new(
                    "in a query, `in` takes a list such as `(\"IBM\", \"MSFT\")`",
                    e.span,
                ));
            };
            // `x in (a, b)` is `x == a or x == b`.
            let (n, nt, _) = lower_window_expr(ctx, needle, in_ema, symbols)?;
            let mut any: Option<WindowExpr> = None;
            for it in items {
                let (x, xt, _) = lower_window_expr(ctx, it, in_ema, symbols)?;
                let (x, xt) = coerce_window(catalog, x, xt, &nt, it, symbols)?;
                let (n2, nt2) =
                    coerce_window(catalog, n.clone(), nt.clone(), &xt, needle, symbols)?;
                check_comparable(catalog, &nt2, &xt, false, it.span, "in")?;
                let eq = WindowExpr::Cmp(CmpOp::Eq, Box::new(n2), Box::new(x));
                any = Some(match any {
                    None => eq,
                    Some(a) => WindowExpr::Or(Box::new(a), Box::new(eq)),
                });
            }
            let any = any.unwrap_or(WindowExpr::Const(Value::Bool(false)));
            let x = if *negated {
                WindowExpr::Not(Box::new(any))
            } else {
                any
            };
            Ok((x, Ty::Bool, None))
        }
    }
}

/// Turns a string literal into the other side's symbol or enum constant (see `coerce`).
fn coerce_window(
    catalog: &Catalog,
    e: WindowExpr,
    ty: Ty,
    other: &Ty,
    src: &ast::Expr,
    symbols: &mut SymbolTable,
) -> Result<(WindowExpr, Ty), Diagnostic> {
    if !matches!(ty, Ty::Str(_)) {
        return Ok((e, ty));
    }
    match coerce(
        catalog,
        Expr::Const(Value::Null),
        ty.clone(),
        other,
        src,
        symbols,
    )? {
        (Expr::Const(v), t) => Ok((WindowExpr::Const(v), t)),
        (_, t) => Ok((e, t)),
    }
}

fn lower_window_name(ctx: &QueryCtx<'_>, n: &str, span: Span) -> Result<Lowered, Diagnostic> {
    if let Some(i) = ctx.group_names.iter().position(|g| g.name == n) {
        let ft = ctx.group_types[i];
        return Ok((WindowExpr::Group(i), Ty::of(ft), Some(ft)));
    }
    match n {
        "window_start" => return Ok((WindowExpr::WindowStart, Ty::Int, Some(FieldType::Ts))),
        "window_end" => return Ok((WindowExpr::WindowEnd, Ty::Int, Some(FieldType::Ts))),
        "*" => return Err(Diagnostic::new("`*` is only allowed in `count(*)`", span)),
        _ => {}
    }
    let catalog = ctx.rule.catalog;
    let is_field = n == "ts"
        || n == "seq"
        || ctx.rule.from.iter().any(|t| {
            catalog
                .event_type(*t)
                .is_some_and(|et| et.slot(n).is_some())
        });
    if is_field {
        return Err(Diagnostic::new(
            format!("`{n}` is neither a `group by` field nor inside an aggregate"),
            span,
        )
        .with_help(format!(
            "a window has many events: aggregate the field, e.g. `last({n})`, or add it to `group by`"
        )));
    }
    let mut d = Diagnostic::new(format!("unknown name `{n}`"), span);
    let groups: Vec<&str> = ctx.group_names.iter().map(|g| g.name.as_str()).collect();
    d = d.with_help(if groups.is_empty() {
        "per window you can use aggregates, `ema`, `window_start` and `window_end`".to_string()
    } else {
        format!(
            "per window you can use aggregates, `ema`, `window_start`, `window_end` and the group by fields: {}",
            groups.join(", ")
        )
    });
    Err(d)
}

fn lower_window_call(
    ctx: &mut QueryCtx<'_>,
    func: &ast::Ident,
    args: &[ast::Expr],
    whole: &ast::Expr,
    in_ema: bool,
    symbols: &mut SymbolTable,
) -> Result<Lowered, Diagnostic> {
    let catalog = ctx.rule.catalog;
    let name = func.name.as_str();
    if name == "ema" {
        if in_ema {
            return Err(Diagnostic::new(
                "`ema` cannot be nested inside another `ema`",
                whole.span,
            ));
        }
        let [arg, n] = args else {
            return Err(Diagnostic::new(
                "`ema` takes a value and a length: ema(last(price), 38)",
                whole.span,
            ));
        };
        let n = match n.kind {
            ExprKind::Int(k) if k >= 1 => u32::try_from(k).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            Diagnostic::new(
                "the `ema` length must be a positive integer (at most 4294967295)",
                n.span,
            )
        })?;
        let (x, ty, _) = lower_window_expr(ctx, arg, true, symbols).map_err(|d| {
            if matches!(arg.kind, ExprKind::Name(_)) && d.message.contains("inside an aggregate") {
                Diagnostic::new(
                    "the argument of `ema` must be an aggregate expression",
                    arg.span,
                )
                .with_help(format!(
                    "`ema` smooths one value per window, e.g. `ema(last({}), {n})`",
                    super::text_of(arg)
                ))
            } else {
                d
            }
        })?;
        if !ty.numeric() {
            return Err(Diagnostic::new(
                format!("`ema` needs a number, found {}", ty.describe(catalog)),
                arg.span,
            ));
        }
        if !contains_aggregate(&x) {
            return Err(Diagnostic::new(
                "the argument of `ema` must be an aggregate expression",
                arg.span,
            )
            .with_help("`ema` smooths one value per window, e.g. `ema(last(price), 38)`"));
        }
        let ema = Ema { arg: x, n };
        let i = match ctx.emas.iter().position(|e| *e == ema) {
            Some(i) => i,
            None => {
                ctx.emas.push(ema);
                ctx.emas.len() - 1
            }
        };
        return Ok((WindowExpr::Ema(i), Ty::Float, None));
    }
    let Some(func_kind) = (match name {
        "count" => Some(WindowFunc::Count),
        "sum" => Some(WindowFunc::Sum),
        "avg" => Some(WindowFunc::Avg),
        "min" => Some(WindowFunc::Min),
        "max" => Some(WindowFunc::Max),
        "first" => Some(WindowFunc::First),
        "last" => Some(WindowFunc::Last),
        "stddev" => Some(WindowFunc::Stddev),
        _ => None,
    }) else {
        return Err(
            Diagnostic::new(format!("unknown function `{name}`"), func.span)
                .with_help("query functions: count, sum, avg, min, max, first, last, stddev, ema"),
        );
    };
    let [arg] = args else {
        let example = if name == "count" {
            "count(*) or count(price)".to_string()
        } else {
            format!("{name}(price)")
        };
        return Err(Diagnostic::new(
            format!("`{name}` takes one argument: {example}"),
            whole.span,
        ));
    };
    if matches!(&arg.kind, ExprKind::Name(n) if n == "*") {
        if func_kind != WindowFunc::Count {
            return Err(Diagnostic::new(
                "`*` is only allowed in `count(*)`",
                arg.span,
            ));
        }
        return Ok((add_aggregate(ctx, func_kind, None), Ty::Int, None));
    }
    check_event_expr(arg, &format!("the argument of `{name}`"))?;
    let (a, ty) = lower_event_expr(&ctx.rule, arg, symbols)?;
    if let Ty::Str(_) = ty {
        return Err(Diagnostic::new(
            format!("`{name}` of a string literal is not meaningful"),
            arg.span,
        ));
    }
    let exact = exact_type(&a);
    let numeric_only = matches!(
        func_kind,
        WindowFunc::Sum | WindowFunc::Avg | WindowFunc::Min | WindowFunc::Max | WindowFunc::Stddev
    );
    if numeric_only && !ty.numeric() {
        return Err(Diagnostic::new(
            format!("`{name}` needs numbers, found {}", ty.describe(catalog)),
            arg.span,
        ));
    }
    let (out_ty, out_exact) = match func_kind {
        WindowFunc::Count => (Ty::Int, None),
        WindowFunc::Sum if ty == Ty::Float => (Ty::Float, None),
        WindowFunc::Sum => (Ty::Int, Some(FieldType::I64)),
        WindowFunc::Avg | WindowFunc::Stddev => (Ty::Float, None),
        WindowFunc::Min | WindowFunc::Max | WindowFunc::First | WindowFunc::Last => (ty, exact),
    };
    Ok((add_aggregate(ctx, func_kind, Some(a)), out_ty, out_exact))
}

/// The query's aggregate `(func, arg)`, added if new.
fn add_aggregate(ctx: &mut QueryCtx<'_>, func: WindowFunc, arg: Option<Expr>) -> WindowExpr {
    let agg = Aggregate { func, arg };
    let i = match ctx.aggregates.iter().position(|a| *a == agg) {
        Some(i) => i,
        None => {
            ctx.aggregates.push(agg);
            ctx.aggregates.len() - 1
        }
    };
    WindowExpr::Agg(i)
}
