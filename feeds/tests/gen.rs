//! Tests of the synthetic stream generators (`feeds::gen`): determinism, well-formed events, and
//! the invariants that make every injected instance (and nothing else) match the rules in
//! `examples/rules/{market,cards}.cep`.

use std::collections::{BTreeMap, HashMap, HashSet};

use cep_core::event::Label;
use cep_core::{Catalog, Event, EventBatch, FieldType, SymbolTable};
use feeds::r#gen::{
    BUY, CountingSink, DEFAULT_START_TS, EventSink, GenError, GenSpec, Generated, SELL, cards,
    cards_catalog, market, market_catalog,
};

const SEC: i64 = 1_000_000_000;

fn run_market(spec: &GenSpec) -> (Vec<Event>, Generated) {
    let mut events = Vec::new();
    let g = market(spec, &mut events).expect("valid spec");
    (events, g)
}

fn run_cards(spec: &GenSpec) -> (Vec<Event>, Generated) {
    let mut events = Vec::new();
    let g = cards(spec, &mut events).expect("valid spec");
    (events, g)
}

fn f(e: &Event, slot: usize) -> f64 {
    f64::from_bits(e.slots[slot])
}

/// Checks count, sequence numbers, time order, type ids and slot encodings against the catalog.
fn check_well_formed(events: &[Event], g: &Generated, n: u64) {
    assert_eq!(events.len() as u64, n, "exact event count");
    let mut prev = DEFAULT_START_TS;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert!(e.ts >= prev, "ts decreases at seq {i}: {} < {prev}", e.ts);
        prev = e.ts;
        let ty = g.catalog.event_type(e.type_id).expect("valid type id");
        assert_eq!(e.slots.len(), ty.fields.len(), "slot count of {}", ty.name);
        for (field, &slot) in ty.fields.iter().zip(&e.slots) {
            match field.ty {
                FieldType::Sym => assert!(
                    (slot as usize) < g.symbols.len(),
                    "{}.{} = {slot}",
                    ty.name,
                    field.name
                ),
                FieldType::Enum(id) => {
                    let def = g.catalog.enum_def(id).expect("valid enum id");
                    assert!(
                        (slot as usize) < def.variants.len(),
                        "{}.{} = {slot}",
                        ty.name,
                        field.name
                    );
                }
                FieldType::F64 => {
                    let x = f64::from_bits(slot);
                    assert!(x.is_finite() && x > 0.0, "{}.{} = {x}", ty.name, field.name);
                    // Two decimals.
                    assert!(
                        ((x * 100.0).round() - x * 100.0).abs() < 1e-6,
                        "{}.{} = {x}",
                        ty.name,
                        field.name
                    );
                }
                _ => {}
            }
        }
        assert!((e.label.class as usize) < g.label_names.len());
        assert_eq!(
            e.label.class == 0,
            e.label.instance == 0,
            "label {:?}",
            e.label
        );
    }
    assert_eq!(g.label_names[0], "none");
    if let Some(last) = events.last() {
        assert_eq!(g.last_ts, last.ts);
    }
}

/// Groups labelled events by instance id, checking that an instance has one class and that
/// the per-class instance counts match `Generated::injected`.
fn instances(events: &[Event], g: &Generated) -> BTreeMap<u32, Vec<usize>> {
    let mut by_instance: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e.label.class != 0 {
            by_instance.entry(e.label.instance).or_default().push(i);
        }
    }
    let mut per_class = vec![0u64; g.label_names.len()];
    for idx in by_instance.values() {
        let class = events[idx[0]].label.class;
        assert!(
            idx.iter().all(|&i| events[i].label.class == class),
            "instance with mixed classes"
        );
        per_class[class as usize] += 1;
    }
    assert_eq!(g.injected.len(), g.label_names.len() - 1);
    for (c, (name, count)) in g.injected.iter().enumerate() {
        assert_eq!(name, &g.label_names[c + 1]);
        assert_eq!(*count, per_class[c + 1], "instances of {name}");
    }
    by_instance
}

fn name(syms: &SymbolTable, id: u64) -> &str {
    syms.name(id as u32).expect("interned")
}

fn account_of(e: &Event, cat: &Catalog) -> u64 {
    let ty = cat.event_type(e.type_id).expect("valid type");
    e.slots[ty
        .slot("account")
        .expect("every market type has an account")]
}

/// Market: everything the rules in `examples/rules/market.cep` rely on.
fn check_market(events: &[Event], g: &Generated) {
    let cat = &g.catalog;
    let (order, cancel, trade) = (
        cat.type_by_name("Order").expect("Order"),
        cat.type_by_name("Cancel").expect("Cancel"),
        cat.type_by_name("Trade").expect("Trade"),
    );
    assert_eq!(
        (order, cancel, trade),
        (market::ORDER, market::CANCEL, market::TRADE)
    );
    assert_eq!(g.label_names, ["none", "layering", "momentum"]);

    // Field names and symbol kinds.
    let mut orders: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut cancelled = HashSet::new();
    for e in events {
        match e.type_id {
            t if t == order => {
                assert!(name(&g.symbols, e.slots[1]).starts_with("ACC"));
                assert!(name(&g.symbols, e.slots[2]).starts_with("SYM"));
                assert!(
                    orders
                        .insert(e.slots[0], (e.slots[1], e.slots[2]))
                        .is_none(),
                    "order ids are unique"
                );
                if e.label.class == 0 {
                    assert!(f(e, 5) < 5000.0, "background big order at seq {}", e.seq);
                }
            }
            t if t == cancel => {
                // Every cancel refers to an earlier, still open order of the same account and
                // symbol.
                assert_eq!(
                    orders.get(&e.slots[0]),
                    Some(&(e.slots[1], e.slots[2])),
                    "cancel at seq {}",
                    e.seq
                );
                assert!(cancelled.insert(e.slots[0]), "order cancelled twice");
            }
            t if t == trade => {
                assert!(name(&g.symbols, e.slots[0]).starts_with("SYM"));
                assert!(name(&g.symbols, e.slots[4]).starts_with("ACC"));
                if e.label.class == 0 {
                    assert!(f(e, 2) < 1000.0, "background big trade at seq {}", e.seq);
                }
            }
            t => panic!("unexpected type {t}"),
        }
    }

    for (&inst, idx) in &instances(events, g) {
        assert!(inst >= 1);
        let evs: Vec<&Event> = idx.iter().map(|&i| &events[i]).collect();
        let (first, last) = (evs[0], evs[evs.len() - 1]);
        match first.label.class {
            market::LAYERING => {
                let k = (evs.len() - 1) / 2;
                assert!(
                    (3..=5).contains(&k) && evs.len() == 2 * k + 1,
                    "layering size {}",
                    evs.len()
                );
                assert!(last.ts - first.ts <= 2 * SEC);
                let (acc, sym, side) = (first.slots[1], first.slots[2], first.slots[3]);
                for (i, o) in evs[..k].iter().enumerate() {
                    assert_eq!(o.type_id, order);
                    assert_eq!((o.slots[1], o.slots[2], o.slots[3]), (acc, sym, side));
                    assert!(f(o, 5) >= 5000.0);
                    let c = evs[k + i];
                    assert_eq!(c.type_id, cancel);
                    assert_eq!(
                        (c.slots[0], c.slots[1]),
                        (o.slots[0], acc),
                        "cancel ids match the orders"
                    );
                }
                assert_eq!(last.type_id, trade);
                assert_eq!(last.slots[4], acc);
                assert_eq!(
                    last.slots[3],
                    if side == BUY { SELL } else { BUY },
                    "trade on the other side"
                );
                assert!(f(last, 2) < 1000.0);
                // The account's partition is exactly the instance from first order to trade...
                for e in &events[idx[0]..=idx[idx.len() - 1]] {
                    if account_of(e, cat) == acc {
                        assert_eq!(
                            e.label.instance, inst,
                            "foreign event of {acc} inside layering {inst}"
                        );
                    }
                }
                // ... and no other big order of the account is within the 2 s window either side.
                for e in events {
                    if e.type_id == order
                        && e.slots[1] == acc
                        && f(e, 5) >= 5000.0
                        && e.label.instance != inst
                    {
                        assert!(
                            e.ts < first.ts - 2 * SEC || e.ts > last.ts + 2 * SEC,
                            "big order near {inst}"
                        );
                    }
                }
            }
            market::MOMENTUM => {
                assert_eq!(evs.len(), market::MOMENTUM_TRADES);
                assert!(last.ts - first.ts <= SEC);
                let sym = first.slots[0];
                for (i, t) in evs.iter().enumerate() {
                    assert_eq!(t.type_id, trade);
                    assert_eq!(t.slots[0], sym);
                    assert_eq!(t.slots[3], BUY);
                    assert!(f(t, 2) >= 1000.0);
                    if i > 0 {
                        assert!(f(t, 1) > f(evs[i - 1], 1), "prices strictly increase");
                    }
                }
                // Consecutive in the symbol's trade stream.
                for e in &events[idx[0]..=idx[idx.len() - 1]] {
                    if e.type_id == trade && e.slots[0] == sym {
                        assert_eq!(
                            e.label.instance, inst,
                            "foreign trade of {sym} inside momentum {inst}"
                        );
                    }
                }
                // No other big buy trade of the symbol within 1 s either side.
                for e in events {
                    if e.type_id == trade
                        && e.slots[0] == sym
                        && f(e, 2) >= 1000.0
                        && e.label.instance != inst
                    {
                        assert!(
                            e.ts < first.ts - SEC || e.ts > last.ts + SEC,
                            "big trade near {inst}"
                        );
                    }
                }
            }
            c => panic!("unknown class {c}"),
        }
    }
}

/// Cards: everything the rules in `examples/rules/cards.cep` rely on.
fn check_cards(events: &[Event], g: &Generated) {
    use cards::{ATM, CARD_TESTING, MIN_CARD_GAP_NS, ONLINE, VELOCITY};
    let txn = g.catalog.type_by_name("Txn").expect("Txn");
    assert_eq!(txn, cards::TXN);
    let channel = g.catalog.enum_by_name("channel").expect("channel");
    assert_eq!(
        g.catalog.enum_def(channel).expect("enum").variants,
        ["pos", "online", "atm"]
    );
    assert_eq!(g.label_names, ["none", "card_testing", "velocity"]);

    // Per card: consecutive transactions are 5 min apart unless both belong to one instance.
    let mut last: HashMap<u64, &Event> = HashMap::new();
    for e in events {
        assert_eq!(e.type_id, txn);
        assert!(name(&g.symbols, e.slots[0]).starts_with("CARD"));
        assert!(name(&g.symbols, e.slots[1]).starts_with("MER"));
        assert!(name(&g.symbols, e.slots[3]).len() >= 2);
        if e.label.class == 0 {
            assert!(
                f(e, 2) >= 5.0,
                "background amount {} at seq {}",
                f(e, 2),
                e.seq
            );
        }
        if let Some(p) = last.insert(e.slots[0], e)
            && (p.label.instance != e.label.instance || e.label.instance == 0)
        {
            assert!(
                e.ts - p.ts >= MIN_CARD_GAP_NS,
                "card {} busy at seq {} and {}",
                e.slots[0],
                p.seq,
                e.seq
            );
        }
    }

    for (&inst, idx) in &instances(events, g) {
        assert!(inst >= 1);
        let evs: Vec<&Event> = idx.iter().map(|&i| &events[i]).collect();
        let (first, last) = (evs[0], evs[evs.len() - 1]);
        let card = first.slots[0];
        assert!(
            evs.iter().all(|e| e.slots[0] == card),
            "one card per instance"
        );
        match first.label.class {
            CARD_TESTING => {
                let k = evs.len() - 1;
                assert!((5..=8).contains(&k), "card testing with {k} probes");
                assert!(last.ts - first.ts <= 10 * 60 * SEC);
                for e in &evs[..k] {
                    assert!(f(e, 2) < 2.0 && e.slots[4] == ONLINE);
                }
                assert!(f(last, 2) >= 800.0);
                assert!(
                    evs.iter().all(|e| e.slots[3] == first.slots[3]),
                    "one country"
                );
            }
            VELOCITY => {
                assert_eq!(evs.len(), cards::VELOCITY_TXNS);
                assert!(last.ts - first.ts <= 60 * SEC);
                let countries: HashSet<u64> = evs.iter().map(|e| e.slots[3]).collect();
                assert_eq!(countries.len(), 4, "four different countries");
                assert!(evs.iter().all(|e| f(e, 2) >= 5.0 && e.slots[4] <= ATM));
            }
            c => panic!("unknown class {c}"),
        }
    }
}

#[test]
fn market_is_deterministic() {
    let spec = GenSpec::new(50_000, 7);
    let (a, ga) = run_market(&spec);
    let (b, gb) = run_market(&spec);
    assert_eq!(a, b);
    assert_eq!(ga, gb);
    let (c, _) = run_market(&GenSpec::new(50_000, 8));
    assert_ne!(a, c);
}

#[test]
fn cards_is_deterministic() {
    let spec = GenSpec::new(50_000, 7);
    let (a, ga) = run_cards(&spec);
    let (b, gb) = run_cards(&spec);
    assert_eq!(a, b);
    assert_eq!(ga, gb);
    let (c, _) = run_cards(&GenSpec::new(50_000, 8));
    assert_ne!(a, c);
}

#[test]
fn market_stream_is_well_formed_and_labelled() {
    let spec = GenSpec::new(300_000, 42);
    let (events, g) = run_market(&spec);
    check_well_formed(&events, &g, spec.events);
    check_market(&events, &g);
    assert_eq!(g.catalog, market_catalog());
    assert_eq!(g.symbols.len(), 200 + 5000);
    // About 1M events per hour.
    let span = events[events.len() - 1].ts - events[0].ts;
    assert!(
        (12 * 60 * SEC..=30 * 60 * SEC).contains(&span),
        "300k events span {span} ns"
    );
    // About one instance per class per 5000 events.
    for (name, n) in &g.injected {
        assert!((30..=90).contains(n), "{n} {name} instances");
    }
    // A good share of orders are cancelled, and there are trades.
    let count = |t| {
        events
            .iter()
            .filter(|e| e.type_id == t && e.label.class == 0)
            .count() as f64
    };
    let (o, c, t) = (
        count(market::ORDER),
        count(market::CANCEL),
        count(market::TRADE),
    );
    assert!((0.3..=0.6).contains(&(c / o)), "cancel ratio {}", c / o);
    assert!(t > 0.2 * (o + c + t), "trade share");
}

#[test]
fn cards_stream_is_well_formed_and_labelled() {
    let spec = GenSpec::new(300_000, 42);
    let (events, g) = run_cards(&spec);
    check_well_formed(&events, &g, spec.events);
    check_cards(&events, &g);
    assert_eq!(g.catalog, cards_catalog());
    assert_eq!(g.symbols.len(), 20_000 + 2_000 + 30);
    // About 1M events in three days.
    let span = events[events.len() - 1].ts - events[0].ts;
    assert!(
        (12 * 3600 * SEC..=36 * 3600 * SEC).contains(&span),
        "300k events span {span} ns"
    );
    for (name, n) in &g.injected {
        assert!((30..=90).contains(n), "{n} {name} instances");
    }
    let amounts: Vec<f64> = events
        .iter()
        .filter(|e| e.label.class == 0)
        .map(|e| f(e, 2))
        .collect();
    let above = amounts.iter().filter(|&&a| a > 1000.0).count() as f64 / amounts.len() as f64;
    assert!(above < 0.005, "share above 1000 EUR: {above}");
}

/// Dense injection (an instance per class every few events) stresses the key reservations and
/// the end-of-stream budget; exact counts must hold for tiny streams too.
#[test]
fn dense_injection_and_tiny_streams_keep_invariants() {
    for seed in 0..4 {
        for events in [0, 1, 2, 7, 12, 50, 3_000] {
            let mut spec = GenSpec::new(events, seed);
            spec.inject_every = 3;
            let (m, gm) = run_market(&spec);
            check_well_formed(&m, &gm, events);
            check_market(&m, &gm);
            let (c, gc) = run_cards(&spec);
            check_well_formed(&c, &gc, events);
            check_cards(&c, &gc);
            if events == 3_000 {
                assert!(
                    gm.injected.iter().all(|(_, n)| *n >= 5),
                    "{:?}",
                    gm.injected
                );
                assert!(
                    gc.injected.iter().all(|(_, n)| *n >= 5),
                    "{:?}",
                    gc.injected
                );
            }
        }
    }
    // Small populations still work.
    let mut spec = GenSpec::new(20_000, 3);
    (
        spec.symbols,
        spec.accounts,
        spec.cards,
        spec.merchants,
        spec.countries,
    ) = (32, 32, 16, 2, 4);
    spec.inject_every = 50;
    let (m, gm) = run_market(&spec);
    check_well_formed(&m, &gm, spec.events);
    check_market(&m, &gm);
    let (c, gc) = run_cards(&spec);
    check_well_formed(&c, &gc, spec.events);
    check_cards(&c, &gc);
    assert_eq!(gc.symbols.name(gc.symbols.len() as u32 - 1), Some("US"));
}

#[test]
fn no_injection_means_no_labels() {
    let mut spec = GenSpec::new(20_000, 1);
    spec.inject_every = 0;
    let (m, gm) = run_market(&spec);
    assert!(m.iter().all(|e| e.label == Label::default()));
    assert!(gm.injected.iter().all(|(_, n)| *n == 0));
    let (c, gc) = run_cards(&spec);
    assert!(c.iter().all(|e| e.label == Label::default()));
    assert!(gc.injected.iter().all(|(_, n)| *n == 0));
}

#[test]
fn sinks_agree() {
    let spec = GenSpec::new(10_000, 5);
    let (rows, g) = run_market(&spec);
    let mut batch = EventBatch::new(g.catalog.slot_count());
    market(&spec, &mut batch).expect("valid spec");
    assert_eq!(batch.len(), rows.len());
    for (i, e) in rows.iter().enumerate() {
        let mut b = batch.event(i);
        b.slots.truncate(e.slots.len());
        assert_eq!(&b, e);
    }
    let mut a = CountingSink::default();
    let mut b = CountingSink::default();
    cards(&spec, &mut a).expect("valid spec");
    cards(&spec, &mut b).expect("valid spec");
    assert_eq!(a, b);
    assert_eq!(a.events, spec.events);
    let (rows, _) = run_cards(&spec);
    assert_eq!(
        a.labelled,
        rows.iter().filter(|e| e.label.class != 0).count() as u64
    );
}

#[test]
fn bad_specs_and_failing_sinks_are_errors() {
    let mut spec = GenSpec::new(100, 0);
    spec.symbols = 3;
    assert!(matches!(
        market(&spec, &mut Vec::new()),
        Err(GenError::Spec(_))
    ));
    let mut spec = GenSpec::new(100, 0);
    spec.countries = 3;
    assert!(matches!(
        cards(&spec, &mut Vec::new()),
        Err(GenError::Spec(_))
    ));

    /// Refuses the sixth event.
    struct Full(u32);
    impl EventSink for Full {
        type Error = &'static str;
        fn push(&mut self, _: i64, _: u16, _: Label, _: &[u64]) -> Result<(), &'static str> {
            self.0 += 1;
            if self.0 > 5 { Err("full") } else { Ok(()) }
        }
    }
    let spec = GenSpec::new(100, 0);
    assert!(matches!(
        market(&spec, &mut Full(0)),
        Err(GenError::Sink("full"))
    ));
    assert!(matches!(
        cards(&spec, &mut Full(0)),
        Err(GenError::Sink("full"))
    ));
}
