//! CSV import (all field types, errors with line:col, real card data) and export back out.

use std::path::Path;

use cep_core::event::Label;
use cep_core::schema::FieldType;
use cep_core::{Catalog, SymbolTable};
use feeds::csv_import::{CsvOptions, ImportError, ImportStats, TimeUnit, import_csv};
use feeds::export::{ExportFormat, export, render_value};
use feeds::tape::{TapeReader, TapeWriter};
use serde_json::json;

mod common;
use common::TempPath;

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    c.add_type(
        "Fill",
        &[
            ("sym", FieldType::Sym),
            ("qty", FieldType::F64),
            ("n", FieldType::I64),
            ("id", FieldType::U64),
            ("live", FieldType::Bool),
            ("at", FieldType::Ts),
            ("side", FieldType::Enum(0)),
        ],
    )
    .unwrap();
    c.add_type(
        "Quote",
        &[
            ("sym", FieldType::Sym),
            ("bid", FieldType::F64),
            ("ask", FieldType::F64),
        ],
    )
    .unwrap();
    c
}

fn labels() -> Vec<String> {
    vec!["none".into(), "fraud".into()]
}

/// Imports `input` as `type_name` into `tape`, returning the stats.
fn import_into(
    input: &Path,
    tape: &Path,
    type_name: &str,
    opts: &CsvOptions,
) -> Result<ImportStats, ImportError> {
    let mut symbols = SymbolTable::new();
    let mut w = TapeWriter::create(tape, &catalog(), &labels(), "csv test").unwrap();
    let stats = import_csv(input, &catalog(), type_name, opts, &mut w, &mut symbols)?;
    w.finish(&symbols).unwrap();
    Ok(stats)
}

const FILLS: &str = "\u{feff}time,sym,qty,n,id,live,at,side,note,class\r\n\
34200.004,AAPL,1.5,-3,18446744073709551615,true,1340236800000000000,buy,hello,0\r\n\
34200.5, MSFT ,2,7,0,0,-5,SELL,,1\r\n\
1e3,AAPL,-0.25,0,1,FALSE,0,1,x,0\r\n";

#[test]
fn imports_every_field_type() {
    let input = TempPath::with("fills.csv", FILLS);
    let tape = TempPath::new("fills.tape");
    let opts = CsvOptions {
        time_field: "time".into(),
        time_unit: TimeUnit::S,
        label_field: Some("class".into()),
    };
    let stats = import_into(&input.0, &tape.0, "Fill", &opts).unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(stats.per_type, vec![("Fill".to_string(), 3)]);
    assert_eq!(stats.ignored_columns, vec!["note".to_string()]);

    let r = TapeReader::open(&tape.0).unwrap();
    assert!(r.has_labels());
    let b = r.batches().next().unwrap().unwrap();
    assert_eq!(
        b.ts(),
        &[34_200_004_000_000, 34_200_500_000_000, 1_000_000_000_000]
    );
    let e0 = b.event(0);
    assert_eq!(r.symbols().name(e0.slots[0] as u32), Some("AAPL"));
    assert_eq!(e0.slots[1], 1.5f64.to_bits());
    assert_eq!(e0.slots[2] as i64, -3);
    assert_eq!(e0.slots[3], u64::MAX);
    assert_eq!(e0.slots[4], 1);
    assert_eq!(e0.slots[5], 1_340_236_800_000_000_000);
    assert_eq!(e0.slots[6], 0);
    assert_eq!(e0.label, Label::default());
    let e1 = b.event(1);
    assert_eq!(
        r.symbols().name(e1.slots[0] as u32),
        Some("MSFT"),
        "cells are trimmed"
    );
    assert_eq!((e1.slots[4], e1.slots[5] as i64, e1.slots[6]), (0, -5, 1));
    assert_eq!(
        e1.label,
        Label {
            class: 1,
            instance: 0
        }
    );
    let e2 = b.event(2);
    assert_eq!(e2.slots[0], e0.slots[0]);
    assert_eq!((e2.slots[4], e2.slots[6]), (0, 1));
}

#[test]
fn time_units() {
    for (unit, cell, ns) in [
        (TimeUnit::Ns, "1234", 1234i64),
        (TimeUnit::Us, "1234", 1_234_000),
        (TimeUnit::Ms, "1.5", 1_500_000),
        (TimeUnit::S, "-0.000000001", -1),
    ] {
        let input = TempPath::with("units.csv", &format!("ts,sym,bid,ask\n{cell},A,1,2\n"));
        let tape = TempPath::new("units.tape");
        let opts = CsvOptions {
            time_unit: unit,
            ..CsvOptions::default()
        };
        import_into(&input.0, &tape.0, "Quote", &opts).unwrap();
        assert_eq!(
            TapeReader::open(&tape.0).unwrap().info().first_ts,
            Some(ns),
            "{unit} {cell}"
        );
    }
    assert_eq!("MS".parse::<TimeUnit>(), Ok(TimeUnit::Ms));
    assert!("hours".parse::<TimeUnit>().is_err());
}

#[test]
fn bad_values_name_line_column_and_field() {
    let tape = TempPath::new("bad.tape");
    let header = "ts,sym,bid,ask\n";
    let input = TempPath::with("bad.csv", &format!("{header}1,A,1,2\n2,A,abc,2\n"));
    let err = import_into(&input.0, &tape.0, "Quote", &CsvOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:3: field `bid`: expected f64, found \"abc\"",
            input.0.display()
        )
    );
    assert!(matches!(
        err,
        ImportError::Value {
            line: 3,
            col: 3,
            ..
        }
    ));

    let input = TempPath::with("badts.csv", &format!("{header}12:00,A,1,2\n"));
    let err = import_into(&input.0, &tape.0, "Quote", &CsvOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(":2:1: field `ts`: expected a time in ns"),
        "{err}"
    );

    let cases = [
        ("live", "maybe", "expected bool"),
        ("side", "up", "expected side (one of buy, sell"),
        ("side", "2", "expected side"),
        ("n", "1.0", "expected i64"),
        ("id", "-1", "expected u64"),
        ("at", "now", "expected ts"),
    ];
    let cols = ["sym", "qty", "n", "id", "live", "at", "side"];
    for (field, value, expect) in cases {
        let cells: Vec<&str> = cols
            .iter()
            .map(|c| {
                if *c == field {
                    value
                } else {
                    ["A", "1", "1", "1", "true", "1", "buy"]
                        [cols.iter().position(|x| x == c).unwrap()]
                }
            })
            .collect();
        let text = format!("ts,{}\n5,{}\n", cols.join(","), cells.join(","));
        let input = TempPath::with("bad2.csv", &text);
        let err = import_into(&input.0, &tape.0, "Fill", &CsvOptions::default()).unwrap_err();
        let col = 2 + cols.iter().position(|c| *c == field).unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(":2:{col}: field `{field}`: {expect}")),
            "{msg}"
        );
    }
}

#[test]
fn structural_errors() {
    let tape = TempPath::new("struct.tape");
    let opts = CsvOptions::default();

    let input = TempPath::with("missing.csv", "ts,sym,bid\n1,A,1\n");
    let err = import_into(&input.0, &tape.0, "Quote", &opts).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingColumn { field, .. } if field == "ask"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("no column for field `ask` of event type `Quote`"),
        "{err}"
    );

    let input = TempPath::with("nots.csv", "time,sym,bid,ask\n1,A,1,2\n");
    let err = import_into(&input.0, &tape.0, "Quote", &opts).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingColumn { field, .. } if field == "ts"),
        "{err:?}"
    );

    let input = TempPath::with("ragged.csv", "ts,sym,bid,ask\n1,A,1,2\n2,A,1\n");
    let err = import_into(&input.0, &tape.0, "Quote", &opts).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Columns {
                line: 3,
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );

    let input = TempPath::with("dup.csv", "ts,sym,bid,ask,bid\n");
    let err = import_into(&input.0, &tape.0, "Quote", &opts).unwrap_err();
    assert!(
        matches!(err, ImportError::DuplicateColumn { .. }),
        "{err:?}"
    );

    let input = TempPath::with("empty.csv", "");
    let err = import_into(&input.0, &tape.0, "Quote", &opts).unwrap_err();
    assert!(matches!(err, ImportError::Empty { .. }), "{err:?}");

    let input = TempPath::with("label.csv", "ts,sym,bid,ask,c\n1,A,1,2,7\n");
    let opts_l = CsvOptions {
        label_field: Some("c".into()),
        ..CsvOptions::default()
    };
    let err = import_into(&input.0, &tape.0, "Quote", &opts_l).unwrap_err();
    assert!(matches!(err, ImportError::Tape { line: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("label class 7"), "{err}");

    let input = TempPath::with("utf8.csv", "ts,sym,bid,ask\n");
    let err = import_into(&input.0, &tape.0, "Nope", &opts).unwrap_err();
    assert!(matches!(err, ImportError::UnknownType { .. }), "{err:?}");
    assert!(err.to_string().contains("known: Fill, Quote"), "{err}");

    let missing = TempPath::new("does-not-exist.csv");
    assert!(matches!(
        import_into(&missing.0, &tape.0, "Quote", &opts),
        Err(ImportError::Io { .. })
    ));
}

#[test]
fn header_only_file_imports_nothing() {
    let input = TempPath::with("hdr.csv", "ts,sym,bid,ask,extra\r\n");
    let tape = TempPath::new("hdr.tape");
    let stats = import_into(&input.0, &tape.0, "Quote", &CsvOptions::default()).unwrap();
    assert_eq!(stats.events, 0);
    assert_eq!(stats.ignored_columns, vec!["extra".to_string()]);
}

#[test]
fn credit_card_sample() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if !dir.is_dir() {
        println!("skipping: ../shared/data not found");
        return;
    }
    let mut c = Catalog::new();
    let names: Vec<String> = (1..=28)
        .map(|i| format!("V{i}"))
        .chain(["Amount".to_string()])
        .collect();
    let fields: Vec<(&str, FieldType)> =
        names.iter().map(|n| (n.as_str(), FieldType::F64)).collect();
    c.add_type("Txn", &fields).unwrap();
    let tape = TempPath::new("cc.tape");
    let mut symbols = SymbolTable::new();
    let mut w = TapeWriter::create(&tape.0, &c, &labels(), "ulb").unwrap();
    let opts = CsvOptions {
        time_field: "Time".into(),
        time_unit: TimeUnit::S,
        label_field: Some("Class".into()),
    };
    let input = dir.join("creditcard_ulb/creditcard_allfrauds_plus_first3000s.csv");
    let stats = import_csv(&input, &c, "Txn", &opts, &mut w, &mut symbols).unwrap();
    w.finish(&symbols).unwrap();
    assert_eq!(stats.events, 4002);
    assert!(stats.ignored_columns.is_empty());
    let r = TapeReader::open(&tape.0).unwrap();
    let mut frauds = 0;
    for b in r.batches() {
        frauds += b.unwrap().classes().iter().filter(|&&c| c == 1).count();
    }
    assert_eq!(frauds, 492);
    let b = r.batches().next().unwrap().unwrap();
    assert_eq!(f64::from_bits(b.slot_column(0)[0]), -1.359807134);
}

#[test]
fn export_round_trip_csv_and_jsonl() {
    let input = TempPath::with("exp.csv", FILLS);
    let tape = TempPath::new("exp.tape");
    let opts = CsvOptions {
        time_field: "time".into(),
        time_unit: TimeUnit::S,
        label_field: Some("class".into()),
    };
    import_into(&input.0, &tape.0, "Fill", &opts).unwrap();
    let r = TapeReader::open(&tape.0).unwrap();

    let mut csv_out = Vec::new();
    assert_eq!(export(&r, ExportFormat::Csv, &mut csv_out).unwrap(), 3);
    let csv_text = String::from_utf8(csv_out).unwrap();
    assert_eq!(
        csv_text,
        "seq,type,ts,sym,qty,n,id,live,at,side,label,instance\n\
         0,Fill,34200004000000,AAPL,1.5,-3,18446744073709551615,true,1340236800000000000,buy,none,0\n\
         1,Fill,34200500000000,MSFT,2,7,0,false,-5,sell,fraud,0\n\
         2,Fill,1000000000000,AAPL,-0.25,0,1,false,0,sell,none,0\n"
    );

    let mut jsonl = Vec::new();
    assert_eq!(export(&r, ExportFormat::Jsonl, &mut jsonl).unwrap(), 3);
    let text = String::from_utf8(jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with(
            r#"{"seq":0,"type":"Fill","ts":34200004000000,"fields":{"sym":"AAPL","qty":1.5,"#
        ),
        "{}",
        lines[0]
    );
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        v,
        json!({"seq":1,"type":"Fill","ts":34200500000000i64,
               "fields":{"sym":"MSFT","qty":2.0,"n":7,"id":0,"live":false,"at":-5,"side":"sell"},
               "label":"fraud","instance":0})
    );

    assert_eq!(
        render_value(r.catalog(), r.symbols(), FieldType::Sym, 99),
        json!("sym#99")
    );
    assert_eq!(
        render_value(r.catalog(), r.symbols(), FieldType::Enum(0), 5),
        json!(5)
    );
    assert_eq!(
        render_value(r.catalog(), r.symbols(), FieldType::F64, f64::NAN.to_bits()),
        json!(null)
    );
    assert_eq!(
        render_value(r.catalog(), r.symbols(), FieldType::Ts, (-7i64) as u64),
        json!(-7)
    );
    assert_eq!("JSONL".parse::<ExportFormat>(), Ok(ExportFormat::Jsonl));
}

#[test]
fn export_mixed_types_unlabelled() {
    let tape = TempPath::new("mixed.tape");
    let mut c = Catalog::new();
    c.add_type("A", &[("x", FieldType::I64), ("name", FieldType::Sym)])
        .unwrap();
    c.add_type("Unused", &[("zzz", FieldType::I64)]).unwrap();
    c.add_type("B", &[("y", FieldType::F64), ("x", FieldType::I64)])
        .unwrap();
    let mut symbols = SymbolTable::new();
    let id = symbols.intern("has,comma");
    let mut w = TapeWriter::create(&tape.0, &c, &[], "").unwrap();
    w.push(10, 0, Label::default(), &[5, u64::from(id)])
        .unwrap();
    w.push(20, 2, Label::default(), &[0.1f64.to_bits(), (-1i64) as u64])
        .unwrap();
    w.push(30, 2, Label::default(), &[1e21f64.to_bits()])
        .unwrap();
    w.finish(&symbols).unwrap();
    let r = TapeReader::open(&tape.0).unwrap();
    let mut out = Vec::new();
    export(&r, ExportFormat::Csv, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "seq,type,ts,x,name,y\n0,A,10,5,\"has,comma\",\n1,B,20,-1,,0.1\n2,B,30,0,,1000000000000000000000\n"
    );
    let mut out = Vec::new();
    export(&r, ExportFormat::Jsonl, &mut out).unwrap();
    let first = String::from_utf8(out)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        first,
        r#"{"seq":0,"type":"A","ts":10,"fields":{"x":5,"name":"has,comma"}}"#
    );
}
