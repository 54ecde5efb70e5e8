//! LOBSTER import against the shared sample files, plus malformed input.

use std::path::{Path, PathBuf};

use cep_core::SymbolTable;
use cep_core::value::Value;
use feeds::csv_import::ImportError;
use feeds::lobster::{
    LOBSTER_TYPES, ORDER_ID_SLOT, PRICE_SLOT, SIDE_SLOT, SIZE_SLOT, SYMBOL_SLOT, import_lobster,
    lobster_catalog,
};
use feeds::tape::{TapeInfo, TapeReader, TapeWriter};

mod common;
use common::TempPath;

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: ../shared/data not found");
        None
    }
}

/// 2012-06-21T00:00:00Z in ns.
const MIDNIGHT_NS: i64 = 1_340_236_800 * 1_000_000_000;

fn import(
    input: &Path,
    date: Option<&str>,
    tape: &Path,
) -> Result<(feeds::csv_import::ImportStats, TapeInfo), ImportError> {
    let mut symbols = SymbolTable::new();
    let mut w = TapeWriter::create(tape, &lobster_catalog(), &[], "lobster test").unwrap();
    let stats = import_lobster(input, "AAPL", date, &mut w, &mut symbols)?;
    let info = w.finish(&symbols).unwrap();
    Ok((stats, info))
}

#[test]
fn aapl_level1_zip() {
    let Some(dir) = data_dir() else { return };
    let tape = TempPath::new("aapl.tape");
    let (stats, info) = import(
        &dir.join("lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"),
        None,
        &tape.0,
    )
    .unwrap();
    assert_eq!(stats.events, 118_497);
    let expect = [54_818u64, 252, 28_437, 23_658, 11_332, 0, 0];
    let per_type: Vec<(String, u64)> = LOBSTER_TYPES
        .iter()
        .zip(expect)
        .map(|(n, c)| ((*n).to_string(), c))
        .collect();
    assert_eq!(stats.per_type, per_type);
    assert_eq!(info.event_count, 118_497);
    assert_eq!(info.counts_per_type, expect.to_vec());

    let r = TapeReader::open(&tape.0).unwrap();
    r.verify().unwrap();
    let first = r.info().first_ts.unwrap();
    let last = r.info().last_ts.unwrap();
    assert_eq!(
        first,
        MIDNIGHT_NS + 34_200_004_241_176,
        "34200.004241176 s after midnight, exactly"
    );
    let secs = |s: i64| MIDNIGHT_NS + s * 1_000_000_000;
    assert!(
        (secs(34_200)..secs(34_201)).contains(&first),
        "first event in the first second of trading"
    );
    assert!(
        (secs(57_599)..=secs(57_600)).contains(&last),
        "last event in the last second of trading"
    );

    // First row: 34200.004241176,1,16113575,18,5853300,1
    let mut batch = cep_core::EventBatch::new(5);
    r.read_block(0, &mut batch).unwrap();
    let e = batch.event(0);
    assert_eq!(e.type_id, 0);
    assert_eq!(r.symbols().name(e.slots[SYMBOL_SLOT] as u32), Some("AAPL"));
    assert_eq!(e.slots[ORDER_ID_SLOT], 16_113_575);
    assert_eq!(e.slots[SIZE_SLOT] as i64, 18);
    assert_eq!(
        Value::from_slot(cep_core::FieldType::F64, e.slots[PRICE_SLOT]),
        Value::F64(585.33)
    );
    assert_eq!(e.slots[SIDE_SLOT], 0, "direction 1 is buy");
    // Second row is a sell: 34200.025551909,1,16120456,18,5859100,-1
    assert_eq!(batch.event(1).slots[SIDE_SLOT], 1);
    assert_eq!(batch.event(1).ts, MIDNIGHT_NS + 34_200_025_551_909);
    // Events stay in file order (non-decreasing times).
    let mut prev = i64::MIN;
    for b in r.batches() {
        for &t in b.unwrap().ts() {
            assert!(t >= prev);
            prev = t;
        }
    }
}

#[test]
fn aapl_plain_csv_level50() {
    let Some(dir) = data_dir() else { return };
    let tape = TempPath::new("aapl50.tape");
    let (stats, info) = import(
        &dir.join("lobster/AAPL_2012-06-21_34200000_37800000_message_50.csv"),
        None,
        &tape.0,
    )
    .unwrap();
    assert_eq!(stats.events, 91_997);
    assert_eq!(info.event_count, 91_997);
    assert_eq!(
        info.counts_per_type,
        vec![44_256, 469, 41_004, 4_067, 2_201, 0, 0]
    );
    let secs = |s: i64| MIDNIGHT_NS + s * 1_000_000_000;
    assert!((secs(34_200)..secs(37_800)).contains(&info.first_ts.unwrap()));
    assert!((secs(34_200)..secs(37_800)).contains(&info.last_ts.unwrap()));
    TapeReader::open(&tape.0).unwrap().verify().unwrap();
}

fn write_input(name: &str, text: &str) -> TempPath {
    let p = TempPath::new(name);
    std::fs::write(&p.0, text).unwrap();
    p
}

#[test]
fn small_file_with_explicit_date_and_halts() {
    let input = write_input(
        "small.csv",
        "36023,7,0,0,-1,-1\r\n36023.5,7,0,0,1,-1\r\n36024.000000001,4,42,100,1234500,-1\r\n",
    );
    let tape = TempPath::new("small.tape");
    let (stats, _) = import(&input.0, Some("1970-01-02"), &tape.0).unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(stats.per_type[6], ("Halt".to_string(), 2));
    let r = TapeReader::open(&tape.0).unwrap();
    let b = r.batches().next().unwrap().unwrap();
    let day = 86_400 * 1_000_000_000;
    assert_eq!(
        b.ts(),
        &[
            day + 36_023_000_000_000,
            day + 36_023_500_000_000,
            day + 36_024_000_000_001
        ]
    );
    assert_eq!(b.type_ids(), &[6, 6, 3]);
    assert_eq!(f64::from_bits(b.event(0).slots[PRICE_SLOT]), -0.0001);
    assert_eq!(f64::from_bits(b.event(2).slots[PRICE_SLOT]), 123.45);
    assert_eq!(b.event(2).slots[SIDE_SLOT], 1);
}

#[test]
fn malformed_lines_name_line_and_column() {
    let tape = TempPath::new("bad.tape");
    let cases = [
        (
            "34200.1,1,1,10,1000,1\n34200.2,9,1,10,1000,1\n",
            "2:2",
            "type",
        ),
        (
            "34200.1,1,1,10,1000,1\n34200.2,1,1,10,1000,1\nabc,1,1,10,1000,1\n",
            "3:1",
            "time",
        ),
        ("34200.1,1,1,10,1000,0\n", "1:6", "direction"),
        ("34200.1,1,x,10,1000,1\n", "1:3", "order_id"),
        ("34200.1,1,1,10,10.5,1\n", "1:5", "price"),
    ];
    for (i, (text, at, field)) in cases.iter().enumerate() {
        let input = write_input(&format!("bad{i}.csv"), text);
        let err = import(&input.0, Some("2012-06-21"), &tape.0).unwrap_err();
        assert!(matches!(err, ImportError::Value { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}:{at}: field `{field}`", input.0.display())),
            "{msg}"
        );
    }
    let input = write_input("cols.csv", "34200.1,1,1,10,1000,1\n34200.2,1,1,10,1000\n");
    let err = import(&input.0, Some("2012-06-21"), &tape.0).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Columns {
                line: 2,
                expected: 6,
                found: 5,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn date_is_required_when_the_name_has_none() {
    let tape = TempPath::new("nodate.tape");
    let input = write_input("no-date.csv", "34200.1,1,1,10,1000,1\n");
    let err = import(&input.0, None, &tape.0).unwrap_err();
    assert!(matches!(err, ImportError::NoDate { .. }), "{err:?}");
    assert!(err.to_string().contains("--date"), "{err}");
    let err = import(&input.0, Some("2012-02-30"), &tape.0).unwrap_err();
    assert!(matches!(err, ImportError::BadDate { .. }), "{err:?}");
    let dated = write_input("MSFT_2012-06-21_x_message_1.csv", "34200.1,1,1,10,1000,1\n");
    let (stats, info) = import(&dated.0, None, &tape.0).unwrap();
    assert_eq!(stats.events, 1);
    assert_eq!(info.first_ts, Some(MIDNIGHT_NS + 34_200_100_000_000));
}

#[test]
fn writer_must_use_the_lobster_catalog() {
    let tape = TempPath::new("wrongcat.tape");
    let input = write_input("wc.csv", "34200.1,1,1,10,1000,1\n");
    let mut w = TapeWriter::create(&tape.0, &cep_core::Catalog::new(), &[], "").unwrap();
    let err = import_lobster(
        &input.0,
        "X",
        Some("2012-06-21"),
        &mut w,
        &mut SymbolTable::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImportError::CatalogMismatch { .. }),
        "{err:?}"
    );
}

fn write_zip(name: &str, entries: &[(&str, &str)]) -> TempPath {
    use std::io::Write;
    let p = TempPath::new(name);
    let mut zw = zip::ZipWriter::new(std::fs::File::create(&p.0).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (n, text) in entries {
        zw.start_file(*n, opts).unwrap();
        zw.write_all(text.as_bytes()).unwrap();
    }
    zw.finish().unwrap();
    p
}

#[test]
fn zip_needs_exactly_one_message_entry() {
    let tape = TempPath::new("zip.tape");
    let row = "34200.1,1,1,10,1000,1\n";
    let none = write_zip("none.zip", &[("X_2012-06-21_orderbook_1.csv", row)]);
    let err = import(&none.0, None, &tape.0).unwrap_err();
    assert!(matches!(err, ImportError::Zip { .. }), "{err:?}");
    assert!(
        err.to_string().contains("X_2012-06-21_orderbook_1.csv"),
        "{err}"
    );
    let two = write_zip(
        "two.zip",
        &[
            ("A_2012-06-21_message_1.csv", row),
            ("B_2012-06-21_message_1.csv", row),
        ],
    );
    let err = import(&two.0, None, &tape.0).unwrap_err();
    assert!(err.to_string().contains("several message entries"), "{err}");
    // The date may come from the entry name when the archive's name has none.
    let one = write_zip(
        "one.zip",
        &[("A_2012-06-21_message_1.csv", row), ("readme.txt", "hi")],
    );
    let (stats, info) = import(&one.0, None, &tape.0).unwrap();
    assert_eq!(stats.events, 1);
    assert_eq!(info.first_ts, Some(MIDNIGHT_NS + 34_200_100_000_000));
    // Errors inside an archive name the entry.
    let bad = write_zip(
        "bad.zip",
        &[(
            "A_2012-06-21_message_1.csv",
            "34200.1,1,1,10,1000,1\n1,1,1,1,1,2\n",
        )],
    );
    let msg = import(&bad.0, None, &tape.0).unwrap_err().to_string();
    assert!(
        msg.contains("A_2012-06-21_message_1.csv:2:6: field `direction`"),
        "{msg}"
    );
    let notzip = write_input("fake.zip", "hello");
    assert!(matches!(
        import(&notzip.0, Some("2012-06-21"), &tape.0),
        Err(ImportError::Zip { .. })
    ));
}
