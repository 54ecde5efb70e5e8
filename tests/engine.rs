//! Engine-level behaviour that the corpus format cannot express: the live-run cap and its
//! eviction counter, rule errors through the embedding API, mistyped event fields, the
//! event-time layer through the embedding API (admission of each push, counters, explicit
//! watermarks, option errors), and signal order (steps, timer tie-breaks, the end of stream,
//! shard errors), on both matchers.

use anyhow::Result;
use strix::cep_core::reference::MatcherConfig;
use strix::{
    Admission, DedupOptions, Engine, EngineConfig, EngineError, FieldValue, MatcherKind, ShardSpec,
    SignalOrder, TimeOptions,
};

const RULES: &str = "
event E { k: sym, v: i64 }
rule pairs from E partition by k pattern a ->> b define a as v == 1, b as v == 2 within 1h select all after match no skip
";

#[test]
fn run_cap_evicts_oldest_and_counts() -> Result<()> {
    let config = EngineConfig {
        matcher: MatcherConfig {
            max_runs_per_key: 3,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::build("cap.cep", RULES, None, Default::default(), config)?;
    let mut signals = Vec::new();
    // Ten `a` events, each starting a run that waits (skip till any) for a `b`.
    for i in 0..10 {
        let e = engine.event(
            "E",
            i,
            &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(1))],
        )?;
        engine.push(&e, |s| signals.push(s.raw.seq.clone()));
    }
    let stats = engine.stats()[0];
    assert_eq!(stats.live_runs, 3);
    assert_eq!(stats.evictions, 7);
    let e = engine.event(
        "E",
        20,
        &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(2))],
    )?;
    engine.push(&e, |s| signals.push(s.raw.seq.clone()));
    // Only the three newest runs survived to meet the `b`.
    assert_eq!(signals, vec![vec![7, 10], vec![8, 10], vec![9, 10]]);
    Ok(())
}

#[test]
fn without_cap_pressure_nothing_is_evicted() -> Result<()> {
    let mut engine = Engine::from_rules("nocap.cep", RULES)?;
    let mut n = 0;
    for i in 0..10 {
        let e = engine.event(
            "E",
            i,
            &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(1))],
        )?;
        engine.push(&e, |_| n += 1);
    }
    let e = engine.event(
        "E",
        20,
        &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(2))],
    )?;
    engine.push(&e, |_| n += 1);
    assert_eq!(n, 10);
    assert_eq!(engine.stats()[0].evictions, 0);
    assert_eq!(engine.stats()[0].peak_live_runs, 10);
    Ok(())
}

#[test]
fn embedding_errors_are_values() {
    let err = Engine::from_rules(
        "bad.cep",
        "event E { v: i64 }\nrule r pattern a define a as w > 1",
    )
    .unwrap_err();
    let EngineError::Rules(text) = err else {
        panic!("expected a rules error")
    };
    assert!(text.contains("bad.cep:2:30"), "{text}");
    let mut engine = Engine::from_rules("ok.cep", RULES).expect("rules compile");
    assert!(engine.event("Nope", 0, &[]).is_err());
    assert!(
        engine
            .event("E", 0, &[("missing", FieldValue::I64(1))])
            .is_err()
    );
    assert!(
        engine
            .event("E", 0, &[("v", FieldValue::Str("x"))])
            .is_err()
    );
}

const TIMED: &str = "
event E { k: sym, v: i64, id: u64 }
event F { k: sym, v: i64 }
rule pairs from E partition by k pattern a -> b define a as v == 1, b as v == 2 select all
  after match no skip emit pair { k, first: a.v, second: b.v }
";

fn timed(time: TimeOptions) -> Result<Engine> {
    let config = EngineConfig {
        time,
        ..EngineConfig::default()
    };
    Ok(Engine::build(
        "timed.cep",
        TIMED,
        None,
        Default::default(),
        config,
    )?)
}

fn e(engine: &mut Engine, ts_s: i64, v: i64, id: u64) -> Result<strix::cep_core::Event> {
    Ok(engine.event(
        "E",
        ts_s * 1_000_000_000,
        &[
            ("k", FieldValue::Str("K")),
            ("v", FieldValue::I64(v)),
            ("id", FieldValue::U64(id)),
        ],
    )?)
}

#[test]
fn push_reports_what_the_time_layer_did() -> Result<()> {
    let mut engine = timed(TimeOptions {
        max_delay: 2_000_000_000,
        allowed_lateness: 1_000_000_000,
        ..TimeOptions::default()
    })?;
    let mut signals = Vec::new();
    let mut admissions = Vec::new();
    // 10s: W = 10s - 2s - 1ns, buffered; 9s: reordered, buffered; 12s: W = 10s - 1ns releases
    // 9s and 10s (12s waits), operators at 9s - 1ns; 9s again: behind W but within lateness,
    // delivered at once; 5s: late; 13s: buffered; the end releases 12s and 13s.
    for (ts, v) in [(10, 1), (9, 1), (12, 2), (9, 1), (5, 1), (13, 2)] {
        let ev = e(&mut engine, ts, v, 0)?;
        admissions.push(engine.push(&ev, |s| signals.push(s.to_json())));
    }
    assert_eq!(
        admissions,
        [
            Admission::Buffered,
            Admission::Buffered,
            Admission::Buffered,
            Admission::AdmittedLate,
            Admission::Late,
            Admission::Buffered,
        ]
    );
    engine.finish(|s| signals.push(s.to_json()));
    let stats = engine.engine_stats().time;
    assert_eq!(
        (stats.late, stats.admitted_late, stats.reordered),
        (1, 1, 1)
    );
    assert_eq!(stats.max_buffered, 3);
    assert_eq!(stats.buffered, 0);
    assert_eq!(stats.watermark, i64::MAX);
    // Delivery: 9s(1) 10s(0) 9s(3) 12s(2) 13s(5); the three `a`s all pair with 12s.
    let seqs: Vec<&serde_json::Value> = signals.iter().map(|s| &s["seq"]).collect();
    assert_eq!(
        seqs,
        [
            &serde_json::json!([1, 2]),
            &serde_json::json!([0, 2]),
            &serde_json::json!([3, 2]),
        ]
    );
    // Fields of rules read the right events although their seqs arrived out of order.
    assert_eq!(
        signals[0]["fields"],
        serde_json::json!({"k": "K", "first": 1, "second": 2})
    );
    Ok(())
}

#[test]
fn explicit_watermarks_release_buffered_events() -> Result<()> {
    let mut engine = timed(TimeOptions {
        max_delay: 3_600_000_000_000,
        ..TimeOptions::default()
    })?;
    let mut n = 0;
    for (ts, v) in [(2, 2), (1, 1)] {
        let ev = e(&mut engine, ts, v, 0)?;
        assert_eq!(engine.push(&ev, |_| n += 1), Admission::Buffered);
    }
    assert_eq!(n, 0);
    engine.watermark_to(1_500_000_000, |_| n += 1);
    // 1s is released, 2s is not (only times up to W + 1 ns are); the pair needs 2s.
    assert_eq!(n, 0);
    assert_eq!(engine.watermark(), 1_500_000_000);
    engine.watermark_to(2_000_000_000, |_| n += 1);
    assert_eq!(n, 1);
    let late = e(&mut engine, 2, 1, 0)?;
    assert_eq!(engine.push(&late, |_| n += 1), Admission::Late);
    Ok(())
}

#[test]
fn in_order_input_is_delivered_at_once_by_default() -> Result<()> {
    let mut engine = Engine::from_rules("t.cep", TIMED)?;
    let mut n = 0;
    for (ts, v) in [(1, 1), (1, 2), (3, 2)] {
        let ev = e(&mut engine, ts, v, 0)?;
        assert_eq!(engine.push(&ev, |_| n += 1), Admission::Delivered);
    }
    assert_eq!(n, 1);
    assert_eq!(engine.watermark(), 2_999_999_999);
    let old = e(&mut engine, 2, 1, 0)?;
    assert_eq!(engine.push(&old, |_| n += 1), Admission::Late);
    let stats = engine.engine_stats().time;
    assert_eq!((stats.late, stats.max_buffered, stats.reordered), (1, 0, 0));
    Ok(())
}

#[test]
fn dedup_drops_repeats_of_an_id() -> Result<()> {
    let mut engine = timed(TimeOptions {
        dedup: Some(DedupOptions {
            field: "id".into(),
            horizon: 60_000_000_000,
        }),
        ..TimeOptions::default()
    })?;
    let mut signals = Vec::new();
    for (ts, v, id) in [(1, 1, 7), (2, 1, 7), (3, 2, 8), (100, 1, 7), (101, 2, 9)] {
        let ev = e(&mut engine, ts, v, id)?;
        let adm = engine.push(&ev, |s| signals.push(s.raw.seq.clone()));
        assert_eq!(adm == Admission::Duplicate, ts == 2, "at {ts}s");
    }
    assert_eq!(engine.engine_stats().time.duplicates, 1);
    assert_eq!(signals, vec![vec![0, 2], vec![3, 4]]);
    Ok(())
}

#[test]
fn bad_time_options_are_errors() {
    let bad = |time: TimeOptions| match timed(time) {
        Err(e) => match e.downcast::<EngineError>() {
            Ok(EngineError::Time(msg)) => msg,
            other => panic!("expected a time error, got {other:?}"),
        },
        Ok(_) => panic!("accepted"),
    };
    let msg = bad(TimeOptions {
        max_delay_per_type: vec![("Nope".into(), 1)],
        ..TimeOptions::default()
    });
    assert!(msg.contains("unknown event type `Nope`"), "{msg}");
    let msg = bad(TimeOptions {
        max_delay_per_type: vec![("F".into(), 1), ("F".into(), 2)],
        ..TimeOptions::default()
    });
    assert!(msg.contains("more than one max delay for `F`"), "{msg}");
    let msg = bad(TimeOptions {
        allowed_lateness: -5,
        ..TimeOptions::default()
    });
    assert!(
        msg.contains("allowed lateness must not be negative"),
        "{msg}"
    );
    let msg = bad(TimeOptions {
        dedup: Some(DedupOptions {
            field: "serial".into(),
            horizon: 1,
        }),
        ..TimeOptions::default()
    });
    assert!(msg.contains("`serial`"), "{msg}");
}

const UNPAID: &str = "
event Order   { id: u64, amount: f64 }
event Payment { id: u64 }
rule unpaid
  from Order, Payment
  partition by id
  pattern o -> !p
  define o as Order, p as Payment
  within 15m
  emit unpaid { id, amount: o.amount }
";

const MIN: i64 = 60_000_000_000;

fn order_or_payment(
    engine: &mut Engine,
    ty: &str,
    id: u64,
    at: i64,
) -> Result<strix::cep_core::Event> {
    let mut fields = vec![("id", FieldValue::U64(id))];
    if ty == "Order" {
        fields.push(("amount", FieldValue::F64(id as f64 * 10.0)));
    }
    Ok(engine.event(ty, at, &fields)?)
}

/// The "order with no matching payment within 15m": order 1 never sees another event of
/// its key, yet its signal arrives as soon as the watermark reaches the deadline (explicitly, or
/// through another key's event), not at the end of the stream.
#[test]
fn absence_fires_for_a_silent_key_once_the_watermark_passes() -> Result<()> {
    let mut engine = Engine::from_rules("unpaid.cep", UNPAID)?;
    let mut got: Vec<(i64, serde_json::Value)> = Vec::new();
    for (ty, id, at) in [("Order", 1, 0), ("Order", 2, MIN), ("Payment", 2, 2 * MIN)] {
        let e = order_or_payment(&mut engine, ty, id, at)?;
        engine.push(&e, |s| got.push((s.raw.ts, s.to_json())));
    }
    // A payment for order 2 arrived in time: nothing for it, ever.
    engine.watermark_to(15 * MIN - 1, |s| got.push((s.raw.ts, s.to_json())));
    assert!(got.is_empty(), "fired before the deadline: {got:?}");
    engine.watermark_to(15 * MIN, |s| got.push((s.raw.ts, s.to_json())));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 15 * MIN, "the signal's time is the deadline");
    assert_eq!(got[0].1["signal"], "unpaid");
    assert_eq!(got[0].1["key"], "1");
    assert_eq!(got[0].1["seq"], serde_json::json!([0]));
    assert_eq!(got[0].1["fields"]["amount"], 10.0);

    // Event-driven: order 3 is followed only by other keys' events; the first one after its
    // deadline reports it, before that event is matched.
    let e = order_or_payment(&mut engine, "Order", 3, 20 * MIN)?;
    engine.push(&e, |s| got.push((s.raw.ts, s.to_json())));
    let e = order_or_payment(&mut engine, "Order", 4, 35 * MIN)?;
    engine.push(&e, |s| got.push((s.raw.ts, s.to_json())));
    assert_eq!(
        got.len(),
        1,
        "35m is the deadline itself, not past it: {got:?}"
    );
    let e = order_or_payment(&mut engine, "Payment", 9, 35 * MIN + 1)?;
    engine.push(&e, |s| got.push((s.raw.ts, s.to_json())));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].1["key"], "3");
    assert_eq!(got[1].0, 35 * MIN);

    // Order 4 is still open: it reports at the end of the stream (the final watermark).
    let mut at_finish = Vec::new();
    engine.finish(|s| at_finish.push(s.to_json()));
    assert_eq!(at_finish.len(), 1, "{at_finish:?}");
    assert_eq!(at_finish[0]["key"], "4");
    Ok(())
}

/// An admitted-late start can complete its match while an earlier-delivered, later-timed start
/// is still open: the completed match waits its turn without a timer of its own (it used to be
/// re-armed at a deadline the watermark had already passed, forever).
#[test]
fn admitted_late_select_first_match_waits_behind_a_later_timed_start() -> Result<()> {
    const LATE_FIRST: &str = "
event A { v: i64 }
event B { v: i64 }
rule r pattern a -> b define a as A, b as B and v >= a.v within 5s select first
";
    let config = EngineConfig {
        time: TimeOptions {
            allowed_lateness: 4_000_000_000,
            ..TimeOptions::default()
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::build("late.cep", LATE_FIRST, None, Default::default(), config)?;
    let mut got = Vec::new();
    let mut admissions = Vec::new();
    for (ty, at_s, v) in [("A", 20, 2), ("A", 17, 0), ("B", 18, 0)] {
        let e = engine.event(ty, at_s * 1_000_000_000, &[("v", FieldValue::I64(v))])?;
        admissions.push(engine.push(&e, |s| got.push(s.raw.seq.clone())));
    }
    assert_eq!(
        admissions,
        [
            Admission::Delivered,
            Admission::AdmittedLate,
            Admission::AdmittedLate
        ]
    );
    assert!(got.is_empty(), "start 0 (A@20s) is still open: {got:?}");
    engine.finish(|s| got.push(s.raw.seq.clone()));
    // A@20s never finds a B with v >= 2 and expires at 25s; then A@17s's match is reported.
    assert_eq!(got, vec![vec![1, 2]]);
    Ok(())
}

const ORDERED: &str = "
event A { k: i64 }
event B { k: i64 }
rule timed from A, B partition by k pattern a -> b define a as A, b as B within 2s select all
  emit matched { k } on timeout emit expired { k }
rule pending from A, B partition by k pattern a -> b+ define a as A, b as B
";

/// (order, signal name, key, seq) of every signal.
type Ordered = Vec<(SignalOrder, String, String, Vec<u64>)>;

fn ordered(kind: MatcherKind, events: &[(&str, i64, i64)], watermark: i64) -> Result<Ordered> {
    let config = EngineConfig {
        kind,
        ..EngineConfig::default()
    };
    let mut engine = Engine::build("ordered.cep", ORDERED, None, Default::default(), config)?;
    let mut got = Vec::new();
    let mut record = |s: strix::Signal<'_>| {
        got.push((
            s.order(),
            s.signal().to_string(),
            s.key(),
            s.raw.seq.clone(),
        ))
    };
    for &(ty, k, ts_s) in events {
        let ev = engine.event(ty, ts_s * 1_000_000_000, &[("k", FieldValue::I64(k))])?;
        engine.push(&ev, &mut record);
    }
    engine.watermark_to(watermark * 1_000_000_000, &mut record);
    engine.finish(&mut record);
    Ok(got)
}

#[test]
fn signal_order_is_step_then_timer_then_start() -> Result<()> {
    // Key 1 appears first, but key 2 starts its run first (events are numbered in delivery
    // order per rule: B k=1 is 0, A k=2 is 1, A k=1 is 2; both runs of `timed` are due at 3 s).
    let events = [
        ("B", 1, 0),
        ("A", 2, 1),
        ("A", 1, 1),
        ("B", 2, 2),
        ("B", 1, 7),
    ];
    for kind in [MatcherKind::Reference, MatcherKind::Fast] {
        let got = ordered(kind, &events, 5)?;
        let summary: Vec<(&str, &str, Vec<u64>)> = got
            .iter()
            .map(|(_, name, key, seq)| (name.as_str(), key.as_str(), seq.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                // At B k=2 (2 s): `timed` matches for key 2.
                ("matched", "2", vec![1, 3]),
                // The watermark before B k=1 at 7 s expires key 1's run (due at 3 s).
                ("expired", "1", vec![2]),
                // End of stream: `pending` reports its waiting select-first matches, key 2
                // (run started at event 1) before key 1 (started at event 2).
                ("pending", "2", vec![1, 3]),
                ("pending", "1", vec![2, 4]),
            ],
            "{kind:?}"
        );
        let orders: Vec<SignalOrder> = got.iter().map(|g| g.0).collect();
        assert!(orders.is_sorted(), "{kind:?}: {orders:?}");
        let s = 1_000_000_000;
        assert_eq!((orders[0].deadline, orders[0].tiebreak), (i64::MIN, 0));
        assert_eq!((orders[1].deadline, orders[1].tiebreak), (3 * s, 2));
        assert_eq!((orders[2].deadline, orders[2].tiebreak), (i64::MIN, 1));
        assert_eq!((orders[3].deadline, orders[3].tiebreak), (i64::MIN, 2));
        // Both end-of-stream signals come from one kill phase, after the final watermark.
        assert_eq!(orders[2].step, orders[3].step);
        assert!(orders[1].step > orders[0].step);
    }
    Ok(())
}

#[test]
fn deadline_ties_fire_by_the_first_start_due_not_by_first_appearance() -> Result<()> {
    // Key 1 appears first (B k=1 starts nothing); key 2 starts first; both are due at 3 s.
    let events = [("B", 1, 0), ("A", 2, 1), ("A", 1, 1)];
    for kind in [MatcherKind::Reference, MatcherKind::Fast] {
        let got = ordered(kind, &events, 5)?;
        let expired: Vec<(SignalOrder, &str)> = got
            .iter()
            .filter(|g| g.1 == "expired")
            .map(|g| (g.0, g.2.as_str()))
            .collect();
        assert_eq!(expired.len(), 2, "{kind:?}: {got:?}");
        assert_eq!(expired[0].1, "2", "{kind:?}");
        assert_eq!(expired[1].1, "1", "{kind:?}");
        // One watermark step fires both, ordered by the tie-break (start positions 1 and 2).
        assert_eq!(expired[0].0.step, expired[1].0.step);
        assert_eq!((expired[0].0.tiebreak, expired[1].0.tiebreak), (1, 2));
    }
    Ok(())
}

#[test]
fn shard_index_must_be_below_the_count() {
    for (index, count) in [(2, 2), (0, 0)] {
        let config = EngineConfig {
            shard: Some(ShardSpec { index, count }),
            ..EngineConfig::default()
        };
        let err = Engine::build("s.cep", RULES, None, Default::default(), config).err();
        assert!(
            matches!(err, Some(EngineError::Shard { index: i, count: c }) if i == index && c == count),
            "{index}/{count}: {err:?}"
        );
    }
}
