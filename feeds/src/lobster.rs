//! LOBSTER message files (NASDAQ order-book events rebuilt by lobsterdata.com).
//!
//! Input: a LOBSTER message file, either the plain `.csv` or a LOBSTER `.zip` holding exactly one
//! `*_message_*` entry. Rows have no header and six columns: `time` (seconds after midnight,
//! decimal, up to ns), `type` 1..7, `order_id`, `size` (shares), `price` (USD x 10000, integer)
//! and `direction` (1 buy, -1 sell).
//! Output: events of [`lobster_catalog`] appended to a [`TapeWriter`] in file order.
//! Next stage: [`TapeWriter::finish`], then replay.
//!
//! Event times are UNIX ns: midnight UTC of the trading date plus the row's seconds, converted
//! exactly (no floating point). LOBSTER's seconds count from midnight US Eastern time; this
//! importer does not shift them, so `ts` reads as "exchange wall-clock time labelled UTC".
//!
//! Every event type has the fields `symbol: sym, order_id: u64, size: i64, price: f64,
//! side: side`. `price` is in USD (`raw / 10000`). `side` is the side of the *resting order in
//! the book*: an `ExecVisible` or `ExecHidden` with `side == sell` is a buyer-initiated trade.
//! `Halt` rows keep the same fields; LOBSTER writes price `-1` for a halt, `0` for quoting and
//! `1` for resumed trading, stored as given divided by 10000 (-0.0001, 0, 0.0001).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use cep_core::event::Label;
use cep_core::schema::{FieldType, TypeId};
use cep_core::{Catalog, SymbolTable};

pub use crate::csv_import::{ImportError, ImportStats};
use crate::csv_import::{csv_error, parse_scaled_decimal};
use crate::tape::TapeWriter;

/// Event type names in LOBSTER type order: type `k` (1..7) has type id `k - 1`.
pub const LOBSTER_TYPES: [&str; 7] = [
    "NewOrder",
    "PartialCancel",
    "Delete",
    "ExecVisible",
    "ExecHidden",
    "Cross",
    "Halt",
];

/// Slot of the `symbol` field in every LOBSTER type.
pub const SYMBOL_SLOT: usize = 0;
/// Slot of the `order_id` field.
pub const ORDER_ID_SLOT: usize = 1;
/// Slot of the `size` field.
pub const SIZE_SLOT: usize = 2;
/// Slot of the `price` field (f64 USD).
pub const PRICE_SLOT: usize = 3;
/// Slot of the `side` field (built-in enum `side`: 0 buy, 1 sell).
pub const SIDE_SLOT: usize = 4;

/// Nanoseconds per day. `days * DAY_NS` cannot overflow for the dates `parse_date` accepts.
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The catalog of LOBSTER message events: [`LOBSTER_TYPES`] in order (ids 0..7), each with
/// `symbol: sym, order_id: u64, size: i64, price: f64, side: side`.
pub fn lobster_catalog() -> Catalog {
    let mut catalog = Catalog::new();
    // The built-in `side` enum always has id 0 in a fresh catalog.
    let fields = [
        ("symbol", FieldType::Sym),
        ("order_id", FieldType::U64),
        ("size", FieldType::I64),
        ("price", FieldType::F64),
        ("side", FieldType::Enum(0)),
    ];
    for name in LOBSTER_TYPES {
        // Cannot fail: seven distinct type names, five distinct unreserved fields each.
        catalog
            .add_type(name, &fields)
            .expect("the LOBSTER schema is valid");
    }
    catalog
}

/// Imports a LOBSTER message file (`.csv`, or a `.zip` with one `*_message_*` entry) for ticker
/// `symbol` traded on `date` (`YYYY-MM-DD`; taken from the file name when `None`).
///
/// `writer` must have been created with [`lobster_catalog`] (or a catalog whose first seven
/// types equal it).
pub fn import_lobster(
    input: &Path,
    symbol: &str,
    date: Option<&str>,
    writer: &mut TapeWriter,
    symbols: &mut SymbolTable,
) -> Result<ImportStats, ImportError> {
    let path = input.to_path_buf();
    let expected = lobster_catalog();
    for (i, t) in expected.types().iter().enumerate() {
        if writer.catalog().types().get(i) != Some(t) {
            return Err(ImportError::CatalogMismatch {
                path,
                message: format!(
                    "the tape's catalog is not the LOBSTER catalog (type id {i} should be `{}` with fields symbol, order_id, size, price, side)",
                    t.name
                ),
            });
        }
    }
    let io_err = |source| ImportError::Io {
        path: path.clone(),
        source,
    };
    let file_name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let given_date = date
        .map(|d| parse_date(d).ok_or_else(|| ImportError::BadDate { date: d.into() }))
        .transpose()?;
    let is_zip = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    let sym = symbols.intern(symbol);

    if !is_zip {
        let day = given_date
            .or_else(|| find_date(&file_name))
            .ok_or_else(|| ImportError::NoDate { path: path.clone() })?;
        let file = File::open(input).map_err(io_err)?;
        return read_messages(file, &path, day * DAY_NS, sym, writer);
    }

    let zip_err = |e: zip::result::ZipError| ImportError::Zip {
        path: path.clone(),
        message: e.to_string(),
    };
    let file = File::open(input).map_err(io_err)?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut names = Vec::new();
    for (i, name) in archive.file_names().enumerate() {
        names.push((i, name.map_err(zip_err)?.into_owned()));
    }
    let messages: Vec<&(usize, String)> = names
        .iter()
        .filter(|(_, n)| n.contains("_message_"))
        .collect();
    let (index, entry_name) = match messages.as_slice() {
        [one] => (one.0, one.1.clone()),
        [] => {
            return Err(ImportError::Zip {
                path,
                message: format!(
                    "no entry whose name contains `_message_` (entries: {})",
                    names
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        several => {
            return Err(ImportError::Zip {
                path,
                message: format!(
                    "several message entries ({}); extract the one to import",
                    several
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    let day = given_date
        .or_else(|| find_date(&file_name))
        .or_else(|| find_date(&entry_name))
        .ok_or_else(|| ImportError::NoDate { path: path.clone() })?;
    let entry = archive.by_index(index).map_err(zip_err)?;
    read_messages(entry, &path.join(&entry_name), day * DAY_NS, sym, writer)
}

/// Decodes message rows from `reader` (named `path` in errors).
fn read_messages<R: Read>(
    reader: R,
    path: &Path,
    midnight_ns: i64,
    sym: u32,
    writer: &mut TapeWriter,
) -> Result<ImportStats, ImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let mut counts = [0u64; LOBSTER_TYPES.len()];
    let mut slots = [0u64; 5];
    slots[SYMBOL_SLOT] = u64::from(sym);
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != 6 {
            return Err(ImportError::Columns {
                path: path.to_path_buf(),
                line,
                expected: 6,
                found: record.len(),
            });
        }
        let cell = |col: usize| std::str::from_utf8(record.get(col).unwrap_or_default()).ok();
        let bad = |col: usize, field: &str, expected: &str| ImportError::Value {
            path: path.to_path_buf(),
            line,
            col: col + 1,
            field: field.into(),
            expected: expected.into(),
            found: String::from_utf8_lossy(record.get(col).unwrap_or_default()).into_owned(),
        };

        let secs_ns = cell(0)
            .and_then(|s| parse_scaled_decimal(s, 9))
            .ok_or_else(|| bad(0, "time", "seconds after midnight (decimal)"))?;
        let ts = midnight_ns
            .checked_add(secs_ns)
            .ok_or_else(|| bad(0, "time", "seconds after midnight (decimal)"))?;
        let kind = cell(1)
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|k| (1..=7).contains(k))
            .ok_or_else(|| bad(1, "type", "a message type 1..7"))?;
        let order_id = cell(2)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad(2, "order_id", "u64"))?;
        let size = cell(3)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| bad(3, "size", "i64"))?;
        let price = cell(4)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| bad(4, "price", "an integer price (USD x 10000)"))?;
        let side = match cell(5) {
            Some("1") => 0u64,
            Some("-1") => 1u64,
            _ => return Err(bad(5, "direction", "direction 1 (buy) or -1 (sell)")),
        };
        slots[ORDER_ID_SLOT] = order_id;
        slots[SIZE_SLOT] = size as u64;
        slots[PRICE_SLOT] = (price as f64 / 10_000.0).to_bits();
        slots[SIDE_SLOT] = side;
        let type_id = TypeId::from(kind - 1);
        writer
            .push(ts, type_id, Label::default(), &slots)
            .map_err(|source| ImportError::Tape {
                path: path.to_path_buf(),
                line,
                source,
            })?;
        counts[usize::from(kind - 1)] += 1;
    }
    Ok(ImportStats {
        events: counts.iter().sum(),
        per_type: LOBSTER_TYPES
            .iter()
            .zip(counts)
            .map(|(n, c)| ((*n).to_owned(), c))
            .collect(),
        ignored_columns: Vec::new(),
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD` into days since the UNIX epoch; `None` unless it is a real date in
/// 1678..=2261 (so that its midnight fits in i64 ns).
fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    // Midnight must be representable as i64 ns since the epoch (1677-09-21 ..= 2262-04-11).
    if !(1678..=2261).contains(&year) {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=month_days)
        .contains(&day)
        .then(|| days_from_civil(i64::from(year), month, day))
}

/// Finds the first `YYYY-MM-DD` date in a file name such as `AAPL_2012-06-21_34200000_...`.
fn find_date(name: &str) -> Option<i64> {
    (0..name.len().saturating_sub(9)).find_map(|i| name.get(i..i + 10).and_then(parse_date))
}

/// The ticker at the start of a LOBSTER file name (`AAPL_2012-06-21_...` -> `AAPL`, also for
/// `LOBSTER_SampleFile_AAPL_2012-06-21_1.zip`), if the name has that shape.
pub fn ticker_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parts: Vec<&str> = name.split('_').collect();
    let date_at = parts.iter().position(|p| parse_date(p).is_some())?;
    let ticker = parts.get(date_at.checked_sub(1)?)?;
    (!ticker.is_empty()).then(|| (*ticker).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2012-06-21"), Some(15_512));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(
            parse_date("2012-02-29").map(|d| d - parse_date("2012-02-28").unwrap_or(0)),
            Some(1)
        );
        assert_eq!(parse_date("2011-02-29"), None);
        assert_eq!(parse_date("2012-13-01"), None);
        assert_eq!(parse_date("2012-6-21"), None);
        assert_eq!(parse_date("3000-01-01"), None);
        assert_eq!(
            parse_date("2261-12-31").map(|d| d.checked_mul(DAY_NS).is_some()),
            Some(true)
        );
        assert_eq!(
            parse_date("1678-01-01").map(|d| d.checked_mul(DAY_NS).is_some()),
            Some(true)
        );
        assert_eq!(
            find_date("LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"),
            Some(15_512)
        );
        assert_eq!(find_date("x.csv"), None);
        assert_eq!(
            ticker_from_file_name(Path::new("LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")).as_deref(),
            Some("AAPL")
        );
        assert_eq!(
            ticker_from_file_name(Path::new(
                "AAPL_2012-06-21_34200000_37800000_message_50.csv"
            ))
            .as_deref(),
            Some("AAPL")
        );
    }
}
