//! Synthetic last-trade-price stream with the schema of the DEBS 2022 Grand Challenge.
//!
//! Input: a [`GenSpec`] (reads `events`, `seed`, `start_ts`, `symbols`). Output: events pushed
//! into an [`EventSink`] in sequence order, and a [`Generated`] description. Next stage: a tape
//! writer, then a replay of `examples/rules/debs2022.cep` (per-symbol EMA crossovers over
//! 5-minute tumbling windows).
//!
//! # Schema ([`ticks_catalog`])
//!
//! ```text
//! enum  sec_type { Equity, Index }
//! event Tick { symbol: sym, security_type: sec_type, last_trade_price: f64 }
//! ```
//!
//! The challenge's events carry an instrument id (`ABC12.FR`), a security type (`E` or `I`) and
//! the last trade price, stamped with the trading time; event time (`ts`) plays the trading time
//! here. Symbols are interned in id order (`0..symbols`): four letters, sometimes two digits, and
//! a European exchange suffix (`QWER.FR`, `ZUPA17.DE`); every 40th symbol is an `Index`, the rest
//! are `Equity`. No event is labelled (label names `["none"]`, nothing injected).
//!
//! # Activity
//!
//! - **Time**: trading sessions run 08:00 to 16:30 UTC on weekdays; the clock jumps over nights
//!   and weekends. Within a session, gaps are exponential with a mean chosen so that a symbol
//!   trades [`TICKS_PER_SYMBOL_WINDOW`] times per 5-minute window on average: with the default
//!   5000 symbols that is 20,000 events per window, so 10M events span about 500 windows (five
//!   trading days). Timestamps have millisecond resolution, so ties occur.
//! - **Skew**: symbols are ranked in random order and trade with Zipf probabilities (weight
//!   `1 / rank`): the busiest symbol takes about a tenth of all events while most of the long
//!   tail trades less than once per window, so most symbols have windows without trades.
//! - **Prices**: each symbol's price follows a multiplicative random walk whose step scales with
//!   the square root of the trading time since the symbol's previous trade (about
//!   [`VOLATILITY_PER_WINDOW`] per 5 minutes), so rarely traded symbols move as much per hour as
//!   busy ones. Prices are positive with three decimals; equities start between 1 and 500,
//!   indices between 1000 and 20000.
//!
//! The same spec always gives the same stream. Setup builds the symbol names and an alias table
//! for the Zipf draw; each event then costs a few random numbers, so generation runs at tens of
//! millions of events per second in release builds (before the sink's own cost).

use cep_core::event::Label;
use cep_core::schema::EnumId;
use cep_core::{Catalog, FieldType, SymbolTable, TypeId};

use super::{EventSink, GenError, GenSpec, Generated, exp_gap, f, names};

/// Type id of `Tick` in [`ticks_catalog`].
pub const TICK: TypeId = 0;
/// Enum id of `sec_type` in [`ticks_catalog`].
pub const SEC_TYPE_ENUM: EnumId = 1;
/// Variant index of `Equity` in `sec_type`.
pub const EQUITY: u64 = 0;
/// Variant index of `Index` in `sec_type`.
pub const INDEX: u64 = 1;
/// Label class names: ticks carry no injected instances.
pub const LABELS: [&str; 1] = ["none"];

/// Number of symbols `strix gen ticks` uses unless told otherwise.
pub const DEFAULT_TICK_SYMBOLS: u32 = 5_000;
/// Most symbols the name scheme can make distinct (26^4 letter codes).
pub const MAX_TICK_SYMBOLS: u32 = 26 * 26 * 26 * 26;
/// Mean number of events per symbol per 5-minute window of trading time.
pub const TICKS_PER_SYMBOL_WINDOW: f64 = 4.0;
/// Standard deviation of a symbol's log price change over 5 minutes of trading time.
pub const VOLATILITY_PER_WINDOW: f64 = 0.004;
/// The challenge's window size, 5 minutes in ns.
pub const WINDOW_NS: i64 = 5 * 60 * SEC;
/// Every `INDEX_EVERY`-th symbol (ids `INDEX_EVERY - 1`, `2 * INDEX_EVERY - 1`, ...) is an index.
pub const INDEX_EVERY: u32 = 40;

/// 1 ms in ns.
const MS: i64 = 1_000_000;
/// 1 s in ns.
const SEC: i64 = 1_000_000_000;
/// One day in ns.
const DAY: i64 = 24 * 3_600 * SEC;
/// Session open, ns after midnight UTC.
const SESSION_OPEN: i64 = 8 * 3_600 * SEC;
/// Session close, ns after midnight UTC.
const SESSION_CLOSE: i64 = 16 * 3_600 * SEC + 30 * 60 * SEC;
/// Exchange suffixes of the symbol names.
const EXCHANGES: [&str; 8] = ["FR", "DE", "NL", "IT", "ES", "BE", "PT", "IE"];
/// A price never drops below this (it is a positive price with three decimals).
const MIN_PRICE: f64 = 0.001;

/// The tick stream's catalog (see the [module docs](self) for the declarations).
pub fn ticks_catalog() -> Catalog {
    let mut c = Catalog::new();
    // Cannot fail: `sec_type` is not declared yet in a fresh catalog (which holds only `side`).
    let sec_type = c
        .add_enum("sec_type", &["Equity", "Index"])
        .expect("fresh catalog lacks `sec_type`");
    let fields = [
        ("symbol", FieldType::Sym),
        ("security_type", FieldType::Enum(sec_type)),
        ("last_trade_price", FieldType::F64),
    ];
    // Cannot fail: a constant declaration with distinct, non-reserved fields in an empty catalog.
    c.add_type("Tick", &fields)
        .expect("constant Tick schema is valid");
    c
}

/// The name of symbol `i` (`i < MAX_TICK_SYMBOLS`): distinct for distinct `i`.
pub fn tick_symbol_name(i: u32) -> String {
    // 7919 is prime and not a factor of 26^4, so `i -> i * 7919 + 4321 (mod 26^4)` is a
    // bijection: distinct ids get distinct letter codes, scattered over the alphabet.
    let mut code = (u64::from(i) * 7_919 + 4_321) % u64::from(MAX_TICK_SYMBOLS);
    let mut name = String::with_capacity(10);
    for _ in 0..4 {
        name.push(char::from(b'A' + (code % 26) as u8));
        code /= 26;
    }
    if i % 3 == 1 {
        name.push_str(&format!("{:02}", (i / 3) % 100));
    }
    name.push('.');
    name.push_str(EXCHANGES[(i as usize / 7) % EXCHANGES.len()]);
    name
}

/// Generates a tick stream of exactly `spec.events` events into `sink`.
///
/// Deterministic in `spec`. Fails with [`GenError::Spec`] when `symbols` is 0 or above
/// [`MAX_TICK_SYMBOLS`], and with [`GenError::Sink`] as soon as the sink refuses an event.
pub fn ticks<S: EventSink + ?Sized>(
    spec: &GenSpec,
    sink: &mut S,
) -> Result<Generated, GenError<S::Error>> {
    if spec.symbols == 0 || spec.symbols > MAX_TICK_SYMBOLS {
        return Err(GenError::Spec(format!(
            "ticks needs 1 to {MAX_TICK_SYMBOLS} symbols, got {}",
            spec.symbols
        )));
    }
    let mut symbols = SymbolTable::new();
    let sym_ids: Vec<u64> = (0..spec.symbols)
        .map(|i| u64::from(symbols.intern(&tick_symbol_name(i))))
        .collect();
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut walk: Vec<SymbolState> = (0..spec.symbols)
        .map(|i| {
            let index = i % INDEX_EVERY == INDEX_EVERY - 1;
            let (lo, hi): (f64, f64) = if index {
                (1_000.0, 20_000.0)
            } else {
                (1.0, 500.0)
            };
            let (lo, hi) = (lo.ln(), hi.ln());
            SymbolState {
                price: (lo + (hi - lo) * rng.f64()).exp(),
                last_ts: spec.start_ts,
                sec_type: if index { INDEX } else { EQUITY },
            }
        })
        .collect();
    // Zipf weights by activity rank; ranks are a random permutation of the symbols.
    let mut rank: Vec<u32> = (0..spec.symbols).collect();
    rng.shuffle(&mut rank);
    let weights: Vec<f64> = rank.iter().map(|&r| 1.0 / f64::from(r + 1)).collect();
    let alias = AliasTable::new(&weights);

    let mean_gap = WINDOW_NS as f64 / (f64::from(spec.symbols) * TICKS_PER_SYMBOL_WINDOW);
    // Step scale per sqrt(ns) of trading time: VOLATILITY_PER_WINDOW after one window. A
    // uniform draw on [-1, 1) has variance 1/3, hence the sqrt(3).
    let step_scale = VOLATILITY_PER_WINDOW * 3f64.sqrt() / (WINDOW_NS as f64).sqrt();
    let mut clock = next_open(spec.start_ts);
    let mut close = session_close(clock);
    let mut last_ts = spec.start_ts;
    for _ in 0..spec.events {
        clock += exp_gap(&mut rng, mean_gap);
        if clock >= close {
            clock = next_open(clock) + exp_gap(&mut rng, mean_gap);
            close = session_close(clock);
        }
        let ts = clock - clock.rem_euclid(MS);
        let s = alias.sample(&mut rng);
        let st = &mut walk[s];
        // Trading time since the symbol's previous trade (overnight gaps count as one hour).
        let dt = (ts - st.last_ts).clamp(0, 3_600 * SEC) as f64;
        let step = step_scale * dt.sqrt() * (2.0 * rng.f64() - 1.0);
        st.price = (st.price * (1.0 + step)).max(MIN_PRICE);
        st.last_ts = ts;
        let price = ((st.price * 1_000.0).round() / 1_000.0).max(MIN_PRICE);
        sink.push(
            ts,
            TICK,
            Label::default(),
            &[sym_ids[s], st.sec_type, f(price)],
        )
        .map_err(GenError::Sink)?;
        last_ts = ts;
    }
    Ok(Generated {
        catalog: ticks_catalog(),
        symbols,
        label_names: names(&LABELS),
        injected: Vec::new(),
        last_ts,
    })
}

/// Per-symbol walk state.
#[derive(Debug, Clone, Copy)]
struct SymbolState {
    /// Current price, unrounded.
    price: f64,
    /// Time of the symbol's previous trade (the stream start before the first).
    last_ts: i64,
    /// `EQUITY` or `INDEX`.
    sec_type: u64,
}

/// Weekday of `day` (days since the epoch), Monday = 0; 1970-01-01 was a Thursday.
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// The first session open at or after `ts` (`ts` itself when it lies inside a session).
fn next_open(ts: i64) -> i64 {
    let mut day = ts.div_euclid(DAY);
    let into_day = ts.rem_euclid(DAY);
    if weekday(day) < 5 && into_day < SESSION_CLOSE {
        return if into_day < SESSION_OPEN {
            day * DAY + SESSION_OPEN
        } else {
            ts
        };
    }
    day += 1;
    while weekday(day) >= 5 {
        day += 1;
    }
    day * DAY + SESSION_OPEN
}

/// Close of the session of the day `ts` falls in.
fn session_close(ts: i64) -> i64 {
    ts.div_euclid(DAY) * DAY + SESSION_CLOSE
}

/// Vose's alias table: draws index `i` with probability `weights[i] / sum(weights)` in O(1).
#[derive(Debug)]
struct AliasTable {
    /// Probability of keeping column `i` rather than taking `alias[i]`.
    keep: Vec<f64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table; `weights` must be non-empty, positive and finite (the callers' are
    /// `1 / rank`).
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (rounding) keep their own column for sure.
        for i in small.into_iter().chain(large) {
            scaled[i] = 1.0;
        }
        Self {
            keep: scaled,
            alias,
        }
    }

    #[inline]
    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let i = rng.usize(..self.keep.len());
        if rng.f64() < self.keep[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_open_skips_nights_and_weekends() {
        // 2024-01-05 is a Friday.
        let fri = 19_727 * DAY;
        assert_eq!(weekday(19_727), 4);
        assert_eq!(next_open(fri + 3_600 * SEC), fri + SESSION_OPEN);
        assert_eq!(
            next_open(fri + SESSION_OPEN + SEC),
            fri + SESSION_OPEN + SEC
        );
        // After Friday's close: Monday's open.
        assert_eq!(next_open(fri + SESSION_CLOSE), fri + 3 * DAY + SESSION_OPEN);
        // Saturday noon: Monday's open.
        assert_eq!(next_open(fri + DAY + DAY / 2), fri + 3 * DAY + SESSION_OPEN);
    }

    #[test]
    fn alias_table_follows_weights() {
        let weights = [1.0, 2.0, 3.0, 4.0];
        let table = AliasTable::new(&weights);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut hits = [0u32; 4];
        for _ in 0..100_000 {
            hits[table.sample(&mut rng)] += 1;
        }
        for (h, w) in hits.iter().zip(weights) {
            let expected = 10_000.0 * w;
            assert!(
                (f64::from(*h) - expected).abs() < 0.05 * expected,
                "{hits:?}"
            );
        }
    }

    #[test]
    fn symbol_names_are_distinct() {
        let mut names: Vec<String> = (0..50_000).map(tick_symbol_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 50_000);
    }
}
