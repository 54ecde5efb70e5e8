//! Synthetic card-transaction stream with injected `card_testing` and `velocity` instances.
//!
//! Input: a [`GenSpec`] (reads `events`, `seed`, `start_ts`, `inject_every`, `cards`,
//! `merchants`, `countries`). Output: events pushed into an [`EventSink`] in sequence order, and
//! a [`Generated`] description. Next stage: a tape writer or a matcher running
//! `examples/rules/cards.cep`.
//!
//! # Schema ([`cards_catalog`])
//!
//! ```text
//! enum  channel { pos, online, atm }
//! event Txn { card: sym, merchant: sym, amount: f64, country: sym, channel: channel }
//! ```
//!
//! Amounts are `f64` EUR with two decimals. Symbols are interned first cards (`CARD00001`,
//! ...), then merchants (`MER0001`, ...), then countries (ISO codes such as `DE`; beyond the 30
//! built-in codes `X031`, ...).
//!
//! # Background
//!
//! About 330k transactions per day of event time (exponential gaps), so 1M events span about
//! three days. Each card has a home country where nearly all its transactions happen. Channels
//! are 60% `pos`, 30% `online`, 10% `atm` (round amounts). Amounts are log-normal around 30 EUR,
//! never below [`MIN_BACKGROUND_AMOUNT`], with a rare big-ticket purchase of 1000 to 2500 EUR.
//! Two background transactions of one card are always at least [`MIN_CARD_GAP_NS`] (5 min)
//! apart.
//!
//! # Injected instances (labels `["none", "card_testing", "velocity"]`)
//!
//! - **card_testing** ([`CARD_TESTING`], per card, spanning at most 9 min): 5 to 8 `online`
//!   charges below [`TINY_AMOUNT`] at one merchant, then one `online` charge of at least
//!   [`BIG_AMOUNT`] at another; all in one country.
//! - **velocity** ([`VELOCITY`], per card, spanning at most 45 s): 4 transactions of ordinary
//!   amounts in 4 different countries.
//!
//! The card of an instance has no other transaction within 5 min before or after it, so the
//! rules in `examples/rules/cards.cep` match exactly the injected instances.

use cep_core::event::Label;
use cep_core::schema::EnumId;
use cep_core::{Catalog, FieldType, SymbolTable, TypeId};

use super::{
    EventSink, GenError, GenSpec, Generated, Queue, cents, exp_gap, names, next_injection,
};

/// Type id of `Txn` in [`cards_catalog`].
pub const TXN: TypeId = 0;
/// Enum id of `channel` in [`cards_catalog`].
pub const CHANNEL_ENUM: EnumId = 1;
/// Variant index of `pos` in `channel`.
pub const POS: u64 = 0;
/// Variant index of `online` in `channel`.
pub const ONLINE: u64 = 1;
/// Variant index of `atm` in `channel`.
pub const ATM: u64 = 2;

/// Label class of card-testing instances.
pub const CARD_TESTING: u16 = 1;
/// Label class of velocity instances.
pub const VELOCITY: u16 = 2;
/// Label class names, indexed by label class.
pub const LABELS: [&str; 3] = ["none", "card_testing", "velocity"];

/// Card-testing probes are below this amount; background never is.
pub const TINY_AMOUNT: f64 = 2.0;
/// The cash-out charge of a card-testing instance is at least this amount.
pub const BIG_AMOUNT: f64 = 800.0;
/// Smallest background amount.
pub const MIN_BACKGROUND_AMOUNT: f64 = 5.0;
/// Smallest gap between two background transactions of one card (and between an injected
/// instance and any other transaction of its card), ns.
pub const MIN_CARD_GAP_NS: i64 = 5 * 60 * SEC;
/// Upper bound on the span of a card-testing instance, ns.
pub const CARD_TESTING_SPAN_NS: i64 = 10 * 60 * SEC;
/// Upper bound on the span of a velocity instance, ns.
pub const VELOCITY_SPAN_NS: i64 = 60 * SEC;
/// Number of transactions (and countries) in a velocity instance.
pub const VELOCITY_TXNS: usize = 4;

/// ISO codes used as country names, in id order.
const COUNTRY_CODES: [&str; 30] = [
    "DE", "FR", "GB", "US", "NL", "ES", "IT", "BE", "AT", "CH", "SE", "NO", "DK", "FI", "IE", "PT",
    "PL", "CZ", "HU", "GR", "RO", "BG", "HR", "SK", "SI", "LT", "LV", "EE", "LU", "CA",
];

/// 1 s in ns.
const SEC: i64 = 1_000_000_000;
/// Mean gap between transactions (about 1M events in three days).
const MEAN_GAP_NS: f64 = 0.26e9;

/// The card stream's catalog (see the [module docs](self) for the declarations).
pub fn cards_catalog() -> Catalog {
    let mut c = Catalog::new();
    // Cannot fail: `channel` is not declared yet in a fresh catalog (which holds only `side`).
    let channel = c
        .add_enum("channel", &["pos", "online", "atm"])
        .expect("fresh catalog lacks `channel`");
    let fields = [
        ("card", FieldType::Sym),
        ("merchant", FieldType::Sym),
        ("amount", FieldType::F64),
        ("country", FieldType::Sym),
        ("channel", FieldType::Enum(channel)),
    ];
    // Cannot fail: a constant declaration with distinct, non-reserved fields in an empty catalog.
    c.add_type("Txn", &fields)
        .expect("constant Txn schema is valid");
    c
}

/// Generates a card-transaction stream of exactly `spec.events` events into `sink`.
///
/// Deterministic in `spec`. Fails with [`GenError::Spec`] when `cards` is below 16, `merchants`
/// below 2 or `countries` below 4, and with [`GenError::Sink`] as soon as the sink refuses an
/// event.
pub fn cards<S: EventSink + ?Sized>(
    spec: &GenSpec,
    sink: &mut S,
) -> Result<Generated, GenError<S::Error>> {
    if spec.cards < 16 {
        return Err(GenError::Spec(format!(
            "cards needs at least 16 cards, got {}",
            spec.cards
        )));
    }
    if spec.merchants < 2 {
        return Err(GenError::Spec(format!(
            "cards needs at least 2 merchants, got {}",
            spec.merchants
        )));
    }
    if spec.countries < 4 {
        return Err(GenError::Spec(format!(
            "cards needs at least 4 countries, got {}",
            spec.countries
        )));
    }
    let mut symbols = SymbolTable::new();
    let card_ids: Vec<u32> = (1..=spec.cards)
        .map(|i| symbols.intern(&format!("CARD{i:05}")))
        .collect();
    let merchant_ids: Vec<u32> = (1..=spec.merchants)
        .map(|i| symbols.intern(&format!("MER{i:04}")))
        .collect();
    let country_ids: Vec<u32> = (0..spec.countries as usize)
        .map(|i| match COUNTRY_CODES.get(i) {
            Some(code) => symbols.intern(code),
            None => symbols.intern(&format!("X{:03}", i + 1)),
        })
        .collect();
    let mut g = Cards::new(spec, card_ids, merchant_ids, country_ids);
    g.run(spec, sink)?;
    Ok(Generated {
        catalog: cards_catalog(),
        symbols,
        label_names: names(&LABELS),
        injected: vec![
            (LABELS[1].to_owned(), g.count[0]),
            (LABELS[2].to_owned(), g.count[1]),
        ],
        last_ts: g.clock,
    })
}

#[derive(Debug)]
struct Cards {
    rng: fastrand::Rng,
    card_ids: Vec<u32>,
    merchant_ids: Vec<u32>,
    country_ids: Vec<u32>,
    /// Home country index of each card.
    home: Vec<u16>,
    /// Timestamp of each card's latest transaction (or of the end of its scheduled instance).
    last: Vec<i64>,
    next_instance: u32,
    count: [u64; 2],
    queue: Queue,
    /// Timestamp of the last emitted event.
    clock: i64,
}

impl Cards {
    fn new(
        spec: &GenSpec,
        card_ids: Vec<u32>,
        merchant_ids: Vec<u32>,
        country_ids: Vec<u32>,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let nc = country_ids.len();
        // Half the cards are issued in the five largest markets.
        let home = card_ids
            .iter()
            .map(|_| if rng.bool() { rng.usize(..nc.min(5)) } else { rng.usize(..nc) } as u16)
            .collect();
        let last = vec![i64::MIN / 2; card_ids.len()];
        Self {
            rng,
            card_ids,
            merchant_ids,
            country_ids,
            home,
            last,
            next_instance: 1,
            count: [0; 2],
            queue: Queue::new(),
            clock: spec.start_ts,
        }
    }

    fn run<S: EventSink + ?Sized>(
        &mut self,
        spec: &GenSpec,
        sink: &mut S,
    ) -> Result<(), GenError<S::Error>> {
        let total = spec.events;
        let mut emitted = 0u64;
        let mut next_bg = self.clock + exp_gap(&mut self.rng, MEAN_GAP_NS);
        let mut next_testing = next_injection(&mut self.rng, spec.inject_every);
        let mut next_velocity = next_injection(&mut self.rng, spec.inject_every);
        while emitted < total {
            if emitted >= next_testing {
                self.card_testing(total - emitted);
                next_testing =
                    emitted.saturating_add(next_injection(&mut self.rng, spec.inject_every));
            }
            if emitted >= next_velocity {
                self.velocity(total - emitted);
                next_velocity =
                    emitted.saturating_add(next_injection(&mut self.rng, spec.inject_every));
            }
            // Once the budget left equals the injected events still scheduled, only those are
            // emitted, so every started instance completes.
            let drain = total - emitted <= self.queue.injected;
            let take_pending = self
                .queue
                .peek_ts()
                .is_some_and(|ts| drain || ts <= next_bg);
            if take_pending && let Some(p) = self.queue.pop() {
                sink.push(p.ts, p.type_id, p.label, p.slots())
                    .map_err(GenError::Sink)?;
                self.clock = p.ts;
            } else {
                let ts = next_bg;
                let Some(c) = self.free_card(ts) else {
                    // Every card is resting; retry when the first one is free again (strictly
                    // later than `ts`), giving scheduled events before then their turn.
                    next_bg = self.last.iter().min().copied().unwrap_or(ts) + MIN_CARD_GAP_NS;
                    continue;
                };
                next_bg = ts + exp_gap(&mut self.rng, MEAN_GAP_NS);
                self.clock = ts;
                self.last[c] = ts;
                self.background(ts, c, sink)?;
            }
            emitted += 1;
        }
        Ok(())
    }

    /// A random card with no transaction in the last [`MIN_CARD_GAP_NS`] before `ts` (and no
    /// scheduled instance), or `None` when every card is resting.
    #[inline]
    fn free_card(&mut self, ts: i64) -> Option<usize> {
        let n = self.card_ids.len();
        let mut i = self.rng.usize(..n);
        for _ in 0..n {
            if ts - self.last[i] >= MIN_CARD_GAP_NS {
                return Some(i);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        None
    }

    /// A log-normal amount in cents (median about 30 EUR, 5 EUR at least) or, rarely, a
    /// big-ticket one.
    #[inline]
    fn amount(&mut self) -> i64 {
        if self.rng.u32(..1000) == 0 {
            return self.rng.i64(100_000..=250_000);
        }
        // Irwin-Hall approximation of a standard normal (bounded: |z| <= 3.47).
        let z =
            (self.rng.f64() + self.rng.f64() + self.rng.f64() + self.rng.f64() - 2.0) * 3f64.sqrt();
        let eur = (30f64.ln() + 0.9 * z).exp();
        ((eur * 100.0).round() as i64).max((MIN_BACKGROUND_AMOUNT * 100.0) as i64)
    }

    /// Emits one background transaction of card index `c` at `ts`.
    #[inline]
    fn background<S: EventSink + ?Sized>(
        &mut self,
        ts: i64,
        c: usize,
        sink: &mut S,
    ) -> Result<(), GenError<S::Error>> {
        let r = self.rng.u32(..100);
        let channel = if r < 60 {
            POS
        } else if r < 90 {
            ONLINE
        } else {
            ATM
        };
        let amount = if channel == ATM {
            2_000 * self.rng.i64(1..=25)
        } else {
            self.amount()
        };
        let country = if self.rng.u32(..100) < 92 {
            usize::from(self.home[c])
        } else {
            self.rng.usize(..self.country_ids.len())
        };
        let merchant = self.merchant_ids[self.rng.usize(..self.merchant_ids.len())];
        let slots = [
            u64::from(self.card_ids[c]),
            u64::from(merchant),
            cents(amount),
            u64::from(self.country_ids[country]),
            channel,
        ];
        sink.push(ts, TXN, Label::default(), &slots)
            .map_err(GenError::Sink)
    }

    /// A random card with no transaction within [`MIN_CARD_GAP_NS`] before `start`, nor later.
    fn pick_card(&mut self, start: i64) -> Option<usize> {
        (0..32)
            .map(|_| self.rng.usize(..self.card_ids.len()))
            .find(|&c| self.last[c] + MIN_CARD_GAP_NS <= start)
    }

    fn new_label(&mut self, class: u16) -> Label {
        let instance = self.next_instance;
        self.next_instance += 1;
        self.count[usize::from(class - 1)] += 1;
        Label { class, instance }
    }

    fn merchant(&mut self) -> u64 {
        u64::from(self.merchant_ids[self.rng.usize(..self.merchant_ids.len())])
    }

    /// Schedules a card-testing instance if it fits in `budget` events and a card is free.
    fn card_testing(&mut self, budget: u64) {
        let k = self.rng.usize(5..=8);
        if budget < self.queue.injected + k as u64 + 1 {
            return;
        }
        let start = self.clock + self.rng.i64(SEC..=30 * SEC);
        let Some(c) = self.pick_card(start) else {
            return;
        };
        let label = self.new_label(CARD_TESTING);
        let card = u64::from(self.card_ids[c]);
        let country = u64::from(self.country_ids[usize::from(self.home[c])]);
        let nm = self.merchant_ids.len();
        let tester_idx = self.rng.usize(..nm);
        // A different merchant for the cash-out (there are at least 2).
        let shop = u64::from(self.merchant_ids[(tester_idx + self.rng.usize(1..nm)) % nm]);
        let tester = u64::from(self.merchant_ids[tester_idx]);
        let mut ts = start;
        for i in 0..k {
            let amount = cents(self.rng.i64(10..=199));
            self.queue
                .push(ts, TXN, label, &[card, tester, amount, country, ONLINE]);
            // At most 7 gaps of 60 s between probes, then one of 120 s: <= 9 min.
            ts += if i + 1 == k {
                self.rng.i64(20 * SEC..=120 * SEC)
            } else {
                self.rng.i64(10 * SEC..=60 * SEC)
            };
        }
        let amount = cents(self.rng.i64(80_000..=300_000));
        self.queue
            .push(ts, TXN, label, &[card, shop, amount, country, ONLINE]);
        self.last[c] = ts;
    }

    /// Schedules a velocity instance if it fits in `budget` events and a card is free.
    fn velocity(&mut self, budget: u64) {
        if budget < self.queue.injected + VELOCITY_TXNS as u64 {
            return;
        }
        let start = self.clock + self.rng.i64(SEC..=30 * SEC);
        let Some(c) = self.pick_card(start) else {
            return;
        };
        let label = self.new_label(VELOCITY);
        let card = u64::from(self.card_ids[c]);
        let nc = self.country_ids.len();
        let mut used = [usize::from(self.home[c]); VELOCITY_TXNS];
        for i in 1..VELOCITY_TXNS {
            // Rejection sampling: at least 4 countries, so each try succeeds with p >= 1/4.
            let mut x = self.rng.usize(..nc);
            while used[..i].contains(&x) {
                x = self.rng.usize(..nc);
            }
            used[i] = x;
        }
        let mut ts = start;
        for &country in &used {
            let channel = if self.rng.bool() { POS } else { ATM };
            let amount = if channel == ATM {
                2_000 * self.rng.i64(5..=25)
            } else {
                self.amount()
            };
            let merchant = self.merchant();
            self.queue.push(
                ts,
                TXN,
                label,
                &[
                    card,
                    merchant,
                    cents(amount),
                    u64::from(self.country_ids[country]),
                    channel,
                ],
            );
            self.last[c] = ts;
            // 3 gaps of at most 15 s: <= 45 s.
            ts += self.rng.i64(3 * SEC..=15 * SEC);
        }
    }
}
