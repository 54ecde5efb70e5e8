//! CSV import: one event type per file, one event per row.
//!
//! Input: a CSV file with a header row naming its columns (a UTF-8 byte-order mark and CRLF line
//! endings are fine), the [`Catalog`] the rows are typed against and the name of the event type.
//! Every field of the type needs a column of the same name; the event time comes from
//! [`CsvOptions::time_field`] and an optional label class from [`CsvOptions::label_field`]. Other
//! columns are ignored and listed in [`ImportStats::ignored_columns`].
//! Output: events appended to a [`TapeWriter`] in file order, or in time order with
//! [`CsvRowOptions::sort_by_time`] (symbols interned into a [`SymbolTable`]). Next stage:
//! [`TapeWriter::finish`], then replay.
//!
//! [`CsvRowOptions`] (taken by [`import_csv_rows`]) adds a time base (for time columns that
//! count from some start rather than from the UNIX epoch, such as the ULB credit-card file's
//! `Time`, seconds since its first transaction), sorting by time (the tape then needs no
//! reordering at replay; ties keep file order) and how labelled rows map to instances.
//!
//! Cell syntax by field type: `i64`/`u64` integers, `f64` any Rust float literal, `bool`
//! `true`/`false`/`1`/`0` (case-insensitive), `sym` any text (interned), `ts` integer ns since
//! the UNIX epoch, enums by variant name (case-insensitive) or variant index. Cells are trimmed.
//! A bad cell is an error of the form `data.csv:12:3: field `qty`: expected f64, found "abc"`
//! (1-based file line and column).
//!
//! [`ImportError`] and [`ImportStats`] are shared with [`crate::lobster`].

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cep_core::event::Label;
use cep_core::schema::FieldType;
use cep_core::{Catalog, SymbolTable};
use serde::Serialize;

use crate::tape::{TapeError, TapeWriter};

/// Unit of the time column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TimeUnit {
    /// Nanoseconds since the UNIX epoch.
    #[default]
    Ns,
    /// Microseconds since the UNIX epoch.
    Us,
    /// Milliseconds since the UNIX epoch.
    Ms,
    /// Seconds since the UNIX epoch.
    S,
}

impl TimeUnit {
    /// Decimal digits between this unit and nanoseconds (`S` is 9).
    pub fn decimals(self) -> u32 {
        match self {
            Self::Ns => 0,
            Self::Us => 3,
            Self::Ms => 6,
            Self::S => 9,
        }
    }

    /// The unit's short name: `ns`, `us`, `ms` or `s`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ns => "ns",
            Self::Us => "us",
            Self::Ms => "ms",
            Self::S => "s",
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimeUnit {
    type Err = String;

    /// Parses `ns`, `us`, `ms` or `s` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ns" => Ok(Self::Ns),
            "us" => Ok(Self::Us),
            "ms" => Ok(Self::Ms),
            "s" => Ok(Self::S),
            _ => Err(format!(
                "unknown time unit `{s}` (expected ns, us, ms or s)"
            )),
        }
    }
}

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Column holding the event time (default `ts`).
    pub time_field: String,
    /// Unit of the event time (default ns). Values may be integers or decimals such as
    /// `34200.004` (converted to ns exactly; digits finer than 1 ns are dropped).
    pub time_unit: TimeUnit,
    /// Column holding an integer label class, if any.
    pub label_field: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            time_field: "ts".into(),
            time_unit: TimeUnit::Ns,
            label_field: None,
        }
    }
}

/// Which injected instance a labelled row belongs to (the tape's `Label::instance`, which
/// replay recall counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum LabelInstances {
    /// Every row gets instance 0: each class is one instance.
    #[default]
    Shared,
    /// Each row with a non-zero class is an instance of its own, numbered 1, 2, ... in file
    /// order (recall is then the share of labelled rows some signal includes).
    PerRow,
}

/// Options beyond [`CsvOptions`]: time base, row order, label instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CsvRowOptions {
    /// Added to every event time, ns (for time columns that count from a start of their own).
    pub time_base_ns: i64,
    /// Write rows in time order (stable: rows with equal times keep file order). Reads the whole
    /// file into memory first.
    pub sort_by_time: bool,
    /// How labelled rows map to instances.
    pub instances: LabelInstances,
}

/// Parses a time base: an integer number of ns since the UNIX epoch, or a UTC date
/// `YYYY-MM-DD` (midnight) or date and time `YYYY-MM-DDTHH:MM:SS[Z]`.
pub fn parse_time_base(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let bad = || {
        format!(
            "bad time base `{s}` (expected ns since the UNIX epoch, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)"
        )
    };
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let time = time.trim_end_matches('Z');
    let num = |t: &str, len: usize| -> Option<i64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let [y, m, dd] = d[..] else { return Err(bad()) };
    let [hh, mm, ss] = t[..] else {
        return Err(bad());
    };
    let (Some(y), Some(m), Some(dd), Some(hh), Some(mm), Some(ss)) = (
        num(y, 4),
        num(m, 2),
        num(dd, 2),
        num(hh, 2),
        num(mm, 2),
        num(ss, 2),
    ) else {
        return Err(bad());
    };
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = match m {
        2 if leap => 29,
        1..=12 => month_days[(m - 1) as usize],
        _ => return Err(bad()),
    };
    if !(1..=max_day).contains(&dd) || hh > 23 || mm > 59 || ss > 59 || !(1678..=2261).contains(&y)
    {
        return Err(bad());
    }
    // Days from civil (H. Hinnant), March-based years.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    /// Events written.
    pub events: u64,
    /// Events written per event type name.
    pub per_type: Vec<(String, u64)>,
    /// Header columns that were not used.
    pub ignored_columns: Vec<String>,
}

/// Errors importing CSV or LOBSTER files. Messages start with the file (and `line:col` where
/// there is one).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The input.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV structure is broken (ragged rows, invalid UTF-8, ...).
    #[error("{}:{line}: {message}", .path.display())]
    Csv {
        /// The input.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A row has the wrong number of columns.
    #[error("{}:{line}: expected {expected} columns, found {found}", .path.display())]
    Columns {
        /// The input.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Columns expected.
        expected: usize,
        /// Columns found.
        found: usize,
    },
    /// A cell does not parse as its field's type.
    #[error("{}:{line}:{col}: field `{field}`: expected {expected}, found {found:?}", .path.display())]
    Value {
        /// The input.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column (CSV field index).
        col: usize,
        /// Field (or column) name.
        field: String,
        /// What the field accepts.
        expected: String,
        /// The cell text.
        found: String,
    },
    /// A field of the event type has no column.
    #[error("{}: no column for field `{field}` of event type `{type_name}` (columns: {})", .path.display(), .columns.join(", "))]
    MissingColumn {
        /// The input.
        path: PathBuf,
        /// The field (or time / label column) without a column.
        field: String,
        /// The event type.
        type_name: String,
        /// Header columns present.
        columns: Vec<String>,
    },
    /// Two header columns have the same name.
    #[error("{}: column `{column}` appears twice in the header", .path.display())]
    DuplicateColumn {
        /// The input.
        path: PathBuf,
        /// The repeated name.
        column: String,
    },
    /// The file has no header row.
    #[error("{}: empty file (expected a header row)", .path.display())]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// The event type is not in the catalog.
    #[error("unknown event type `{type_name}` (known: {})", .known.join(", "))]
    UnknownType {
        /// The requested type.
        type_name: String,
        /// Types in the catalog.
        known: Vec<String>,
    },
    /// The tape writer's catalog differs from the catalog the input is decoded against.
    #[error("{}: {message}", .path.display())]
    CatalogMismatch {
        /// The input.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// Writing an event to the tape failed.
    #[error("{}:{line}: {source}", .path.display())]
    Tape {
        /// The input.
        path: PathBuf,
        /// 1-based line of the event.
        line: u64,
        /// The tape error.
        source: TapeError,
    },
    /// A zip archive could not be read or has no single message file.
    #[error("{}: {message}", .path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No trading date was given and none is in the file name.
    #[error("{}: cannot tell the trading date from the file name (expected `TICKER_YYYY-MM-DD_...`); pass --date YYYY-MM-DD", .path.display())]
    NoDate {
        /// The input.
        path: PathBuf,
    },
    /// The given date is not a valid `YYYY-MM-DD` calendar date.
    #[error("invalid date `{date}` (expected YYYY-MM-DD, years 1678 to 2261)")]
    BadDate {
        /// The text given.
        date: String,
    },
}

/// Imports every row of `input` as an event of type `type_name`, appending to `writer` in file
/// order (no time base, instance 0: [`CsvRowOptions::default`]).
///
/// `catalog` must agree with the writer's catalog on `type_name` (same id and fields).
pub fn import_csv(
    input: &Path,
    catalog: &Catalog,
    type_name: &str,
    opts: &CsvOptions,
    writer: &mut TapeWriter,
    symbols: &mut SymbolTable,
) -> Result<ImportStats, ImportError> {
    import_csv_rows(
        input,
        catalog,
        type_name,
        opts,
        &CsvRowOptions::default(),
        writer,
        symbols,
    )
}

/// As [`import_csv`], with a time base, optional sorting by time and label instances as `rows`
/// says.
pub fn import_csv_rows(
    input: &Path,
    catalog: &Catalog,
    type_name: &str,
    opts: &CsvOptions,
    rows: &CsvRowOptions,
    writer: &mut TapeWriter,
    symbols: &mut SymbolTable,
) -> Result<ImportStats, ImportError> {
    let path = input.to_path_buf();
    let type_id = catalog
        .type_by_name(type_name)
        .ok_or_else(|| ImportError::UnknownType {
            type_name: type_name.into(),
            known: catalog.types().iter().map(|t| t.name.clone()).collect(),
        })?;
    let Some(ty) = catalog.event_type(type_id) else {
        return Err(ImportError::UnknownType {
            type_name: type_name.into(),
            known: Vec::new(),
        });
    };
    if writer.catalog().event_type(type_id) != Some(ty) {
        return Err(ImportError::CatalogMismatch {
            path,
            message: format!(
                "the tape's catalog has no event type `{type_name}` with id {type_id} and the same fields"
            ),
        });
    }

    let file = File::open(input).map_err(|source| ImportError::Io {
        path: path.clone(),
        source,
    })?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let columns: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(&path, e))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            }
            .to_owned()
        })
        .collect();
    if columns.is_empty() || columns.iter().all(String::is_empty) {
        return Err(ImportError::Empty { path });
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].contains(c) {
            return Err(ImportError::DuplicateColumn {
                path,
                column: c.clone(),
            });
        }
    }
    let find = |name: &str| -> Result<usize, ImportError> {
        columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| ImportError::MissingColumn {
                path: path.clone(),
                field: name.into(),
                type_name: type_name.into(),
                columns: columns.clone(),
            })
    };
    let time_col = find(&opts.time_field)?;
    let field_cols = ty
        .fields
        .iter()
        .map(|f| find(&f.name))
        .collect::<Result<Vec<_>, _>>()?;
    let label_col = opts.label_field.as_deref().map(find).transpose()?;
    let ignored_columns: Vec<String> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != time_col && !field_cols.contains(i) && label_col != Some(*i))
        .map(|(_, c)| c.clone())
        .collect();

    let decimals = opts.time_unit.decimals();
    let mut record = csv::StringRecord::new();
    let mut slots = vec![0u64; ty.fields.len()];
    let mut events = 0u64;
    let mut labelled = 0u32;
    // Rows held for sorting: (ts, label, line, slots).
    let mut held: Vec<(i64, Label, u64, Vec<u64>)> = Vec::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&path, e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |col: usize| record.get(col).unwrap_or("");
        let bad = |col: usize, field: &str, expected: String| ImportError::Value {
            path: path.clone(),
            line,
            col: col + 1,
            field: field.into(),
            expected,
            found: cell(col).into(),
        };

        let ts = parse_scaled_decimal(cell(time_col), decimals)
            .and_then(|t| t.checked_add(rows.time_base_ns))
            .ok_or_else(|| {
                bad(
                    time_col,
                    &opts.time_field,
                    format!("a time in {} (integer or decimal)", opts.time_unit),
                )
            })?;
        for ((slot, f), &col) in slots.iter_mut().zip(&ty.fields).zip(&field_cols) {
            *slot = parse_cell(catalog, symbols, f.ty, cell(col))
                .ok_or_else(|| bad(col, &f.name, expected(catalog, f.ty)))?;
        }
        let label = match label_col {
            Some(col) => {
                let class = cell(col).parse::<u16>().map_err(|_| {
                    bad(
                        col,
                        &columns[col],
                        "an integer label class (0..65535)".into(),
                    )
                })?;
                let instance = if class != 0 && rows.instances == LabelInstances::PerRow {
                    labelled = labelled.saturating_add(1);
                    labelled
                } else {
                    0
                };
                Label { class, instance }
            }
            None => Label::default(),
        };
        if rows.sort_by_time {
            held.push((ts, label, line, slots.clone()));
            continue;
        }
        writer
            .push(ts, type_id, label, &slots)
            .map_err(|source| ImportError::Tape {
                path: path.clone(),
                line,
                source,
            })?;
        events += 1;
    }
    // A stable sort: rows at the same time keep file order.
    held.sort_by_key(|r| r.0);
    for (ts, label, line, slots) in held {
        writer
            .push(ts, type_id, label, &slots)
            .map_err(|source| ImportError::Tape {
                path: path.clone(),
                line,
                source,
            })?;
        events += 1;
    }
    Ok(ImportStats {
        events,
        per_type: vec![(type_name.to_owned(), events)],
        ignored_columns,
    })
}

/// Parses one cell as a slot of type `ty`; `None` if it does not parse.
fn parse_cell(catalog: &Catalog, symbols: &mut SymbolTable, ty: FieldType, s: &str) -> Option<u64> {
    Some(match ty {
        FieldType::I64 | FieldType::Ts => s.parse::<i64>().ok()? as u64,
        FieldType::U64 => s.parse::<u64>().ok()?,
        FieldType::F64 => s.parse::<f64>().ok()?.to_bits(),
        FieldType::Bool => {
            if s == "1" || s.eq_ignore_ascii_case("true") {
                1
            } else if s == "0" || s.eq_ignore_ascii_case("false") {
                0
            } else {
                return None;
            }
        }
        FieldType::Sym => u64::from(symbols.intern(s)),
        FieldType::Enum(e) => {
            let def = catalog.enum_def(e)?;
            match def.variants.iter().position(|v| v.eq_ignore_ascii_case(s)) {
                Some(i) => i as u64,
                None => s
                    .parse::<u64>()
                    .ok()
                    .filter(|&i| i < def.variants.len() as u64)?,
            }
        }
    })
}

/// What a field of type `ty` accepts, for error messages.
fn expected(catalog: &Catalog, ty: FieldType) -> String {
    match ty {
        FieldType::Bool => "bool (true, false, 1 or 0)".into(),
        FieldType::Ts => "ts (integer ns since the UNIX epoch)".into(),
        FieldType::Enum(e) => match catalog.enum_def(e) {
            Some(d) => format!(
                "{} (one of {}, or a variant index)",
                d.name,
                d.variants.join(", ")
            ),
            None => format!("enum #{e}"),
        },
        other => catalog.type_name(other),
    }
}

/// Turns a csv crate error into an [`ImportError`] naming the line.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> ImportError {
    let line = e.position().map_or(0, csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ImportError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => ImportError::Columns {
            path: path.to_path_buf(),
            line,
            expected: expected_len as usize,
            found: len as usize,
        },
        csv::ErrorKind::Utf8 { err, .. } => ImportError::Csv {
            path: path.to_path_buf(),
            line,
            message: format!("invalid UTF-8 in column {}", err.field() + 1),
        },
        other => ImportError::Csv {
            path: path.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Parses `[+-]digits[.digits]` as an integer scaled by `10^decimals`, exactly (fraction digits
/// past `decimals` are dropped, truncating toward zero). Also accepts exponent forms such as
/// `1.5e3`, converted through `f64` (rounded to the nearest unit). `None` on anything else or on
/// overflow.
pub(crate) fn parse_scaled_decimal(s: &str, decimals: u32) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return scaled_float(s, decimals);
    }
    let scale = 10i64.checked_pow(decimals)?;
    let mut value: i64 = 0;
    for b in int.bytes() {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    value = value.checked_mul(scale)?;
    let mut place = scale;
    for b in frac.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value.checked_add(i64::from(b - b'0') * place)?;
    }
    Some(if neg { -value } else { value })
}

/// The exponent-notation fallback of [`parse_scaled_decimal`].
fn scaled_float(s: &str, decimals: u32) -> Option<i64> {
    if !s.bytes().any(|b| b == b'e' || b == b'E') {
        return None;
    }
    let v = s.parse::<f64>().ok()? * 10f64.powi(decimals as i32);
    // i64::MAX as f64 rounds up to 2^63, so the upper bound must be strict.
    (v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64).then(|| v.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_decimals_are_exact() {
        assert_eq!(
            parse_scaled_decimal("34200.004241176", 9),
            Some(34_200_004_241_176)
        );
        assert_eq!(
            parse_scaled_decimal("34200.004", 9),
            Some(34_200_004_000_000)
        );
        assert_eq!(parse_scaled_decimal("-1.5", 3), Some(-1500));
        assert_eq!(parse_scaled_decimal("+7", 0), Some(7));
        assert_eq!(parse_scaled_decimal("12.", 3), Some(12_000));
        assert_eq!(parse_scaled_decimal(".5", 1), Some(5));
        assert_eq!(parse_scaled_decimal("1.23456", 2), Some(123));
        assert_eq!(parse_scaled_decimal("1.5e3", 0), Some(1500));
        assert_eq!(parse_scaled_decimal("", 9), None);
        assert_eq!(parse_scaled_decimal(".", 9), None);
        assert_eq!(parse_scaled_decimal("-", 9), None);
        assert_eq!(parse_scaled_decimal("1a", 9), None);
        assert_eq!(parse_scaled_decimal("99999999999", 9), None);
        assert_eq!(parse_scaled_decimal("1e400", 0), None);
    }

    #[test]
    fn time_bases_parse_as_ns_or_utc_dates() {
        assert_eq!(parse_time_base("0"), Ok(0));
        assert_eq!(parse_time_base("-5"), Ok(-5));
        assert_eq!(parse_time_base("1970-01-02"), Ok(86_400_000_000_000));
        assert_eq!(parse_time_base("2013-09-01"), Ok(1_377_993_600_000_000_000));
        assert_eq!(
            parse_time_base("2013-09-01T01:02:03Z"),
            Ok(1_377_993_600_000_000_000 + 3_723_000_000_000)
        );
        assert_eq!(parse_time_base("2000-02-29"), Ok(951_782_400_000_000_000));
        for bad in [
            "",
            "2013-9-1",
            "2013-02-29",
            "2013-13-01",
            "2013-09-01T24:00:00",
            "x",
        ] {
            let e = parse_time_base(bad).expect_err(bad);
            assert!(e.contains("bad time base"), "{e}");
        }
    }

    /// Imports `csv` (columns `t,v,c`) as type `T { v: f64 }` and returns (ts, v, class, instance).
    fn import_rows(csv: &str, rows: &CsvRowOptions) -> Vec<(i64, f64, u16, u32)> {
        use crate::tape::TapeReader;
        let dir = std::env::temp_dir().join(format!(
            "strix-csv-rows-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.csv");
        let tape = dir.join("out.tape");
        std::fs::write(&input, csv).unwrap();
        let mut c = Catalog::new();
        c.add_type("T", &[("v", FieldType::F64)]).unwrap();
        let mut symbols = SymbolTable::new();
        let labels = ["none".to_string(), "fraud".to_string()];
        let mut w = TapeWriter::create(&tape, &c, &labels, "test").unwrap();
        let opts = CsvOptions {
            time_field: "t".into(),
            time_unit: TimeUnit::S,
            label_field: Some("c".into()),
        };
        let stats = import_csv_rows(&input, &c, "T", &opts, rows, &mut w, &mut symbols).unwrap();
        w.finish(&symbols).unwrap();
        let r = TapeReader::open(&tape).unwrap();
        let mut out = Vec::new();
        for b in r.batches() {
            let b = b.unwrap();
            for i in 0..b.len() {
                out.push((
                    b.ts()[i],
                    f64::from_bits(b.slot_column(0)[i]),
                    b.classes()[i],
                    b.instances()[i],
                ));
            }
        }
        assert_eq!(stats.events as usize, out.len());
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    const UNSORTED: &str =
        "\u{feff}t,v,c\r\n0,1.5,0\r\n2.25,2,0\r\n0.5,3,1\r\n2.25,4,1\r\n1,5,0\r\n";

    #[test]
    fn rows_sort_by_time_stably_with_a_time_base_and_one_instance_per_labelled_row() {
        let rows = CsvRowOptions {
            time_base_ns: 1_000,
            sort_by_time: true,
            instances: LabelInstances::PerRow,
        };
        let got = import_rows(UNSORTED, &rows);
        let s = 1_000_000_000;
        assert_eq!(
            got,
            vec![
                (1_000, 1.5, 0, 0),
                (s / 2 + 1_000, 3.0, 1, 1),
                (s + 1_000, 5.0, 0, 0),
                (2 * s + s / 4 + 1_000, 2.0, 0, 0),
                (2 * s + s / 4 + 1_000, 4.0, 1, 2),
            ]
        );
    }

    #[test]
    fn rows_keep_file_order_by_default() {
        let got = import_rows(UNSORTED, &CsvRowOptions::default());
        let v: Vec<f64> = got.iter().map(|r| r.1).collect();
        assert_eq!(v, vec![1.5, 2.0, 3.0, 4.0, 5.0]);
        assert!(got.iter().all(|r| r.3 == 0), "{got:?}");
    }
}
