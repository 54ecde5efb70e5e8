//! Groups, alternation, negation, absence and timeouts: every misuse gets a diagnostic pointing
//! at the offending text; well-formed patterns compile to the pattern they were written as.

use cep_core::nfa::Guard;
use cep_core::symbol::SymbolTable;
use pattern_lang::ast::{ElementKind, Item};
use pattern_lang::{compile, parse_file};

const DECLS: &str = "event A { v: i64 }\nevent B { v: i64 }\nevent X { v: i64 }\n";

/// (what it checks, rule source (one line, after DECLS), message fragment, column of the caret)
const CASES: &[(&str, &str, &str, usize)] = &[
    (
        "negation first",
        "rule r pattern !x -> a within 1s",
        "a pattern cannot start with the negation `!x`",
        16,
    ),
    (
        "negation first in an alternative",
        "rule r pattern a | !x b",
        "a pattern cannot start with the negation `!x`",
        20,
    ),
    (
        "negation in a group",
        "rule r pattern a (b -> !x -> c)",
        "negation `!x` inside parentheses",
        24,
    ),
    (
        "strict negation at the end",
        "rule r pattern a !x within 1s",
        "a pattern cannot end with the strict negation `!x`",
        18,
    ),
    (
        "quantified negation",
        "rule r pattern a -> !x+ -> b",
        "the negation `!x` cannot have a quantifier",
        23,
    ),
    (
        "quantified group that can match nothing",
        "rule r pattern a (b? c*)+",
        "this quantified group can match no events",
        18,
    ),
    (
        "optional group that can match nothing",
        "rule r pattern a -> (b | c?)?",
        "this quantified group can match no events",
        21,
    ),
    (
        "empty group",
        "rule r pattern a ( )",
        "expected a pattern element inside `( )`",
        20,
    ),
    (
        "unclosed group",
        "rule r pattern a (b c within 1s",
        "expected `->`, `->>`, `|`, a pattern element, or `)`",
        23,
    ),
    (
        "dangling alternation",
        "rule r pattern a | within 1s",
        "expected a pattern variable after `|`",
        20,
    ),
    (
        "absence without within",
        "rule r pattern a -> !x define a as A, x as X",
        "the absence `!x` at the end of the pattern needs `within`",
        21,
    ),
    (
        "absence before optional elements without within",
        "rule r pattern a -> !x -> b? define a as A, x as X",
        "the absence `!x` at the end of the pattern needs `within`",
        21,
    ),
    (
        "timeout without within",
        "rule r pattern a -> b on timeout emit late { }",
        "`on timeout emit` needs `within`",
        23,
    ),
    (
        "negated variable in another condition",
        "rule r pattern a -> !x -> b define x as X, b as B and v == x.v",
        "`x` is negated (`!x`) and binds no events",
        60,
    ),
    (
        "negated variable in emit",
        "rule r pattern a -> !x -> b emit s { n: count(x) }",
        "`x` is negated (`!x`) and binds no events",
        47,
    ),
    (
        "negated variable in timeout emit",
        "rule r pattern a -> !x -> b within 1s on timeout emit late { v: x.v }",
        "`x` is negated (`!x`) and binds no events",
        65,
    ),
    (
        "skip to a negated variable",
        "rule r pattern a -> !x -> b after match skip to first x",
        "`x` is negated (`!x`) and binds no events",
        55,
    ),
    (
        "variable twice across alternatives",
        "rule r pattern a b | a c",
        "variable `a` appears twice in the pattern",
        22,
    ),
    (
        "duplicate timeout clause",
        "rule r pattern a -> b within 1s on timeout emit t { } on timeout emit u { }",
        "duplicate `on timeout` clause",
        55,
    ),
];

#[test]
fn pattern_misuse_diagnostics() {
    let mut failures = Vec::new();
    for &(what, rule, fragment, col) in CASES {
        let src = format!("{DECLS}{rule}");
        let mut symbols = SymbolTable::new();
        match compile(&src, None, &mut symbols) {
            Ok(_) => failures.push(format!("{what}: compiled without error")),
            Err(d) => {
                let rendered = d.render("t.cep", &src);
                let location = format!("t.cep:4:{col}");
                if !rendered.contains(fragment) || !rendered.contains(&location) {
                    failures.push(format!(
                        "{what}: wanted `{fragment}` at {location}, got:\n{rendered}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pattern_text_round_trips() {
    for pattern in [
        "a (b | c d)+ -> e",
        "(a -> b){2,3}? ->> c",
        "a -> !x -> b+ c",
        "a !x -> b",
        "a b | c -> d",
        "a -> (b | (c d)*? e){2}",
    ] {
        let src = format!("{DECLS}rule r pattern {pattern} within 1s");
        let mut symbols = SymbolTable::new();
        let program = compile(&src, None, &mut symbols).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(program.rules[0].nfa.pattern_text(), pattern);
    }
}

#[test]
fn syntax_tree_of_groups_and_negation() {
    let file = parse_file("rule r pattern a -> (b | c)+? !x d on timeout emit late { }")
        .unwrap_or_else(|d| panic!("{d}"));
    let Item::Rule(r) = &file.items[0] else {
        panic!("not a rule")
    };
    let seq = &r.pattern.alternatives[0].elements;
    assert_eq!(seq.len(), 4);
    let ElementKind::Group(alts) = &seq[1].kind else {
        panic!("not a group: {:?}", seq[1])
    };
    assert_eq!(alts.len(), 2);
    assert!(!seq[1].quantifier.greedy);
    assert!(matches!(&seq[2].kind, ElementKind::Not(v) if v.name == "x"));
    assert_eq!(
        r.timeout.as_ref().map(|t| t.signal.name.as_str()),
        Some("late")
    );
}

#[test]
fn negation_compiles_to_edge_guards() {
    let src = format!("{DECLS}rule r pattern a !x -> b -> !y define x as X, y as X within 5s");
    let mut symbols = SymbolTable::new();
    let program = compile(&src, None, &mut symbols).unwrap_or_else(|d| panic!("{d}"));
    let nfa = &program.rules[0].nfa;
    assert_eq!(nfa.states.len(), 2);
    assert_eq!(
        nfa.states[0].next[0].guards,
        vec![Guard {
            var: 1,
            strict: true
        }]
    );
    assert!(nfa.states[1].next[0].is_absence());
    assert!(program.rules[0].timeout.is_none());
}

#[test]
fn on_is_still_a_variable_name() {
    let src = format!("{DECLS}rule r pattern a -> on define on as B");
    let mut symbols = SymbolTable::new();
    let program = compile(&src, None, &mut symbols).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(program.rules[0].nfa.pattern_text(), "a -> on");
}
