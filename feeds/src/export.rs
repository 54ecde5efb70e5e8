//! Export: a tape back out as CSV or JSON Lines, one row or object per event in sequence order.
//!
//! Input: a [`TapeReader`]. Output: text on any [`Write`] (a file, stdout). Next stage: people
//! and other tools (spreadsheets, `jq`, pandas).
//!
//! Every event is written as `seq`, `type` (type name), `ts` (integer ns), then every field of its
//! type by name, then `label` (class name) and `instance` when the tape has labels. Values:
//! symbols as their strings, enums as variant names, integers and timestamps as integers, `f64`
//! in Rust's shortest round-trip form (`{}`; in JSON, serde_json's shortest form, non-finite
//! values as `null`), bools as `true`/`false`.
//!
//! - CSV: header `seq,type,ts,<union of field names>[,label,instance]`, where the union takes
//!   field names in type-id then field order over the types the tape contains; cells of fields an
//!   event's type lacks are empty.
//! - JSON Lines: `{"seq":0,"type":"Order","ts":...,"fields":{...}}` plus `"label"` and
//!   `"instance"` when labelled.

use std::fmt::{self, Write as _};
use std::io::{BufWriter, Write};
use std::str::FromStr;

use cep_core::schema::{FieldDef, FieldType};
use cep_core::{Catalog, EventBatch, SymbolTable};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::tape::{TapeError, TapeReader};

/// Output format of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        })
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    /// Parses `csv` or `jsonl` (also `json`, `ndjson`), case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "jsonl" | "json" | "ndjson" => Ok(Self::Jsonl),
            _ => Err(format!(
                "unknown export format `{s}` (expected csv or jsonl)"
            )),
        }
    }
}

/// Errors exporting a tape.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the tape failed (corrupt block, ...).
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// Writing the output failed.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV writer failed.
    #[error("writing CSV failed: {0}")]
    Csv(#[from] csv::Error),
    /// The JSON writer failed.
    #[error("writing JSON failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders a slot of type `ty` as JSON: symbols and enum variants by name (`"sym#ID"` and the
/// variant index when unknown), integers and timestamps as numbers, non-finite `f64` as `null`.
pub fn render_value(
    catalog: &Catalog,
    symbols: &SymbolTable,
    ty: FieldType,
    raw: u64,
) -> serde_json::Value {
    use serde_json::Value as J;
    match ty {
        FieldType::I64 | FieldType::Ts => J::from(raw as i64),
        FieldType::U64 => J::from(raw),
        FieldType::F64 => {
            serde_json::Number::from_f64(f64::from_bits(raw)).map_or(J::Null, J::Number)
        }
        FieldType::Bool => J::Bool(raw != 0),
        FieldType::Sym => match symbols.name(raw as u32) {
            Some(n) => J::String(n.to_owned()),
            None => J::String(format!("sym#{raw}")),
        },
        FieldType::Enum(e) => {
            match catalog
                .enum_def(e)
                .and_then(|d| usize::try_from(raw).ok().and_then(|i| d.variants.get(i)))
            {
                Some(v) => J::String(v.clone()),
                None => J::from(raw),
            }
        }
    }
}

/// Appends the CSV text of a slot to `buf` (same rendering as [`render_value`], but `f64` with
/// Rust's `{}` and non-finite values as `NaN`/`inf`).
fn write_cell(buf: &mut String, catalog: &Catalog, symbols: &SymbolTable, ty: FieldType, raw: u64) {
    // Writing to a String cannot fail.
    let _ = match ty {
        FieldType::I64 | FieldType::Ts => write!(buf, "{}", raw as i64),
        FieldType::U64 => write!(buf, "{raw}"),
        FieldType::F64 => write!(buf, "{}", f64::from_bits(raw)),
        FieldType::Bool => write!(buf, "{}", raw != 0),
        FieldType::Sym => match symbols.name(raw as u32) {
            Some(n) => write!(buf, "{n}"),
            None => write!(buf, "sym#{raw}"),
        },
        FieldType::Enum(e) => {
            match catalog
                .enum_def(e)
                .and_then(|d| usize::try_from(raw).ok().and_then(|i| d.variants.get(i)))
            {
                Some(v) => write!(buf, "{v}"),
                None => write!(buf, "{raw}"),
            }
        }
    };
}

/// Writes every event of `reader` to `out` in `format`; returns the number of events written.
pub fn export(
    reader: &TapeReader,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let n = match format {
        ExportFormat::Csv => export_csv(reader, &mut out)?,
        ExportFormat::Jsonl => export_jsonl(reader, &mut out)?,
    };
    out.flush()?;
    Ok(n)
}

fn label_name(reader: &TapeReader, class: u16) -> String {
    reader
        .label_names()
        .get(usize::from(class))
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

fn export_csv(reader: &TapeReader, out: &mut dyn Write) -> Result<u64, ExportError> {
    let catalog = reader.catalog();
    let symbols = reader.symbols();
    let counts = &reader.info().counts_per_type;
    let labelled = reader.has_labels();

    // Columns: seq, type, ts, union of field names of present types, [label, instance].
    let mut names: Vec<&str> = Vec::new();
    for (tid, t) in catalog.types().iter().enumerate() {
        if counts.get(tid).copied().unwrap_or(0) == 0 {
            continue;
        }
        for f in &t.fields {
            if !names.contains(&f.name.as_str()) {
                names.push(&f.name);
            }
        }
    }
    // Per type: the cell index of each field (None if the column is absent).
    let cell_of: Vec<Vec<Option<usize>>> = catalog
        .types()
        .iter()
        .map(|t| {
            t.fields
                .iter()
                .map(|f| names.iter().position(|n| *n == f.name).map(|p| 3 + p))
                .collect()
        })
        .collect();
    let ncells = 3 + names.len() + if labelled { 2 } else { 0 };

    let mut w = csv::WriterBuilder::new().from_writer(out);
    let mut header: Vec<&str> = vec!["seq", "type", "ts"];
    header.extend(&names);
    if labelled {
        header.extend(["label", "instance"]);
    }
    w.write_record(&header)?;

    let mut cells = vec![String::new(); ncells];
    let mut slots = Vec::with_capacity(reader.slot_count());
    let mut batch = EventBatch::new(reader.slot_count());
    let mut written = 0u64;
    for b in 0..reader.block_count() {
        reader.read_block(b, &mut batch)?;
        for row in 0..batch.len() {
            for c in &mut cells {
                c.clear();
            }
            let type_id = batch.type_ids()[row];
            let ty = catalog.event_type(type_id);
            let _ = write!(cells[0], "{}", batch.seq()[row]);
            match ty {
                Some(t) => cells[1].push_str(&t.name),
                None => {
                    let _ = write!(cells[1], "type#{type_id}");
                }
            }
            let _ = write!(cells[2], "{}", batch.ts()[row]);
            batch.copy_slots(row, &mut slots);
            if let (Some(t), Some(map)) = (ty, cell_of.get(usize::from(type_id))) {
                for ((f, &raw), cell) in t.fields.iter().zip(&slots).zip(map) {
                    if let Some(c) = cell.and_then(|c| cells.get_mut(c)) {
                        write_cell(c, catalog, symbols, f.ty, raw);
                    }
                }
            }
            if labelled {
                let label = batch.label(row);
                cells[ncells - 2] = label_name(reader, label.class);
                let _ = write!(cells[ncells - 1], "{}", label.instance);
            }
            w.write_record(&cells)?;
            written += 1;
        }
    }
    w.flush()?;
    Ok(written)
}

/// The `fields` object of one event, serialized in field order.
struct Fields<'a> {
    catalog: &'a Catalog,
    symbols: &'a SymbolTable,
    defs: &'a [FieldDef],
    slots: &'a [u64],
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.defs.len()))?;
        for (f, &raw) in self.defs.iter().zip(self.slots) {
            map.serialize_entry(
                &f.name,
                &render_value(self.catalog, self.symbols, f.ty, raw),
            )?;
        }
        map.end()
    }
}

/// One JSON Lines object.
#[derive(serde::Serialize)]
struct JsonEvent<'a> {
    seq: u64,
    #[serde(rename = "type")]
    ty: &'a str,
    ts: i64,
    fields: Fields<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<u32>,
}

fn export_jsonl(reader: &TapeReader, out: &mut dyn Write) -> Result<u64, ExportError> {
    let catalog = reader.catalog();
    let symbols = reader.symbols();
    let labelled = reader.has_labels();
    let mut slots = Vec::with_capacity(reader.slot_count());
    let mut batch = EventBatch::new(reader.slot_count());
    let mut written = 0u64;
    for b in 0..reader.block_count() {
        reader.read_block(b, &mut batch)?;
        for row in 0..batch.len() {
            let type_id = batch.type_ids()[row];
            let ty = catalog.event_type(type_id);
            let unknown;
            let name = match ty {
                Some(t) => t.name.as_str(),
                None => {
                    unknown = format!("type#{type_id}");
                    unknown.as_str()
                }
            };
            batch.copy_slots(row, &mut slots);
            let label = batch.label(row);
            let event = JsonEvent {
                seq: batch.seq()[row],
                ty: name,
                ts: batch.ts()[row],
                fields: Fields {
                    catalog,
                    symbols,
                    defs: ty.map_or(&[], |t| &t.fields),
                    slots: &slots,
                },
                label: labelled.then(|| label_name(reader, label.class)),
                instance: labelled.then_some(label.instance),
            };
            serde_json::to_writer(&mut *out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    Ok(written)
}
