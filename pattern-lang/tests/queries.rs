//! Windowed queries: parsing, lowering (output types, derived streams) and their diagnostics.

use cep_core::expr::Expr;
use cep_core::query::{WindowExpr, WindowFunc, WindowSpec};
use cep_core::rule::Program;
use cep_core::schema::{Catalog, FieldType};
use cep_core::symbol::SymbolTable;
use pattern_lang::ast::{Item, WindowKind};
use pattern_lang::{compile, parse_file};

const DECLS: &str = "
event Trade { symbol: sym, price: f64, qty: i64, side: side, venue: u64 }
event Quote { symbol: sym, bid: f64 }
";

fn ok(src: &str) -> Program {
    let full = format!("{DECLS}{src}");
    compile(&full, None, &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("q.cep", &full)))
}

/// The error message and the source text under its span.
fn err(src: &str) -> (String, String) {
    let full = format!("{DECLS}{src}");
    match compile(&full, None, &mut SymbolTable::new()) {
        Ok(p) => panic!("compiled: {p:?}"),
        Err(d) => (
            d.message.clone(),
            full[d.span.start..d.span.end].to_string(),
        ),
    }
}

fn field_types(p: &Program, name: &str) -> Vec<(String, FieldType)> {
    let id = p.catalog.type_by_name(name).expect("output type");
    p.catalog
        .event_type(id)
        .expect("type")
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.ty))
        .collect()
}

#[test]
fn parses_every_clause_in_any_order() {
    let src = "query q emit bar { symbol, n: count(*) } having count(*) > 1 window sliding 5m every 1m group by symbol where price > 0 from Trade\nrule r pattern a";
    let file = parse_file(src).unwrap_or_else(|e| panic!("{}", e.render("q.cep", src)));
    let Item::Query(q) = &file.items[0] else {
        panic!("{:?}", file.items[0])
    };
    assert_eq!(q.name.name, "q");
    assert_eq!(q.from[0].name, "Trade");
    assert!(q.filter.is_some() && q.having.is_some());
    assert_eq!(q.group_by[0].name, "symbol");
    let WindowKind::Sliding { size, every } = q.window.kind else {
        panic!("{:?}", q.window)
    };
    assert_eq!((size.ns, every.ns), (300_000_000_000, 60_000_000_000));
    assert_eq!(
        &src[q.window.span.start..q.window.span.end],
        "sliding 5m every 1m"
    );
    assert_eq!(q.emit.signal.name, "bar");
    assert_eq!(
        &src[q.span.start..q.span.end],
        &src[..src.find("\nrule").unwrap_or(0)]
    );
    assert!(matches!(file.items[1], Item::Rule(_)));
}

#[test]
fn parse_errors_point_at_the_offending_text() {
    let cases = [
        (
            "query q from Trade window tumbling 1m window tumbling 2m emit b {}",
            "duplicate `window` clause in query `q`",
            "window",
        ),
        (
            "query q from Trade emit b {}",
            "query `q` has no `window` clause",
            "q",
        ),
        (
            "query q from Trade window tumbling 1m",
            "query `q` has no `emit` clause",
            "q",
        ),
        (
            "query q window tumbling 1m emit b {}",
            "query `q` has no `from` clause",
            "q",
        ),
        (
            "query q from Trade window hopping 1m emit b {}",
            "expected a window kind after `window`",
            "hopping",
        ),
        (
            "query q from Trade window tumbling 5 emit b {}",
            "expected a window size",
            "5",
        ),
        (
            "query q from Trade window sliding 5m 1m emit b {}",
            "expected `every`",
            "1m",
        ),
        (
            "query q from Trade window session 5m emit b {}",
            "expected `gap` after `session`",
            "5m",
        ),
        (
            "query q from Trade group symbol window tumbling 1m emit b {}",
            "expected `by` after `group`",
            "symbol",
        ),
        (
            "query q from Trade window tumbling 1m emit b {} havin count(*) > 1",
            "expected an operator, a query clause keyword",
            "havin",
        ),
    ];
    for (src, msg, at) in cases {
        let d = parse_file(src).expect_err(src);
        assert!(d.message.contains(msg), "{src}: {}", d.message);
        assert_eq!(&src[d.span.start..d.span.end], at, "{src}");
    }
    let d = parse_file("query q from Trade window tumbling 1m emit b {} havin count(*) > 1")
        .unwrap_err();
    assert_eq!(d.help.as_deref(), Some("did you mean `having`?"));
}

#[test]
fn output_field_types_are_inferred() {
    let p = ok("query q from Trade where price > 0 group by symbol, side window tumbling 5m
        emit bar { symbol, side, n: count(*), priced: count(price), vol: sum(qty), notional: sum(price * qty),
                   mean: avg(price), sd: stddev(qty), lo: min(qty), hi: max(price), open: first(price),
                   last_venue: last(venue), at: last(ts), vwap: sum(price * qty) / sum(qty),
                   spread: max(price) - min(price), qty_range: max(qty) - min(qty), big: count(*) > 10,
                   ema38: ema(last(price), 38), start: window_start, end: window_end, len: window_end - window_start }");
    use FieldType::*;
    let expect = [
        ("symbol", Sym),
        ("side", Enum(0)),
        ("n", I64),
        ("priced", I64),
        ("vol", I64),
        ("notional", F64),
        ("mean", F64),
        ("sd", F64),
        ("lo", I64),
        ("hi", F64),
        ("open", F64),
        ("last_venue", U64),
        ("at", Ts),
        ("vwap", F64),
        ("spread", F64),
        ("qty_range", I64),
        ("big", Bool),
        ("ema38", F64),
        ("start", Ts),
        ("end", Ts),
        ("len", I64),
    ];
    let got = field_types(&p, "bar");
    let expect: Vec<(String, FieldType)> =
        expect.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    assert_eq!(got, expect);
    let q = &p.queries[0];
    assert_eq!(q.output, 2);
    assert!(p.catalog.is_derived(2) && !p.catalog.is_derived(0));
    assert_eq!(
        q.window,
        WindowSpec::Tumbling {
            size: 300_000_000_000
        }
    );
    // Equal aggregates are computed once: `sum(price * qty)`, `count(*)`, `max(price)`, ... repeat.
    let funcs: Vec<WindowFunc> = q.aggregates.iter().map(|a| a.func).collect();
    assert_eq!(funcs.iter().filter(|f| **f == WindowFunc::Count).count(), 2);
    assert_eq!(q.aggregates.len(), 14);
    assert_eq!(q.emas.len(), 1);
    assert!(q.aggregates[0].arg.is_none(), "count(*) has no argument");
    assert!(q.filter.is_some());
    assert_eq!(q.group_by.len(), 2);
    assert_eq!(q.emit.len(), expect.len());
}

#[test]
fn derived_types_are_appended_after_the_stream_types() {
    let mut tape = Catalog::new();
    tape.add_type(
        "Quote",
        &[("symbol", FieldType::Sym), ("bid", FieldType::F64)],
    )
    .expect("quote");
    tape.add_type(
        "Trade",
        &[
            ("symbol", FieldType::Sym),
            ("price", FieldType::F64),
            ("qty", FieldType::I64),
            ("side", FieldType::Enum(0)),
            ("venue", FieldType::U64),
        ],
    )
    .expect("trade");
    let src = DECLS.to_string()
        + "
        query bars from Trade group by symbol window tumbling 5m
          emit bar { symbol, close: last(price), ema38: ema(last(price), 38), ema100: ema(last(price), 100) }
        query hourly from bar group by symbol window tumbling 1h emit hour { symbol, hi: max(close) }
        rule cross from bar partition by symbol pattern a b
          define a as ema38 <= ema100, b as ema38 > ema100
          emit bullish { symbol, at: b.ts }
        rule plain pattern t define t as Trade";
    let p = compile(&src, Some(&tape), &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("q.cep", &src)));
    // The tape's ids stay: Quote 0, Trade 1; then bar 2 and hour 3 in query order.
    assert_eq!(p.catalog.type_by_name("Quote"), Some(0));
    assert_eq!(p.catalog.type_by_name("Trade"), Some(1));
    assert_eq!(p.catalog.type_by_name("bar"), Some(2));
    assert_eq!(p.catalog.type_by_name("hour"), Some(3));
    assert_eq!(p.queries.len(), 2);
    assert_eq!(p.queries[0].from, [1]);
    assert_eq!(
        (p.queries[1].from.as_slice(), p.queries[1].output),
        ([2].as_slice(), 3)
    );
    assert_eq!(p.queries[0].emas.len(), 2);
    assert_eq!(
        field_types(&p, "hour")[1],
        ("hi".to_string(), FieldType::F64)
    );
    // The rule over `bar` reads only `bar` and partitions on its `symbol` slot.
    let cross = &p.rules[0];
    assert_eq!(cross.from, [2]);
    assert_eq!(cross.partition_by[0].slots, [None, None, Some(0), None]);
    // A rule without `from` reads the stream types only.
    assert_eq!(p.rules[1].from, [0, 1]);
}

#[test]
fn type_tests_in_where_narrow_the_fields_in_scope() {
    let p = ok(
        "query q from Trade, Quote where Trade and price > 0 group by symbol
        window tumbling 1m emit b { symbol, hi: max(price) }",
    );
    let q = &p.queries[0];
    assert_eq!(q.from, [0, 1]);
    // `price` resolves for Trade only; Quote events fail the `where` anyway.
    let Some(Expr::Field(price)) = &q.aggregates[0].arg else {
        panic!("{:?}", q.aggregates)
    };
    assert_eq!(price.slots, [Some(1), None]);
    let (m, at) =
        err("query q from Trade, Quote where Quote window tumbling 1m emit b { x: sum(price) }");
    assert!(m.contains("unknown field `price` on event `Quote`"), "{m}");
    assert_eq!(at, "price");
}

#[test]
fn rules_may_read_outputs_of_queries_written_after_them() {
    let p = ok("rule r from bar pattern a define a as n > 1
        query q from Trade window tumbling 1m emit bar { n: count(*) }");
    assert_eq!(p.rules[0].from, [2]);
    assert_eq!(p.rules[0].nfa.vars.len(), 1);
}

#[test]
fn window_expressions_lower_to_aggregates_and_groups() {
    let p = ok(r#"query q from Trade group by symbol window session gap 30s
        having symbol in ("IBM", "MSFT") and not (count(*) < 2)
        emit s { symbol, x: -sum(qty) }"#);
    let q = &p.queries[0];
    assert_eq!(
        q.window,
        WindowSpec::Session {
            gap: 30_000_000_000
        }
    );
    assert!(matches!(q.having, Some(WindowExpr::And(..))));
    assert!(matches!(q.emit[0].expr, WindowExpr::Group(0)));
    assert!(matches!(q.emit[1].expr, WindowExpr::Neg(_)));
    assert!(matches!(q.aggregates[1].arg, Some(Expr::Field(_))));
}

#[test]
fn lowering_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "query q from Trade where prize > 0 window tumbling 1m emit b {}",
            "unknown field `prize`",
            "prize",
        ),
        (
            "query q from Trade group by sym window tumbling 1m emit b {}",
            "unknown field `sym`",
            "sym",
        ),
        (
            "query q from Trade group by symbol, symbol window tumbling 1m emit b {}",
            "`symbol` appears twice in `group by`",
            "symbol",
        ),
        (
            "query q from Trade group by symbol window tumbling 1m emit b { price }",
            "`price` is neither a `group by` field nor inside an aggregate",
            "price",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: price + 1 }",
            "`price` is neither",
            "price",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: sum(max(price)) }",
            "aggregates cannot be nested: `max` inside the argument of `sum`",
            "max(price)",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(price, 3) }",
            "the argument of `ema` must be an aggregate expression",
            "price",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(1.5, 3) }",
            "the argument of `ema` must be an aggregate expression",
            "1.5",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(last(price), 0) }",
            "the `ema` length must be a positive integer",
            "0",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(last(price), 2.5) }",
            "the `ema` length must be a positive integer",
            "2.5",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(ema(last(price), 2), 3) }",
            "`ema` cannot be nested",
            "ema(last(price), 2)",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(last(price)) }",
            "`ema` takes a value and a length",
            "ema(last(price))",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: ema(last(symbol), 3) }",
            "`ema` needs a number",
            "last(symbol)",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: sum(symbol) }",
            "`sum` needs numbers",
            "symbol",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: median(price) }",
            "unknown function `median`",
            "median",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: sum(*) }",
            "`*` is only allowed in `count(*)`",
            "*",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: sum(prev(price)) }",
            "`prev` is not available in queries",
            "prev",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: count(t.price) }",
            "queries have no pattern variables",
            "t.price",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: \"s\" }",
            "a string literal cannot be emitted",
            "\"s\"",
        ),
        (
            "query q from Trade window tumbling 1m emit b { x: count(*), x: sum(qty) }",
            "emit field `x` appears twice",
            "x",
        ),
        (
            "query q from Trade window tumbling 1m emit b { ts: count(*) }",
            "field name `ts` is reserved",
            "ts",
        ),
        (
            "query q from Trade where count(*) > 1 window tumbling 1m emit b {}",
            "`where` filters single events and cannot use the aggregate `count`",
            "count(*)",
        ),
        (
            "query q from Trade where window_end > 1 window tumbling 1m emit b {}",
            "`window_end` is a property of a window",
            "window_end",
        ),
        (
            "query q from Trade window tumbling 1m having count(*) emit b {}",
            "expected a condition (boolean), found an integer",
            "count(*)",
        ),
        (
            "query q from Trade window tumbling 1m having wat > 1 emit b {}",
            "unknown name `wat`",
            "wat",
        ),
        (
            "query q from Trade window tumbling 0s emit b {}",
            "the window size must be positive",
            "0s",
        ),
        (
            "query q from Trade window session gap 0s emit b {}",
            "the session gap must be positive",
            "0s",
        ),
        (
            "query q from Trade window sliding 5m every 2m emit b {}",
            "the window size must be a whole multiple of the slide",
            "5m every 2m",
        ),
        (
            "query q from Trade window sliding 1h every 1s emit b {}",
            "each event would be in 3600 windows",
            "1h every 1s",
        ),
        (
            "query q from Trade group by symbol, side, venue, price, qty window tumbling 1m emit b {}",
            "at most 4 group by fields",
            "qty",
        ),
        (
            "query q from Trade window tumbling 1m emit Quote {}",
            "query output `Quote` is already an event type",
            "Quote",
        ),
        (
            "query q from Trade window tumbling 1m emit b {}\nquery q2 from Trade window tumbling 1m emit b {}",
            "query output `b` is already the output of an earlier query",
            "b",
        ),
        (
            "query q from Trade window tumbling 1m emit b {}\nquery q from Trade window tumbling 1m emit c {}",
            "`q` is defined twice",
            "q",
        ),
        (
            "rule q pattern a\nquery q from Trade window tumbling 1m emit c {}",
            "`q` is defined twice",
            "q",
        ),
        (
            "query q from Nope window tumbling 1m emit b {}",
            "unknown event type `Nope`",
            "Nope",
        ),
        (
            "query q1 from b2 window tumbling 1m emit b1 {}\nquery q2 from Trade window tumbling 1m emit b2 {}",
            "unknown event type `b2`",
            "b2",
        ),
        (
            "query q from Trade window tumbling 1m emit b {}\nquery q2 from Trade, b window tumbling 1m emit c {}",
            "`from` mixes stream event types and query outputs",
            "b",
        ),
        (
            "query q from Trade window tumbling 1m emit b {}\nrule r from b, Quote pattern a",
            "`from` mixes stream event types and query outputs",
            "Quote",
        ),
        (
            "query q from Trade, Quote window tumbling 1m emit b { x: sum(price) }",
            "`price` is not a field of `Quote`",
            "price",
        ),
        (
            "query q from Trade group by symbol window tumbling 1m having symbol > \"A\" emit b {}",
            "`>` needs numbers",
            "symbol > \"A\"",
        ),
    ];
    for (src, msg, at) in cases {
        let (m, text) = err(src);
        assert!(m.contains(msg), "{src}\n  got: {m}");
        assert_eq!(text, *at, "{src}: {m}");
    }
    // A query reading a later query's output is told why.
    let src = format!(
        "{DECLS}query q1 from b2 window tumbling 1m emit b1 {{}}\nquery q2 from Trade window tumbling 1m emit b2 {{}}"
    );
    let d = compile(&src, None, &mut SymbolTable::new()).expect_err("later output");
    assert!(
        d.help
            .unwrap_or_default()
            .contains("output of a later query")
    );
}

#[test]
fn the_documented_examples_compile() {
    let debs = r#"
enum security_type { Equity, Index }
event Trade { symbol: sym, security_type: security_type, last_trade_price: f64 }

query bars
  from Trade
  group by symbol
  window tumbling 5m
  emit bar { symbol, close: last(last_trade_price),
             ema38: ema(last(last_trade_price), 38), ema100: ema(last(last_trade_price), 100) }

rule bullish from bar partition by symbol pattern b
  define b as ema38 > ema100 and not (prev(ema38, 1) > prev(ema100, 1))
  select all emit bullish { symbol, ema38: b.ema38, ema100: b.ema100 }

rule bearish from bar partition by symbol pattern b
  define b as ema38 < ema100 and not (prev(ema38, 1) < prev(ema100, 1))
  select all emit bearish { symbol, ema38: b.ema38, ema100: b.ema100 }
"#;
    let p = compile(debs, None, &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("debs.cep", debs)));
    assert_eq!(p.queries[0].emas.len(), 2);
    assert_eq!(
        p.queries[0].aggregates.len(),
        1,
        "last(last_trade_price) is computed once"
    );
    assert_eq!(p.rules.len(), 2);

    let bars = "
event Trade { symbol: sym, price: f64, qty: i64 }

query bars
  from Trade                     # stream types, or earlier queries' outputs
  where price > 0                # optional: a condition on each event
  group by symbol                # optional: up to 4 fields
  window tumbling 5m             # or: sliding 5m every 1m | session gap 30s
  having count(*) >= 2           # optional: a condition on each window
  emit bar { symbol, close: last(price), volume: sum(qty),
             vwap: sum(price * qty) / sum(qty), ema38: ema(last(price), 38) }

rule breakout from bar partition by symbol pattern a b
  define b as close > a.close * 1.1
  emit breakout { symbol, before: a.close, now: b.close }
";
    let p = compile(bars, None, &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("bars.cep", bars)));
    assert_eq!(
        field_types(&p, "bar"),
        [
            ("symbol".to_string(), FieldType::Sym),
            ("close".to_string(), FieldType::F64),
            ("volume".to_string(), FieldType::I64),
            ("vwap".to_string(), FieldType::F64),
            ("ema38".to_string(), FieldType::F64),
        ]
    );
}
