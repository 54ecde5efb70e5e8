//! Synthetic equity market stream with injected `layering` and `momentum` instances.
//!
//! Input: a [`GenSpec`] (reads `events`, `seed`, `start_ts`, `inject_every`, `symbols`,
//! `accounts`). Output: events pushed into an [`EventSink`] in sequence order, and a
//! [`Generated`] description. Next stage: a tape writer or a matcher running
//! `examples/rules/market.cep`.
//!
//! # Schema ([`market_catalog`])
//!
//! ```text
//! event Order  { id: u64, account: sym, symbol: sym, side: side, price: f64, qty: f64 }
//! event Cancel { id: u64, account: sym, symbol: sym }
//! event Trade  { symbol: sym, price: f64, qty: f64, side: side, account: sym }
//! ```
//!
//! Prices are `f64` currency units with two decimals; quantities are whole lots stored as `f64`.
//! Symbols are interned first (`SYM0001`, ...; ids `0..symbols`), then accounts (`ACC00001`,
//! ...; ids `symbols..symbols + accounts`).
//!
//! # Background
//!
//! About 1M events per hour of event time (exponential gaps). Each symbol's price follows a
//! random walk in one-cent ticks. Orders (~62% of the non-cancel events) have quantities of
//! 1 to 500 lots and prices within 30 ticks of the symbol's price; 45% of them are cancelled
//! later (a `Cancel` with the order's id, usually within a few seconds). Trades have quantities
//! of 1 to 999. Background never produces an order of [`BIG_ORDER_QTY`] or more, nor a trade of
//! [`BIG_TRADE_QTY`] or more.
//!
//! # Injected instances (labels `["none", "layering", "momentum"]`)
//!
//! - **layering** ([`LAYERING`], per account, spanning at most 1.25 s): 3 to 5 Orders of at least
//!   5000 lots from one account on one side of one symbol, then a Cancel of each of them in the
//!   same order, then one Trade by that account on the other side (quantity below 1000). No
//!   other event of that account occurs between the first order and the trade, and no other
//!   large order of that account within 3 s either side.
//! - **momentum** ([`MOMENTUM`], per symbol, spanning at most 0.9 s): 6 buy Trades of one symbol
//!   with strictly increasing prices and quantities of at least 1000. They are consecutive in
//!   that symbol's trade stream, and no other large buy trade of that symbol occurs within 3 s
//!   either side.
//!
//! Instances of both classes keep their keys (account, symbol) apart from every other instance
//! by at least 3 s, so each instance is matched on its own by the rules in
//! `examples/rules/market.cep`, and nothing else is.

use cep_core::event::Label;
use cep_core::schema::SIDE_ENUM;
use cep_core::{Catalog, FieldType, SymbolTable, TypeId};

use super::cents as price;
use super::{
    BUY, EventSink, GenError, GenSpec, Generated, Queue, SELL, exp_gap, f, names, next_injection,
};

/// Type id of `Order` in [`market_catalog`].
pub const ORDER: TypeId = 0;
/// Type id of `Cancel` in [`market_catalog`].
pub const CANCEL: TypeId = 1;
/// Type id of `Trade` in [`market_catalog`].
pub const TRADE: TypeId = 2;

/// Label class of layering instances.
pub const LAYERING: u16 = 1;
/// Label class of momentum instances.
pub const MOMENTUM: u16 = 2;
/// Label class names, indexed by label class.
pub const LABELS: [&str; 3] = ["none", "layering", "momentum"];

/// Orders of at least this many lots occur only in layering instances.
pub const BIG_ORDER_QTY: f64 = 5_000.0;
/// Trades of at least this many lots occur only in momentum instances.
pub const BIG_TRADE_QTY: f64 = 1_000.0;
/// Upper bound on the span of a layering instance (first order to trade), ns.
pub const LAYERING_SPAN_NS: i64 = 2_000_000_000;
/// Upper bound on the span of a momentum instance (first to last trade), ns.
pub const MOMENTUM_SPAN_NS: i64 = 1_000_000_000;
/// Number of trades in a momentum instance.
pub const MOMENTUM_TRADES: usize = 6;

/// Mean gap between background steps (each step is an order or a trade; cancels come on top),
/// chosen so that the whole stream runs at about 1M events per hour.
const MEAN_STEP_NS: f64 = 4.7e6;
/// Mean delay from an order to its cancel.
const MEAN_CANCEL_NS: f64 = 1.5e9;
/// Minimum separation between instances sharing an account or symbol.
const COOLDOWN_NS: i64 = 3_000_000_000;
/// Most reservations (instance keys) alive at once; new instances are skipped beyond it.
const MAX_RESERVATIONS: usize = 16;
/// Random keys tried when placing an instance before giving it up.
const PROBES: usize = 16;
/// 1 ms in ns.
const MS: i64 = 1_000_000;

/// The market stream's catalog (see the [module docs](self) for the declarations).
pub fn market_catalog() -> Catalog {
    let mut c = Catalog::new();
    // `Catalog::new` always declares `side` first.
    let side = FieldType::Enum(c.enum_by_name(SIDE_ENUM).unwrap_or(0));
    let types: [(&str, &[(&str, FieldType)]); 3] = [
        (
            "Order",
            &[
                ("id", FieldType::U64),
                ("account", FieldType::Sym),
                ("symbol", FieldType::Sym),
                ("side", side),
                ("price", FieldType::F64),
                ("qty", FieldType::F64),
            ],
        ),
        (
            "Cancel",
            &[
                ("id", FieldType::U64),
                ("account", FieldType::Sym),
                ("symbol", FieldType::Sym),
            ],
        ),
        (
            "Trade",
            &[
                ("symbol", FieldType::Sym),
                ("price", FieldType::F64),
                ("qty", FieldType::F64),
                ("side", side),
                ("account", FieldType::Sym),
            ],
        ),
    ];
    for (name, fields) in types {
        // Cannot fail: constant declarations with distinct names, distinct non-reserved fields
        // and few slots give `add_type` nothing to reject.
        c.add_type(name, fields)
            .expect("constant market schema is valid");
    }
    c
}

/// Generates a market stream of exactly `spec.events` events into `sink`.
///
/// Deterministic in `spec`. Fails with [`GenError::Spec`] when `symbols` or `accounts` is below
/// 32, and with [`GenError::Sink`] as soon as the sink refuses an event.
pub fn market<S: EventSink + ?Sized>(
    spec: &GenSpec,
    sink: &mut S,
) -> Result<Generated, GenError<S::Error>> {
    if spec.symbols < 32 {
        return Err(GenError::Spec(format!(
            "market needs at least 32 symbols, got {}",
            spec.symbols
        )));
    }
    if spec.accounts < 32 {
        return Err(GenError::Spec(format!(
            "market needs at least 32 accounts, got {}",
            spec.accounts
        )));
    }
    let mut symbols = SymbolTable::new();
    let sym_ids: Vec<u32> = (1..=spec.symbols)
        .map(|i| symbols.intern(&format!("SYM{i:04}")))
        .collect();
    let acc_ids: Vec<u32> = (1..=spec.accounts)
        .map(|i| symbols.intern(&format!("ACC{i:05}")))
        .collect();
    let mut g = Market::new(spec, sym_ids, acc_ids);
    g.run(spec, sink)?;
    Ok(Generated {
        catalog: market_catalog(),
        symbols,
        label_names: names(&LABELS),
        injected: vec![
            (LABELS[1].to_owned(), g.count[0]),
            (LABELS[2].to_owned(), g.count[1]),
        ],
        last_ts: g.clock,
    })
}

/// Which id space a reservation's key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Account,
    Symbol,
}

/// A key used by an injected instance during `[start, end]`.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    space: Space,
    key: u32,
    start: i64,
    end: i64,
    /// Background must not use the key inside the window (accounts: no events at all;
    /// symbols: no trades).
    exclusive: bool,
}

#[derive(Debug)]
struct Market {
    rng: fastrand::Rng,
    sym_ids: Vec<u32>,
    acc_ids: Vec<u32>,
    /// Current price of each symbol, in cents.
    px: Vec<i64>,
    next_order_id: u64,
    next_instance: u32,
    count: [u64; 2],
    reservations: Vec<Reservation>,
    queue: Queue,
    /// Timestamp of the last emitted event.
    clock: i64,
}

impl Market {
    fn new(spec: &GenSpec, sym_ids: Vec<u32>, acc_ids: Vec<u32>) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        // Log-uniform starting prices between 10 and 500.
        let (lo, hi) = (10.0f64.ln(), 500.0f64.ln());
        let px = sym_ids
            .iter()
            .map(|_| ((lo + (hi - lo) * rng.f64()).exp() * 100.0).round() as i64)
            .collect();
        Self {
            rng,
            sym_ids,
            acc_ids,
            px,
            next_order_id: 1,
            next_instance: 1,
            count: [0; 2],
            reservations: Vec::with_capacity(MAX_RESERVATIONS + 2),
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
        let mut next_bg = self.clock + exp_gap(&mut self.rng, MEAN_STEP_NS);
        let mut next_layering = next_injection(&mut self.rng, spec.inject_every);
        let mut next_momentum = next_injection(&mut self.rng, spec.inject_every);
        while emitted < total {
            if emitted >= next_layering {
                self.layering(total - emitted);
                next_layering =
                    emitted.saturating_add(next_injection(&mut self.rng, spec.inject_every));
            }
            if emitted >= next_momentum {
                self.momentum(total - emitted);
                next_momentum =
                    emitted.saturating_add(next_injection(&mut self.rng, spec.inject_every));
            }
            // Once the budget left equals the injected events still scheduled, only those are
            // emitted, so every started instance completes.
            let drain = total - emitted <= self.queue.injected;
            let take_pending = self
                .queue
                .peek_ts()
                .is_some_and(|ts| drain || ts <= next_bg);
            if take_pending && let Some(mut p) = self.queue.pop() {
                if p.label.class == 0 {
                    // A background cancel.
                    if drain {
                        continue;
                    }
                    if let Some(end) = self.account_lock_end(p.slots[1] as u32, p.ts) {
                        p.ts = end + MS;
                        self.queue.reschedule(p);
                        continue;
                    }
                }
                sink.push(p.ts, p.type_id, p.label, p.slots())
                    .map_err(GenError::Sink)?;
                self.clock = p.ts;
            } else {
                let ts = next_bg;
                next_bg = ts + exp_gap(&mut self.rng, MEAN_STEP_NS);
                self.clock = ts;
                self.background(ts, sink)?;
            }
            emitted += 1;
        }
        Ok(())
    }

    /// Emits one background order or trade at `ts`.
    #[inline]
    fn background<S: EventSink + ?Sized>(
        &mut self,
        ts: i64,
        sink: &mut S,
    ) -> Result<(), GenError<S::Error>> {
        let a = self.free_account(ts);
        let acc = self.acc_ids[a];
        let side = if self.rng.bool() { BUY } else { SELL };
        if self.rng.u32(..100) < 62 {
            let s = self.rng.usize(..self.sym_ids.len());
            let sym = self.sym_ids[s];
            let off = self.rng.i64(0..=30);
            let p = if side == BUY {
                self.px[s] - off
            } else {
                self.px[s] + off
            }
            .max(1);
            let qty = f64::from(self.rng.u32(1..=500));
            let id = self.next_order_id;
            self.next_order_id += 1;
            if self.rng.u32(..100) < 45 {
                let at = ts + MS + exp_gap(&mut self.rng, MEAN_CANCEL_NS);
                self.queue.push(
                    at,
                    CANCEL,
                    Label::default(),
                    &[id, u64::from(acc), u64::from(sym)],
                );
            }
            let slots = [id, u64::from(acc), u64::from(sym), side, price(p), f(qty)];
            sink.push(ts, ORDER, Label::default(), &slots)
                .map_err(GenError::Sink)
        } else {
            let s = self.free_trade_symbol(ts);
            let p = (self.px[s] + self.rng.i64(-3..=3)).max(100);
            self.px[s] = p;
            let qty = f64::from(self.rng.u32(1..=999));
            let slots = [
                u64::from(self.sym_ids[s]),
                price(p),
                f(qty),
                side,
                u64::from(acc),
            ];
            sink.push(ts, TRADE, Label::default(), &slots)
                .map_err(GenError::Sink)
        }
    }

    /// End of the exclusive (layering) reservation holding account `acc` at `ts`, if any.
    #[inline]
    fn account_lock_end(&self, acc: u32, ts: i64) -> Option<i64> {
        self.reservations
            .iter()
            .find(|r| {
                r.exclusive
                    && r.space == Space::Account
                    && r.key == acc
                    && r.start <= ts
                    && ts <= r.end
            })
            .map(|r| r.end)
    }

    /// True when background trades of symbol id `sym` are barred at `ts` (a momentum burst).
    #[inline]
    fn symbol_locked(&self, sym: u32, ts: i64) -> bool {
        self.reservations.iter().any(|r| {
            r.exclusive && r.space == Space::Symbol && r.key == sym && r.start <= ts && ts <= r.end
        })
    }

    /// A random account index that background may use at `ts`. At most [`MAX_RESERVATIONS`]
    /// accounts are locked and there are at least 32, so the scan always finds one.
    #[inline]
    fn free_account(&mut self, ts: i64) -> usize {
        let n = self.acc_ids.len();
        let mut i = self.rng.usize(..n);
        if self.reservations.is_empty() {
            return i;
        }
        for _ in 0..n {
            if self.account_lock_end(self.acc_ids[i], ts).is_none() {
                break;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        i
    }

    /// A random symbol index whose trades background may emit at `ts` (see [`Self::free_account`]).
    #[inline]
    fn free_trade_symbol(&mut self, ts: i64) -> usize {
        let n = self.sym_ids.len();
        let mut i = self.rng.usize(..n);
        if self.reservations.is_empty() {
            return i;
        }
        for _ in 0..n {
            if !self.symbol_locked(self.sym_ids[i], ts) {
                break;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        i
    }

    /// Whether a new instance may use `key` during `[start, end]`.
    fn key_free(&self, space: Space, key: u32, start: i64, end: i64) -> bool {
        !self.reservations.iter().any(|r| {
            r.space == space
                && r.key == key
                && r.start <= end + COOLDOWN_NS
                && start - COOLDOWN_NS <= r.end
        })
    }

    /// A random index into `ids` (accounts or symbols) that is free during `[start, end]`.
    fn pick(&mut self, space: Space, start: i64, end: i64) -> Option<usize> {
        let n = if space == Space::Account {
            self.acc_ids.len()
        } else {
            self.sym_ids.len()
        };
        for _ in 0..PROBES {
            let i = self.rng.usize(..n);
            let key = if space == Space::Account {
                self.acc_ids[i]
            } else {
                self.sym_ids[i]
            };
            if self.key_free(space, key, start, end) {
                return Some(i);
            }
        }
        None
    }

    /// Drops expired reservations; false when no room is left for a new instance.
    fn make_room(&mut self) -> bool {
        let horizon = self.clock - COOLDOWN_NS;
        self.reservations.retain(|r| r.end >= horizon);
        self.reservations.len() + 2 <= MAX_RESERVATIONS
    }

    fn new_label(&mut self, class: u16) -> Label {
        let instance = self.next_instance;
        self.next_instance += 1;
        self.count[usize::from(class - 1)] += 1;
        Label { class, instance }
    }

    /// Schedules a layering instance if it fits in `budget` events and keys are free.
    fn layering(&mut self, budget: u64) {
        let k = self.rng.usize(3..=5);
        let n = 2 * k + 1;
        if budget < self.queue.injected + n as u64 || !self.make_room() {
            return;
        }
        let mut times = [0i64; 11];
        let mut t = self.clock + self.rng.i64(MS..=100 * MS);
        for (i, slot) in times[..n].iter_mut().enumerate() {
            *slot = t;
            // 10 gaps of at most 120 ms (order/cancel) and 150 ms (to the trade): <= 1.25 s.
            t += if i + 2 == n {
                self.rng.i64(20 * MS..=150 * MS)
            } else {
                self.rng.i64(20 * MS..=120 * MS)
            };
        }
        let (start, end) = (times[0], times[n - 1]);
        let Some(a) = self.pick(Space::Account, start, end) else {
            return;
        };
        let Some(s) = self.pick(Space::Symbol, start, end) else {
            return;
        };
        let (acc, sym) = (self.acc_ids[a], self.sym_ids[s]);
        self.reservations.push(Reservation {
            space: Space::Account,
            key: acc,
            start,
            end,
            exclusive: true,
        });
        self.reservations.push(Reservation {
            space: Space::Symbol,
            key: sym,
            start,
            end,
            exclusive: false,
        });
        let label = self.new_label(LAYERING);
        let side = if self.rng.bool() { BUY } else { SELL };
        let (acc, sym) = (u64::from(acc), u64::from(sym));
        let first_id = self.next_order_id;
        for &ts in &times[..k] {
            let id = self.next_order_id;
            self.next_order_id += 1;
            let off = self.rng.i64(1..=5);
            // Spoofing orders rest just outside the touch, on the side the price should move
            // away from.
            let p = if side == SELL {
                self.px[s] + off
            } else {
                (self.px[s] - off).max(1)
            };
            let qty = BIG_ORDER_QTY + 100.0 * f64::from(self.rng.u32(0..=150));
            self.queue
                .push(ts, ORDER, label, &[id, acc, sym, side, price(p), f(qty)]);
        }
        for (i, &ts) in times[k..2 * k].iter().enumerate() {
            self.queue
                .push(ts, CANCEL, label, &[first_id + i as u64, acc, sym]);
        }
        let qty = f64::from(self.rng.u32(100..=900));
        let other = if side == BUY { SELL } else { BUY };
        self.queue.push(
            times[n - 1],
            TRADE,
            label,
            &[sym, price(self.px[s]), f(qty), other, acc],
        );
    }

    /// Schedules a momentum instance if it fits in `budget` events and keys are free.
    fn momentum(&mut self, budget: u64) {
        if budget < self.queue.injected + MOMENTUM_TRADES as u64 || !self.make_room() {
            return;
        }
        let mut times = [0i64; MOMENTUM_TRADES];
        let mut t = self.clock + self.rng.i64(MS..=100 * MS);
        for slot in &mut times {
            *slot = t;
            // 5 gaps of at most 180 ms: <= 0.9 s.
            t += self.rng.i64(10 * MS..=180 * MS);
        }
        let (start, end) = (times[0], times[MOMENTUM_TRADES - 1]);
        let Some(s) = self.pick(Space::Symbol, start, end) else {
            return;
        };
        let Some(a) = self.pick(Space::Account, start, end) else {
            return;
        };
        let (acc, sym) = (self.acc_ids[a], self.sym_ids[s]);
        self.reservations.push(Reservation {
            space: Space::Symbol,
            key: sym,
            start,
            end,
            exclusive: true,
        });
        self.reservations.push(Reservation {
            space: Space::Account,
            key: acc,
            start,
            end,
            exclusive: false,
        });
        let label = self.new_label(MOMENTUM);
        let mut p = self.px[s];
        for &ts in &times {
            p += self.rng.i64(1..=8);
            let qty = BIG_TRADE_QTY + 100.0 * f64::from(self.rng.u32(0..=90));
            self.queue.push(
                ts,
                TRADE,
                label,
                &[u64::from(sym), price(p), f(qty), BUY, u64::from(acc)],
            );
        }
        // The walk continues from the top of the burst.
        self.px[s] = p;
    }
}
