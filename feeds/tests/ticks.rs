//! Tests of the DEBS 2022 tick generator (`feeds::gen::ticks`): determinism, the challenge's
//! schema, time order inside trading sessions, skewed activity, and the path into a tape.

mod common;

use std::collections::{BTreeSet, HashMap};

use cep_core::{Event, FieldType};
use common::TempPath;
use feeds::r#gen::ticks::{
    DEFAULT_TICK_SYMBOLS, EQUITY, INDEX, MAX_TICK_SYMBOLS, SEC_TYPE_ENUM, TICK,
    TICKS_PER_SYMBOL_WINDOW, WINDOW_NS,
};
use feeds::r#gen::{
    CountingSink, DEFAULT_START_TS, GenError, GenSpec, Generated, Generator, ticks, ticks_catalog,
    write_tape,
};
use feeds::tape::TapeReader;

const MS: i64 = 1_000_000;
const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

fn spec(events: u64, seed: u64, symbols: u32) -> GenSpec {
    let mut s = GenSpec::new(events, seed);
    s.symbols = symbols;
    s
}

fn run(spec: &GenSpec) -> (Vec<Event>, Generated) {
    let mut events = Vec::new();
    let g = ticks(spec, &mut events).expect("valid spec");
    (events, g)
}

fn price(e: &Event) -> f64 {
    f64::from_bits(e.slots[2])
}

#[test]
fn same_seed_same_stream_other_seed_other_stream() {
    let a = spec(50_000, 11, 500);
    let mut first = CountingSink::default();
    let mut second = CountingSink::default();
    ticks(&a, &mut first).expect("valid spec");
    ticks(&a, &mut second).expect("valid spec");
    assert_eq!(first, second);
    assert_eq!(first.events, 50_000);
    assert_eq!(first.labelled, 0);
    let mut other = CountingSink::default();
    ticks(&spec(50_000, 12, 500), &mut other).expect("valid spec");
    assert_ne!(first.checksum, other.checksum);
}

#[test]
fn events_have_the_challenge_schema() {
    let (events, g) = run(&spec(100_000, 3, DEFAULT_TICK_SYMBOLS));
    assert_eq!(g.catalog, ticks_catalog());
    let tick = g.catalog.event_type(TICK).expect("Tick");
    assert_eq!(tick.name, "Tick");
    let fields: Vec<(&str, FieldType)> = tick
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty))
        .collect();
    assert_eq!(
        fields,
        [
            ("symbol", FieldType::Sym),
            ("security_type", FieldType::Enum(SEC_TYPE_ENUM)),
            ("last_trade_price", FieldType::F64),
        ]
    );
    let sec_type = g.catalog.enum_def(SEC_TYPE_ENUM).expect("sec_type");
    assert_eq!(sec_type.name, "sec_type");
    assert_eq!(sec_type.variants, ["Equity", "Index"]);
    assert_eq!(g.label_names, ["none"]);
    assert!(g.injected.is_empty());
    assert_eq!(g.symbols.len(), DEFAULT_TICK_SYMBOLS as usize);

    // Names like `ABCD.FR` or `ABCD12.DE`, all distinct.
    let names: BTreeSet<&str> = g.symbols.names().iter().map(String::as_str).collect();
    assert_eq!(names.len(), g.symbols.len());
    for n in &names {
        let (code, exchange) = n.split_once('.').expect("exchange suffix");
        assert!(
            exchange.len() == 2 && exchange.bytes().all(|b| b.is_ascii_uppercase()),
            "{n}"
        );
        let (letters, digits) = code.split_at(4);
        assert!(letters.bytes().all(|b| b.is_ascii_uppercase()), "{n}");
        assert!(
            digits.is_empty() || (digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_digit())),
            "{n}"
        );
    }

    // A symbol keeps its security type; both types occur.
    let mut sec_of: HashMap<u64, u64> = HashMap::new();
    for e in &events {
        assert_eq!(e.type_id, TICK);
        assert_eq!(e.slots.len(), 3);
        assert!((e.slots[0] as usize) < g.symbols.len());
        assert!(e.slots[1] == EQUITY || e.slots[1] == INDEX);
        assert_eq!(*sec_of.entry(e.slots[0]).or_insert(e.slots[1]), e.slots[1]);
        let p = price(e);
        assert!(p.is_finite() && p > 0.0, "price {p} at seq {}", e.seq);
        assert!(((p * 1000.0).round() - p * 1000.0).abs() < 1e-6, "{p}");
        assert_eq!(e.label.class, 0);
    }
    let indices = sec_of.values().filter(|&&t| t == INDEX).count();
    assert!(
        indices > 0 && indices < sec_of.len() / 10,
        "{indices} indices"
    );
}

#[test]
fn time_increases_inside_weekday_sessions() {
    let (events, g) = run(&spec(200_000, 5, 200));
    assert_eq!(events.len(), 200_000);
    let mut prev = DEFAULT_START_TS;
    let mut ties = 0;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert!(e.ts >= prev, "ts decreases at seq {i}");
        ties += usize::from(e.ts == prev);
        prev = e.ts;
        assert_eq!(e.ts % MS, 0, "millisecond resolution");
        let into_day = e.ts.rem_euclid(DAY);
        assert!(
            (8 * HOUR..16 * HOUR + HOUR / 2).contains(&into_day),
            "ts {} outside 08:00-16:30",
            e.ts
        );
        // Monday = 0; 1970-01-01 was a Thursday.
        let weekday = (e.ts.div_euclid(DAY) + 3).rem_euclid(7);
        assert!(weekday < 5, "weekend event at seq {i}");
    }
    assert!(ties > 0, "millisecond timestamps give some ties");
    assert_eq!(g.last_ts, prev);
    // About TICKS_PER_SYMBOL_WINDOW events per symbol per window of trading time.
    let windows: BTreeSet<i64> = events.iter().map(|e| e.ts.div_euclid(WINDOW_NS)).collect();
    let expected = 200_000.0 / (200.0 * TICKS_PER_SYMBOL_WINDOW);
    let got = windows.len() as f64;
    assert!(
        (0.9 * expected..1.1 * expected).contains(&got),
        "{got} windows, expected about {expected}"
    );
    // The stream crosses nights: several trading days.
    let days: BTreeSet<i64> = events.iter().map(|e| e.ts.div_euclid(DAY)).collect();
    assert!(days.len() >= 3, "{} days", days.len());
}

#[test]
fn activity_is_skewed() {
    let symbols = 1_000;
    let (events, _) = run(&spec(400_000, 9, symbols));
    let mut per_symbol: HashMap<u64, usize> = HashMap::new();
    let mut windows_of: HashMap<u64, BTreeSet<i64>> = HashMap::new();
    let mut market_windows = BTreeSet::new();
    for e in &events {
        *per_symbol.entry(e.slots[0]).or_default() += 1;
        let w = e.ts.div_euclid(WINDOW_NS);
        windows_of.entry(e.slots[0]).or_default().insert(w);
        market_windows.insert(w);
    }
    let mut counts: Vec<usize> = per_symbol.values().copied().collect();
    counts.sort_unstable();
    let busiest = counts[counts.len() - 1];
    let median = counts[counts.len() / 2];
    // Zipf over 1000 symbols: the busiest takes about 1/H(1000) = 13% of the events.
    assert!(busiest > events.len() / 12, "busiest symbol: {busiest}");
    assert!(busiest > 50 * median, "busiest {busiest}, median {median}");
    // The busiest symbol trades in every window; most symbols skip windows.
    let skipping = windows_of
        .values()
        .filter(|w| w.len() < market_windows.len())
        .count();
    assert!(
        skipping > windows_of.len() * 9 / 10,
        "{skipping} symbols skip windows"
    );
    assert!(windows_of.values().any(|w| w.len() == market_windows.len()));
}

#[test]
fn prices_walk_per_symbol() {
    let (events, _) = run(&spec(100_000, 4, 50));
    let mut last: HashMap<u64, f64> = HashMap::new();
    let mut moves = 0usize;
    let mut big_jumps = 0usize;
    for e in &events {
        let p = price(e);
        if let Some(q) = last.insert(e.slots[0], p) {
            moves += usize::from(p != q);
            // Steps are small relative to the price (a walk, not independent draws).
            big_jumps += usize::from((p / q).ln().abs() > 0.05);
        }
    }
    assert!(moves > events.len() / 2, "{moves} price changes");
    assert_eq!(big_jumps, 0);
}

#[test]
fn bad_symbol_counts_are_rejected() {
    for n in [0, MAX_TICK_SYMBOLS + 1] {
        let err = ticks(&spec(10, 1, n), &mut Vec::new()).expect_err("invalid symbols");
        assert!(
            matches!(&err, GenError::Spec(m) if m.contains("symbols")),
            "{err}"
        );
    }
    let (events, g) = run(&spec(100, 1, 1));
    assert_eq!(events.len(), 100);
    assert_eq!(g.symbols.len(), 1);
    let (events, _) = run(&spec(0, 1, 10));
    assert!(events.is_empty());
}

#[test]
fn tape_holds_the_generated_stream() {
    let s = spec(30_000, 8, 300);
    let (events, g) = run(&s);
    let path = TempPath::new("ticks.tape");
    let (generated, info) = write_tape(Generator::Ticks, &s, &path.0, &mut |_| {}).expect("tape");
    assert_eq!(generated, g);
    assert_eq!(info.event_count, 30_000);
    assert!(!info.has_labels);
    assert!(info.source.starts_with("gen ticks"));
    let tape = TapeReader::open(&path.0).expect("open");
    assert_eq!(tape.catalog(), &ticks_catalog());
    assert_eq!(tape.symbols().names(), g.symbols.names());
    let mut read = Vec::with_capacity(events.len());
    for batch in tape.batches() {
        let batch = batch.expect("block");
        read.extend((0..batch.len()).map(|r| batch.event(r)));
    }
    assert_eq!(read, events);
}
