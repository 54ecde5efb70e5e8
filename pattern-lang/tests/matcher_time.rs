//! The reference matcher on compiled rules, driven by watermarks: expiry, timed absence and
//! timeouts fire for partitions that see no further events, at the deadline, in deadline order;
//! an event behaves exactly as the watermark `ts - 1` followed by the event.

use cep_core::event::{Event, Label};
use cep_core::reference::{MatcherConfig, ReferenceMatcher};
use cep_core::signal::{Signal, SignalKind};
use cep_core::symbol::SymbolTable;
use cep_core::value::Value;
use pattern_lang::compile;

const DECLS: &str = "event Order { k: i64, v: i64 }\nevent Pay { k: i64 }\n";
const S: i64 = 1_000_000_000;

fn matcher(rule: &str) -> ReferenceMatcher {
    let src = format!("{DECLS}{rule}");
    let mut symbols = SymbolTable::new();
    let program = compile(&src, None, &mut symbols).unwrap_or_else(|d| panic!("{d}"));
    let rule = program.rules[0].clone();
    ReferenceMatcher::new(rule, 0, MatcherConfig::default())
}

/// `Order` (type 0) or `Pay` (type 1) with key `k` at `secs` seconds.
fn ev(seq: u64, type_id: u16, k: i64, secs: i64) -> Event {
    let mut slots = vec![0u64; 2];
    slots[0] = Value::I64(k).to_slot();
    Event {
        seq,
        ts: secs * S,
        type_id,
        label: Label::default(),
        slots,
    }
}

fn brief(s: &[Signal]) -> Vec<(SignalKind, i64, Vec<u64>)> {
    s.iter().map(|s| (s.kind, s.ts, s.seq.clone())).collect()
}

const ABSENCE: &str = "rule unpaid from Order, Pay partition by k pattern o -> !p define o as Order, p as Pay within 15m select all";

#[test]
fn absence_fires_on_the_watermark_for_a_silent_key() {
    let mut m = matcher(ABSENCE);
    let mut out = Vec::new();
    m.on_event(ev(0, 0, 1, 0).view(), &mut out);
    m.on_event(ev(1, 0, 2, 60).view(), &mut out);
    m.on_event(ev(2, 1, 2, 120).view(), &mut out);
    assert!(out.is_empty());
    m.on_watermark(15 * 60 * S - 1, &mut out);
    assert!(
        out.is_empty(),
        "an event at the deadline could still arrive"
    );
    m.on_watermark(15 * 60 * S, &mut out);
    assert_eq!(brief(&out), vec![(SignalKind::Match, 15 * 60 * S, vec![0])]);
    assert_eq!(m.stats().live_runs, 0);
    m.finish(&mut out);
    assert_eq!(out.len(), 1, "key 2 was paid");
}

#[test]
fn deadlines_fire_in_order_across_partitions() {
    let mut m = matcher(
        "rule r partition by k pattern o -> p define o as Order, p as Pay within 10s select all on timeout emit late { }",
    );
    let mut out = Vec::new();
    m.on_event(ev(0, 0, 1, 0).view(), &mut out);
    m.on_event(ev(1, 0, 2, 1).view(), &mut out);
    m.on_event(ev(2, 0, 1, 2).view(), &mut out);
    m.on_watermark(100 * S, &mut out);
    assert_eq!(
        brief(&out),
        vec![
            (SignalKind::Timeout, 10 * S, vec![0]),
            (SignalKind::Timeout, 11 * S, vec![1]),
            (SignalKind::Timeout, 12 * S, vec![2]),
        ]
    );
    assert_eq!(m.stats().timeouts, 3);
}

#[test]
fn an_event_acts_as_the_watermark_before_it() {
    let rule = "rule r partition by k pattern o -> p define o as Order, p as Pay within 10s select first on timeout emit late { }";
    let events = [
        ev(0, 0, 1, 0),
        ev(1, 0, 2, 3),
        ev(2, 0, 1, 9),
        ev(3, 1, 1, 12),
        ev(4, 0, 2, 30),
    ];
    // Only events: each event expires its own partition.
    let mut a = matcher(rule);
    let mut only_events = Vec::new();
    for e in &events {
        a.on_event(e.view(), &mut only_events);
    }
    a.finish(&mut only_events);
    // With the watermark `ts - 1` before each event (what the engine sends).
    let mut b = matcher(rule);
    let mut with_watermarks = Vec::new();
    for e in &events {
        b.on_watermark(e.ts - 1, &mut with_watermarks);
        b.on_event(e.view(), &mut with_watermarks);
    }
    b.finish(&mut with_watermarks);
    let mut x = brief(&only_events);
    let mut y = brief(&with_watermarks);
    // Key 2's timeout at 13 s fires at the next key-1 event only with watermarks; the same
    // signals come out either way.
    assert_eq!(
        y,
        vec![
            (SignalKind::Timeout, 10 * S, vec![0]),
            (SignalKind::Match, 12 * S, vec![2, 3]),
            (SignalKind::Timeout, 13 * S, vec![1]),
            (SignalKind::Timeout, 40 * S, vec![4]),
        ]
    );
    x.sort_by_key(|s| s.1);
    y.sort_by_key(|s| s.1);
    assert_eq!(x, y);
}

#[test]
fn select_first_releases_a_later_start_when_the_earlier_one_expires() {
    let mut m = matcher(
        "rule r pattern o -> p define o as Order, p as Pay and k == o.k within 10s select first",
    );
    let mut out = Vec::new();
    m.on_event(ev(0, 0, 1, 0).view(), &mut out);
    m.on_event(ev(1, 0, 2, 1).view(), &mut out);
    m.on_event(ev(2, 1, 2, 2).view(), &mut out);
    assert!(out.is_empty(), "start 0 is unresolved");
    m.on_watermark(10 * S, &mut out);
    assert_eq!(brief(&out), vec![(SignalKind::Match, 2 * S, vec![1, 2])]);
}
