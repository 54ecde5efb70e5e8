//! Property test: the reference matcher (through the real parser, compiler and engine) against a
//! naive backtracking enumerator (`tests/oracle/mod.rs`) on random small rules and tapes.
//!
//! Input: random rules (contiguity per transition, every quantifier greedy and reluctant,
//! `select all` / `select first`, the five after-match strategies, `within`, `partition by`,
//! `from`, conditions on the current event and on earlier variables) and 1 to 9 events of types
//! `A B C D` with a key `k` and a value `v`, one or two partitions, event time in whole seconds.
//! Output: pass, or the first failing case shrunk to a small rule and tape, printed as rule text
//! and events in the corpus notation.
//!
//! What is compared:
//! - `select all`: the full list of signals (seq lists) in emission order. Matches completed by
//!   an event are emitted at that event, by start event then preference; this order is global,
//!   since one event completes matches of one partition only.
//! - `select first`: per partition key, the list of signals in emission order, which SQL:2016
//!   makes the order of start events. Across partitions the order depends on when each preferred
//!   match is released (a later event or the watermark), which this test does not model.
//!
//! Two switches follow work in progress elsewhere:
//! - [`NEW_CONSTRUCTS`] also generates groups with quantifiers, alternation, negation and trailing
//!   absence (the enumerator implements them already);
//! - [`STRICT_SELECT_FIRST_ORDER`] compares `select first` output exactly. Off, it checks what
//!   holds for a matcher that may report a later start before an earlier unresolved one: every
//!   signal is its start's preferred match, no start twice, the same signals as SQL:2016 under
//!   `no skip` / `skip to next` (in any order), and each partition's first SQL:2016 match.
//!
//! The run is deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` override it.

mod oracle;

use std::collections::{BTreeMap, BTreeSet};

use oracle::{
    AfterMatch, Cond, Contig, Ev, Gen, Node, Operand, Quant, Rule, VarDef, expected_select_all,
    expected_select_first, preferred_per_start,
};
use proptest::collection::vec;
use proptest::prelude::*;
use strix::cep_core::symbol::SymbolTable;
use strix::{Engine, EngineConfig, FieldValue};

mod common;

/// Generate groups `( … )` with quantifiers, alternation `|`, negation `!x` and trailing
/// absence `-> !x` (needs the language additions of issue 3). Trailing absences complete on the
/// watermark, so their expected order assumes the engine passes `ts - 1` to every matcher
/// before each event.
const NEW_CONSTRUCTS: bool = true;

/// Compare `select first` signals per partition exactly, in start order (SQL:2016). Off: the
/// weaker checks described in the module docs.
const STRICT_SELECT_FIRST_ORDER: bool = true;

/// Random cases per run.
const CASES: u32 = 5000;

/// Fixed seed so that every run checks the same cases.
const SEED: u64 = 0x5715_0c3e;

/// Runs `rule` over `events` through the engine; the signals' seq lists in emission order.
fn run_engine(rule_text: &str, events: &[Ev]) -> Result<Vec<Vec<u64>>, String> {
    let src = format!("{}{rule_text}\n", oracle::DECLS);
    // No run cap in practice: a cap evicts partial matches, which the enumerator does not model.
    let mut config = EngineConfig::default();
    config.matcher.max_runs_per_key = 1 << 24;
    let mut engine = Engine::build("property.cep", &src, None, SymbolTable::new(), config)
        .map_err(|e| format!("does not compile: {e}"))?;
    let mut out = Vec::new();
    for e in events {
        let ev = engine
            .event(
                oracle::TYPES[e.ty as usize],
                e.ts * 1_000_000_000,
                &[("k", FieldValue::I64(e.k)), ("v", FieldValue::I64(e.v))],
            )
            .map_err(|e| e.to_string())?;
        engine.push(&ev, |s| out.push(s.raw.seq.clone()));
    }
    engine.finish(|s| out.push(s.raw.seq.clone()));
    let evictions: u64 = engine.stats().iter().map(|s| s.evictions).sum();
    if evictions > 0 {
        return Err(format!("{evictions} partial matches evicted"));
    }
    Ok(out)
}

/// Compares the engine with the enumerator; the error describes the case.
fn check(rule: &Rule, events: &[Ev]) -> Result<(), String> {
    let text = rule.text();
    let describe = |what: String| {
        format!(
            "{what}\n  rule:   {text}\n  events: {}",
            oracle::events_text(events)
        )
    };
    let got = run_engine(&text, events).map_err(describe)?;
    if rule.select_all {
        let want = expected_select_all(rule, events);
        if got != want {
            return Err(describe(format!(
                "select all differs\n  expected {want:?}\n  actual   {got:?}"
            )));
        }
        return Ok(());
    }
    let key_of = |m: &Vec<u64>| {
        if rule.partitioned {
            events[m[0] as usize].k
        } else {
            0
        }
    };
    let mut got_by_key: BTreeMap<i64, Vec<Vec<u64>>> = BTreeMap::new();
    for m in &got {
        got_by_key.entry(key_of(m)).or_default().push(m.clone());
    }
    let want = expected_select_first(rule, events);
    if STRICT_SELECT_FIRST_ORDER {
        if got_by_key != want {
            return Err(describe(format!(
                "select first differs (per partition key)\n  expected {want:?}\n  actual   {got_by_key:?}\n  \
                 (all signals in emission order: {got:?})"
            )));
        }
        return Ok(());
    }
    let preferred = preferred_per_start(rule, events);
    let mut starts = BTreeSet::new();
    for m in &got {
        let key = key_of(m);
        if preferred.get(&(key, m[0])) != Some(m) {
            return Err(describe(format!(
                "select first reported {m:?}, which is not the preferred match of start {} \
                 (expected {:?})\n  all signals: {got:?}",
                m[0],
                preferred.get(&(key, m[0]))
            )));
        }
        if !starts.insert((key, m[0])) {
            return Err(describe(format!(
                "select first reported start {} twice: {got:?}",
                m[0]
            )));
        }
    }
    let same_set = matches!(rule.skip, AfterMatch::NoSkip | AfterMatch::ToNext);
    for (key, list) in &want {
        let mine = got_by_key.get(key).cloned().unwrap_or_default();
        if same_set {
            let (mut a, mut b) = (list.clone(), mine.clone());
            a.sort();
            b.sort();
            if a != b {
                return Err(describe(format!(
                    "select first differs (partition {key}, any order)\n  expected {list:?}\n  actual   {mine:?}"
                )));
            }
        } else if !mine.contains(&list[0]) {
            return Err(describe(format!(
                "select first misses the partition's first match {:?} (partition {key})\n  \
                 expected {list:?}\n  actual   {mine:?}",
                list[0]
            )));
        }
    }
    if same_set && got_by_key.keys().any(|k| !want.contains_key(k)) {
        return Err(describe(format!(
            "select first reports in a partition without matches\n  expected {want:?}\n  actual   {got_by_key:?}"
        )));
    }
    Ok(())
}

/// An event before timing: type, key, value, time step (s).
type RawEvent = (u8, i64, i64, i64);

/// The random inputs: generator choices (see [`Gen`]), raw events, stepped time.
fn inputs() -> impl Strategy<Value = (Vec<u8>, Vec<RawEvent>, bool)> {
    (
        vec(any::<u8>(), 0..48),
        vec((0u8..4, 0i64..2, 0i64..4, 0i64..3), 1..=9),
        any::<bool>(),
    )
}

/// Events from raw tuples (type, key, value, time step); time is the seq in seconds unless
/// `stepped`, where it advances by the step (0 to 2 s, so ties happen).
fn make_events(raw: &[RawEvent], stepped: bool) -> Vec<Ev> {
    let mut ts = 0;
    raw.iter()
        .enumerate()
        .map(|(i, &(ty, k, v, step))| {
            ts = if stepped {
                if i == 0 { 0 } else { ts + step }
            } else {
                i as i64
            };
            Ev { ty, k, v, ts }
        })
        .collect()
}

fn config() -> ProptestConfig {
    common::proptest_config(CASES, SEED)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reference_matcher_agrees_with_backtracking_enumerator(
        (choices, raw, stepped) in inputs(),
    ) {
        let rule = Gen::new(&choices, NEW_CONSTRUCTS).rule();
        prop_assert!(NEW_CONSTRUCTS || !rule.uses_new_constructs());
        let events = make_events(&raw, stepped);
        if let Err(msg) = check(&rule, &events) {
            return Err(TestCaseError::fail(msg));
        }
    }
}

/// The generator reaches every construct and mode within the case budget (with and without the
/// new constructs), so a passing run means something.
#[test]
fn generator_covers_every_construct() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    for new_constructs in [false, true] {
        let mut runner = TestRunner::new(config());
        let mut seen = BTreeSet::new();
        let mut with_matches = 0;
        let n = 2000;
        for _ in 0..n {
            let (choices, raw, stepped) = inputs()
                .new_tree(&mut runner)
                .expect("strategy without filters")
                .current();
            let rule = Gen::new(&choices, new_constructs).rule();
            seen.extend(oracle::features(&rule));
            if !oracle_output(&rule, &make_events(&raw, stepped)).is_empty() {
                with_matches += 1;
            }
        }
        let mut want: Vec<String> = [
            "select all",
            "select first",
            "no skip",
            "skip to next",
            "skip past last",
            "skip to first",
            "skip to last",
            "within",
            "partition by",
            "from",
            "contiguity Strict",
            "contiguity Relaxed",
            "contiguity Any",
            "var one",
            "undefined variable",
            "type test of 1",
            "type test of 2",
            "compare v",
            "first(x).v",
            "last(x).v",
            "count(x)",
            "and",
            "or",
            "not",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for shape in ["?", "*", "+", "{n}", "{n,}", "{n,m}"] {
            want.push(format!("var {shape}"));
            want.push(format!("var {shape} reluctant"));
        }
        if new_constructs {
            for f in [
                "group one",
                "group ?",
                "group +",
                "group *",
                "group {n,m}",
                "group + reluctant",
                "alternation in a group",
                "top-level alternation",
                "negation Strict",
                "negation Relaxed",
                "negation Any",
                "trailing absence Relaxed",
                "trailing absence Any",
            ] {
                want.push(f.to_string());
            }
        }
        let missing: Vec<&String> = want.iter().filter(|f| !seen.contains(*f)).collect();
        assert!(
            missing.is_empty(),
            "never generated: {missing:?}
seen: {seen:?}"
        );
        // Most cases should match something, or the comparison is vacuous.
        assert!(
            with_matches * 2 > n,
            "only {with_matches} of {n} cases match anything"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written cases: the enumerator against worked examples of docs/language.md (so the oracle
// itself is checked), and the engine against the enumerator on the same cases.

/// A rule from pattern text in the generator's syntax, with one type per variable given as
/// `name:T` (`name:*` or no entry: no condition).
fn hand_rule(
    pattern: &str,
    types: &str,
    select_all: bool,
    skip: &str,
    within: Option<i64>,
) -> Rule {
    let mut vars: Vec<VarDef> = Vec::new();
    let mut p = PatternParser {
        s: pattern.as_bytes(),
        i: 0,
        vars: &mut vars,
    };
    let node = p.alt();
    assert_eq!(p.i, pattern.len(), "pattern `{pattern}` not fully parsed");
    for spec in types.split_whitespace() {
        let (name, ty) = spec.split_once(':').expect("name:T");
        let v = vars
            .iter_mut()
            .find(|v| v.name == name)
            .expect("variable in pattern");
        if ty != "*" {
            let t = oracle::TYPES.iter().position(|x| *x == ty).expect("type") as u8;
            v.cond = Cond::Type(vec![t]);
        }
    }
    let var = |n: &str| {
        vars.iter()
            .position(|v| v.name == n)
            .expect("skip variable")
    };
    let skip = match skip.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["no", "skip"] => AfterMatch::NoSkip,
        ["next"] => AfterMatch::ToNext,
        ["past", "last"] => AfterMatch::PastLast,
        ["first", v] => AfterMatch::ToFirst(var(v)),
        ["last", v] => AfterMatch::ToLast(var(v)),
        other => panic!("bad skip {other:?}"),
    };
    Rule {
        pattern: node,
        vars,
        from_abc: false,
        partitioned: false,
        within,
        select_all,
        skip,
    }
}

struct PatternParser<'a> {
    s: &'a [u8],
    i: usize,
    vars: &'a mut Vec<VarDef>,
}

impl PatternParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn alt(&mut self) -> Node {
        let mut alts = vec![self.seq()];
        while self.peek() == Some(b'|') {
            self.i += 1;
            alts.push(self.seq());
        }
        if alts.len() == 1 {
            alts.pop().expect("one alternative")
        } else {
            Node::Alt(alts)
        }
    }

    fn seq(&mut self) -> Node {
        let mut items = vec![self.item()];
        let mut ops = Vec::new();
        loop {
            match self.peek() {
                None | Some(b')') | Some(b'|') => break,
                Some(b'-') => {
                    if self.s[self.i..].starts_with(b"->>") {
                        self.i += 3;
                        ops.push(Contig::Any);
                    } else {
                        self.i += 2;
                        ops.push(Contig::Relaxed);
                    }
                }
                _ => ops.push(Contig::Strict),
            }
            items.push(self.item());
        }
        Node::Seq { items, ops }
    }

    fn name(&mut self) -> usize {
        self.ws();
        let st = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_lowercase) {
            self.i += 1;
        }
        let name = std::str::from_utf8(&self.s[st..self.i])
            .expect("ascii")
            .to_string();
        assert!(!name.is_empty(), "name expected at {st}");
        self.vars.push(VarDef {
            name,
            cond: Cond::True,
            negated: false,
        });
        self.vars.len() - 1
    }

    fn item(&mut self) -> Node {
        match self.peek() {
            Some(b'!') => {
                self.i += 1;
                let var = self.name();
                self.vars[var].negated = true;
                Node::Neg { var }
            }
            Some(b'(') => {
                self.i += 1;
                let body = self.alt();
                assert_eq!(self.peek(), Some(b')'));
                self.i += 1;
                let q = self.quant();
                Node::Group {
                    body: Box::new(body),
                    q,
                }
            }
            _ => {
                let var = self.name();
                let q = self.quant();
                Node::Var { var, q }
            }
        }
    }

    fn number(&mut self) -> u32 {
        let st = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[st..self.i])
            .expect("ascii")
            .parse()
            .expect("number")
    }

    fn quant(&mut self) -> Quant {
        let (min, max) = match self.s.get(self.i) {
            Some(b'?') => (0, Some(1)),
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'{') => {
                self.i += 1;
                let n = self.number();
                let max = if self.s[self.i] == b',' {
                    self.i += 1;
                    if self.s[self.i] == b'}' {
                        None
                    } else {
                        Some(self.number())
                    }
                } else {
                    Some(n)
                };
                assert_eq!(self.s[self.i], b'}');
                (n, max)
            }
            _ => return Quant::ONE,
        };
        self.i += 1;
        let greedy = if self.s.get(self.i) == Some(&b'?') {
            self.i += 1;
            false
        } else {
            true
        };
        Quant { min, max, greedy }
    }
}

/// Events `TYPE[:k][@ts][=v]` separated by `;` (key 0 and time = seq in seconds by default).
fn hand_events(s: &str) -> Vec<Ev> {
    s.split(';')
        .map(str::trim)
        .enumerate()
        .map(|(i, e)| {
            let (rest, v) = e
                .split_once('=')
                .map_or((e, 0), |(r, v)| (r, v.parse().expect("value")));
            let (rest, ts) = rest
                .split_once('@')
                .map_or((rest, i as i64), |(t, ts)| (t, ts.parse().expect("time")));
            let (ty, k) = rest
                .split_once(':')
                .map_or((rest, 0), |(t, k)| (t, k.parse().expect("key")));
            Ev {
                ty: oracle::TYPES.iter().position(|x| *x == ty).expect("type") as u8,
                k,
                v,
                ts,
            }
        })
        .collect()
}

/// The enumerator's output: the global list (`select all`) or the single partition's list.
fn oracle_output(rule: &Rule, events: &[Ev]) -> Vec<Vec<u64>> {
    if rule.select_all {
        expected_select_all(rule, events)
    } else {
        expected_select_first(rule, events)
            .into_values()
            .flatten()
            .collect()
    }
}

struct HandCase {
    pattern: &'static str,
    types: &'static str,
    select_all: bool,
    skip: &'static str,
    within: Option<i64>,
    events: &'static str,
    expect: &'static [&'static [u64]],
}

const fn case(
    pattern: &'static str,
    types: &'static str,
    select_all: bool,
    skip: &'static str,
    events: &'static str,
    expect: &'static [&'static [u64]],
) -> HandCase {
    HandCase {
        pattern,
        types,
        select_all,
        skip,
        within: None,
        events,
        expect,
    }
}

const ALL: bool = true;
const FIRST: bool = false;
const ABC: &str = "a:A b:B c:C";

/// Worked examples from docs/language.md (`D` plays the `X` of the docs).
const DOC_CASES: &[HandCase] = &[
    // Section 17: `a b+ c` on `A; B; X; B; C`, every contiguity, selection and strategy.
    case("a b+ c", ABC, ALL, "no skip", "A; B; D; B; C", &[]),
    case("a b+ c", ABC, FIRST, "past last", "A; B; D; B; C", &[]),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4], &[0, 1, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "next",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "past last",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "first b",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "last b",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        ALL,
        "first a",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4], &[0, 1, 4]],
    ),
    case(
        "a -> b+ -> c",
        ABC,
        FIRST,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a ->> b+ ->> c",
        ABC,
        ALL,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4], &[0, 1, 4], &[0, 3, 4]],
    ),
    case(
        "a ->> b+ ->> c",
        ABC,
        ALL,
        "last b",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a ->> b+ ->> c",
        ABC,
        FIRST,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    // Section 10: undefined variables on eight events.
    case(
        "a b{2} c",
        "",
        ALL,
        "no skip",
        "D; D; D; D; D; D; D; D",
        &[
            &[0, 1, 2, 3],
            &[1, 2, 3, 4],
            &[2, 3, 4, 5],
            &[3, 4, 5, 6],
            &[4, 5, 6, 7],
        ],
    ),
    case(
        "a b{2} c",
        "",
        ALL,
        "first b",
        "D; D; D; D; D; D; D; D",
        &[
            &[0, 1, 2, 3],
            &[1, 2, 3, 4],
            &[2, 3, 4, 5],
            &[3, 4, 5, 6],
            &[4, 5, 6, 7],
        ],
    ),
    case(
        "a b{2} c",
        "",
        ALL,
        "last b",
        "D; D; D; D; D; D; D; D",
        &[&[0, 1, 2, 3], &[2, 3, 4, 5], &[4, 5, 6, 7]],
    ),
    case(
        "a b{2} c",
        "",
        ALL,
        "first c",
        "D; D; D; D; D; D; D; D",
        &[&[0, 1, 2, 3], &[3, 4, 5, 6]],
    ),
    case(
        "a b{2} c",
        "",
        ALL,
        "past last",
        "D; D; D; D; D; D; D; D",
        &[&[0, 1, 2, 3], &[4, 5, 6, 7]],
    ),
    // Sections 9 and 10.
    case(
        "a ->> b",
        "a:A b:B",
        ALL,
        "no skip",
        "A; A; B; B",
        &[&[0, 2], &[1, 2], &[0, 3], &[1, 3]],
    ),
    case(
        "a ->> b",
        "a:A b:B",
        FIRST,
        "no skip",
        "A; A; B; B",
        &[&[0, 2], &[1, 2]],
    ),
    case(
        "a ->> b",
        "a:A b:B",
        ALL,
        "next",
        "A; A; B; B",
        &[&[0, 2], &[1, 2]],
    ),
    case(
        "a ->> b",
        "a:A b:B",
        ALL,
        "past last",
        "A; A; B; B",
        &[&[0, 2]],
    ),
    case(
        "a -> b? -> c",
        ABC,
        ALL,
        "first b",
        "A; A; C; C",
        &[&[0, 2], &[1, 2]],
    ),
    case(
        "a -> b? -> c",
        ABC,
        ALL,
        "past last",
        "A; A; C; C",
        &[&[0, 2]],
    ),
    // Section 8.
    case(
        "a -> b* -> c",
        ABC,
        ALL,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4], &[0, 1, 4], &[0, 4]],
    ),
    case(
        "a -> b*? -> c",
        ABC,
        ALL,
        "no skip",
        "A; B; D; B; C",
        &[&[0, 4], &[0, 1, 4], &[0, 1, 3, 4]],
    ),
    case(
        "a -> b* -> c",
        ABC,
        FIRST,
        "past last",
        "A; B; D; B; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "a -> b*? -> c",
        ABC,
        FIRST,
        "past last",
        "A; B; D; B; C",
        &[&[0, 4]],
    ),
    case(
        "a ->> b{2}",
        "a:A b:B",
        ALL,
        "no skip",
        "A; B; D; B; B",
        &[&[0, 1, 3], &[0, 1, 4], &[0, 3, 4]],
    ),
    case(
        "a b*",
        "a:A b:B",
        FIRST,
        "past last",
        "A; B; B; B; D; A",
        &[&[0, 1, 2, 3], &[5]],
    ),
    case(
        "a -> b{2,3}?",
        "a:A b:B",
        FIRST,
        "past last",
        "A; B; D; B; B; A",
        &[&[0, 1, 3]],
    ),
    // Section 7.
    case(
        "a -> b -> c",
        ABC,
        ALL,
        "no skip",
        "A; B; B; C",
        &[&[0, 1, 3]],
    ),
    case(
        "a+ -> b",
        "a:A b:B",
        ALL,
        "no skip",
        "A; D; A; B",
        &[&[0, 2, 3], &[0, 3], &[2, 3]],
    ),
    case("a+ b", "a:A b:B", ALL, "no skip", "A; D; A; B", &[&[2, 3]]),
    case("a b? -> c", ABC, ALL, "no skip", "A; D; C", &[&[0, 2]]),
    case("a -> b? c", ABC, ALL, "no skip", "A; D; C", &[]),
    case(
        "a -> b? c",
        ABC,
        ALL,
        "no skip",
        "A; D; B; C",
        &[&[0, 2, 3]],
    ),
];

/// Cases for groups, alternation and negation, derived by hand from the definitions.
const NEW_CASES: &[HandCase] = &[
    // Relaxed negation: no `x` strictly between `a` and `b`.
    case(
        "a -> !x -> b",
        "a:A x:C b:B",
        ALL,
        "no skip",
        "A; C; B; A; B",
        &[&[3, 4]],
    ),
    case(
        "a -> !x -> b",
        "a:A x:C b:B",
        ALL,
        "no skip",
        "A; D; B",
        &[&[0, 2]],
    ),
    // Strict negation: the event right after `a` must not be an `x` unless `b` takes it.
    case(
        "a !x -> b",
        "a:A x:C b:B",
        ALL,
        "no skip",
        "A; D; C; B",
        &[&[0, 3]],
    ),
    case("a !x -> b", "a:A x:C b:B", ALL, "no skip", "A; C; B", &[]),
    case(
        "a !x -> b",
        "a:A x:* b:B",
        ALL,
        "no skip",
        "A; B",
        &[&[0, 1]],
    ),
    // Groups: a relaxed repetition of a strict pair, then `c`.
    case(
        "(a b)+ -> c",
        ABC,
        FIRST,
        "past last",
        "A; B; A; B; C",
        &[&[0, 1, 2, 3, 4]],
    ),
    case(
        "(a b)+ -> c",
        ABC,
        ALL,
        "no skip",
        "A; B; A; B; C",
        &[&[0, 1, 2, 3, 4], &[0, 1, 4], &[2, 3, 4]],
    ),
    case(
        "x -> (a b){2}",
        "x:D a:A b:B",
        ALL,
        "no skip",
        "D; A; B; C; A; B",
        &[&[0, 1, 2, 4, 5]],
    ),
    case(
        "x (a b){2}",
        "x:D a:A b:B",
        ALL,
        "no skip",
        "D; A; B; C; A; B",
        &[],
    ),
    // Alternation: left alternative first.
    case("a | b c", ABC, ALL, "no skip", "B; C; A", &[&[0, 1], &[2]]),
    // An undefined `a` also takes the `B`: the same events, matched twice (as `a` and as `b`).
    case(
        "x -> (a | b) -> c",
        "x:D a:* b:B c:C",
        ALL,
        "no skip",
        "D; B; C",
        &[&[0, 1, 2], &[0, 1, 2]],
    ),
    // The contiguity of the waiting variable decides: the preferred second repetition is `a`,
    // whose relaxed wait skips the `B` (it does not fit `a`) and takes the `A` at 3.
    case(
        "x -> (a | b)+ -> c",
        "x:D a:A b:B c:C",
        FIRST,
        "past last",
        "D; A; B; A; C",
        &[&[0, 1, 3, 4]],
    ),
    case(
        "x -> (a | b)+ -> c",
        "x:D a:A b:B c:C",
        ALL,
        "no skip",
        "D; A; B; A; C",
        &[
            &[0, 1, 3, 4],
            &[0, 1, 2, 3, 4],
            &[0, 1, 2, 4],
            &[0, 1, 4],
            &[0, 2, 3, 4],
            &[0, 2, 4],
        ],
    ),
    case(
        "x -> (b | a)+ -> c",
        "x:D a:A b:B c:C",
        FIRST,
        "past last",
        "D; A; B; A; C",
        &[&[0, 2, 3, 4]],
    ),
    // 3^8 matches from start 0, far more partial matches than the default run cap (the test
    // lifts the cap); the preferred one takes every event.
    case(
        "(a (b? ->> c)*)+",
        "",
        FIRST,
        "past last",
        "A; A; A; A; A; A; A; A; A",
        &[&[0, 1, 2, 3, 4, 5, 6, 7, 8]],
    ),
];

fn run_hand_cases(cases: &[HandCase], engine_too: bool) {
    let mut failures = Vec::new();
    for c in cases {
        let rule = hand_rule(c.pattern, c.types, c.select_all, c.skip, c.within);
        let events = hand_events(c.events);
        let got = oracle_output(&rule, &events);
        let want: Vec<Vec<u64>> = c.expect.iter().map(|m| m.to_vec()).collect();
        if got != want {
            failures.push(format!(
                "enumerator: {}\n  events {}\n  expected {want:?}\n  got      {got:?}",
                rule.text(),
                c.events
            ));
        }
        if engine_too && let Err(e) = check(&rule, &events) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn enumerator_reproduces_the_documented_examples() {
    run_hand_cases(DOC_CASES, true);
}

#[test]
fn enumerator_on_groups_alternation_and_negation() {
    run_hand_cases(NEW_CASES, NEW_CONSTRUCTS);
}

#[test]
fn trailing_absence_completes_at_the_deadline() {
    // `a -> !x within 2s`: start 0 sees an `x` at its deadline (inclusive) and fails; start 3
    // sees none up to 5 s + 2 s and completes there.
    let mut rule = hand_rule("a -> !x", "a:A x:C", ALL, "no skip", Some(2));
    let events = hand_events("A@0; B@1; C@2; A@5; B@6; B@8");
    assert_eq!(oracle_output(&rule, &events), vec![vec![3]]);
    rule.select_all = false;
    assert_eq!(oracle_output(&rule, &events), vec![vec![3]]);
    // Relaxed `b` then absence: start 0 completes at 3 s, start 2 at 5 s (the `C` at 7 s is
    // past its deadline).
    let relaxed = hand_rule("a -> b -> !x", "a:A b:B x:C", ALL, "no skip", Some(3));
    let events2 = hand_events("A@0; B@1; A@2; B@4; D@6; C@7");
    assert_eq!(
        oracle_output(&relaxed, &events2),
        vec![vec![0, 1], vec![2, 3]]
    );
    // Two partitions reach the deadline 3 s on the same watermark (before the event at 4 s):
    // partition 0 appeared first, so its match comes first although the event is partition 1's.
    let mut partitioned = hand_rule("a? b+ -> !c", "a:A b:* c:C", ALL, "past last", Some(3));
    partitioned.partitioned = true;
    let events3 = hand_events("A:0@0; A:1@0; A:0@2; A:1@4");
    assert_eq!(
        oracle_output(&partitioned, &events3),
        vec![vec![0, 2], vec![1], vec![3]]
    );
    if NEW_CONSTRUCTS {
        for (rule, events) in [
            (&rule, &events),
            (&relaxed, &events2),
            (&partitioned, &events3),
        ] {
            check(rule, events).unwrap_or_else(|m| panic!("{m}"));
        }
    }
}

/// Cases the random test once found or that pin down a subtle rule.
#[test]
fn regressions() {
    // SQL:2016 resolves starts in order: start 0's preferred match `[0, 2]` (its `c?` never
    // finds a `C v=1`) skips past event 2, so start 1 is never tried.
    let mut rule = hand_rule("a -> b -> c?", ABC, FIRST, "past last", None);
    rule.vars[2].cond = Cond::And(
        Box::new(Cond::Type(vec![2])),
        Box::new(Cond::Cmp(Operand::V, oracle::CmpOp::Eq, Operand::Last(0))),
    );
    let events = hand_events("A=1; A=2; B; C=2");
    assert_eq!(oracle_output(&rule, &events), vec![vec![0, 2]]);
    check(&rule, &events).unwrap_or_else(|m| panic!("{m}"));
}
