//! CSV import: one event type per file, one event per row.
//!
//! Input: a CSV file with a header row naming its columns (a UTF-8 byte-order mark and CRLF line
//! endings are fine), the [`Catalog`] the rows are typed against and the name of the event type.
//! Every field of the type needs a column of the same name; the event time comes from
//! [`CsvOptions::time_field`] and an optional label class from [`CsvOptions::label_field`]. Other
//! columns are ignored and listed in [`ImportStats::ignored_columns`].
//! Output: events appended to a [`TapeWriter`] in file order (symbols interned into a
//! [`SymbolTable`]). Next stage: [`TapeWriter::finish`], then replay.
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

/// Imports every row of `input` as an event of type `type_name`, appending to `writer`.
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

        let ts = parse_scaled_decimal(cell(time_col), decimals).ok_or_else(|| {
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
            Some(col) => Label {
                class: cell(col).parse::<u16>().map_err(|_| {
                    bad(
                        col,
                        &columns[col],
                        "an integer label class (0..65535)".into(),
                    )
                })?,
                instance: 0,
            },
            None => Label::default(),
        };
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
}
