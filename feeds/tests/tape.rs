//! Tape format v1: round trips, block boundaries, truncation and corruption diagnostics.

use cep_core::event::{Event, Label};
use cep_core::schema::FieldType;
use cep_core::{Catalog, EventBatch, SymbolTable};
use feeds::tape::{RECORDS_PER_BLOCK, TapeError, TapeReader, TapeWriter};

mod common;
use common::TempPath;

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    c.add_type(
        "Order",
        &[
            ("sym", FieldType::Sym),
            ("price", FieldType::F64),
            ("qty", FieldType::I64),
            ("side", FieldType::Enum(0)),
        ],
    )
    .unwrap();
    c.add_type(
        "Trade",
        &[
            ("sym", FieldType::Sym),
            ("price", FieldType::F64),
            ("qty", FieldType::I64),
        ],
    )
    .unwrap();
    c.add_type("Heartbeat", &[]).unwrap();
    c.add_type(
        "Flag",
        &[
            ("ok", FieldType::Bool),
            ("at", FieldType::Ts),
            ("n", FieldType::U64),
        ],
    )
    .unwrap();
    c
}

fn label_names() -> Vec<String> {
    vec!["none".into(), "spoof".into(), "wash".into()]
}

/// Deterministic event `i` (slots padded to 4, the catalog's slot count).
fn event(i: u64, labelled: bool) -> Event {
    let type_id = (i % 4) as u16;
    let slots = match type_id {
        0 => vec![
            i % 3,
            (100.0 + i as f64 * 0.01).to_bits(),
            (i as i64 - 50) as u64,
            i % 2,
        ],
        1 => vec![i % 3, (99.5 - i as f64 * 0.25).to_bits(), i * 10, 0],
        2 => vec![0, 0, 0, 0],
        _ => vec![
            i % 2,
            (1_700_000_000_000_000_000i64 + i as i64) as u64,
            u64::MAX - i,
            0,
        ],
    };
    let label = if labelled && i.is_multiple_of(7) {
        Label {
            class: 1 + (i % 2) as u16,
            instance: (i / 7) as u32 + 1,
        }
    } else {
        Label::default()
    };
    Event {
        seq: i,
        ts: 1_340_000_000_000_000_000 + i as i64 * 1_000,
        type_id,
        label,
        slots,
    }
}

fn symbols() -> SymbolTable {
    let mut s = SymbolTable::new();
    for n in ["AAPL", "MSFT", "GOOG"] {
        s.intern(n);
    }
    s
}

/// Writes `n` events (with labels when `labelled`) and returns the path guard.
fn write_tape(name: &str, n: u64, labelled: bool) -> TempPath {
    let path = TempPath::new(name);
    let names = if labelled { label_names() } else { Vec::new() };
    let mut w = TapeWriter::create(&path.0, &catalog(), &names, "test").unwrap();
    for i in 0..n {
        let e = event(i, labelled);
        // Trim trailing zero slots sometimes to exercise zero fill.
        let slots = if i.is_multiple_of(5) {
            &e.slots[..catalog().event_type(e.type_id).unwrap().fields.len()]
        } else {
            &e.slots[..]
        };
        assert_eq!(w.push(e.ts, e.type_id, e.label, slots).unwrap(), i);
    }
    let info = w.finish(&symbols()).unwrap();
    assert_eq!(info.event_count, n);
    assert_eq!(info.file_size, std::fs::metadata(&path.0).unwrap().len());
    path
}

fn read_all(r: &TapeReader) -> Vec<Event> {
    let mut out = Vec::new();
    for b in r.batches() {
        let b = b.unwrap();
        out.extend((0..b.len()).map(|i| b.event(i)));
    }
    out
}

#[test]
fn round_trip_at_block_boundaries() {
    for n in [1u64, 2, 4095, 4096, 4097, 8192, 10_000] {
        let labelled = n.is_multiple_of(2);
        let path = write_tape("rt", n, labelled);
        let r = TapeReader::open(&path.0).unwrap();
        let info = r.info().clone();
        assert_eq!(info.version, 1);
        assert_eq!(info.event_count, n);
        assert_eq!(info.slot_count, 4);
        assert_eq!(info.source, "test");
        assert_eq!(info.block_count, n.div_ceil(RECORDS_PER_BLOCK as u64));
        assert_eq!(r.block_count() as u64, info.block_count);
        assert_eq!(info.first_ts, Some(event(0, labelled).ts));
        assert_eq!(info.last_ts, Some(event(n - 1, labelled).ts));
        let mut counts = vec![0u64; 4];
        for i in 0..n {
            counts[(i % 4) as usize] += 1;
        }
        assert_eq!(info.counts_per_type, counts);
        assert_eq!(r.has_labels(), labelled, "n = {n}");
        assert_eq!(info.has_labels, labelled);
        if labelled {
            assert_eq!(r.label_names(), label_names().as_slice());
        } else {
            assert_eq!(r.label_names(), ["none".to_string()].as_slice());
        }
        assert_eq!(r.catalog(), &catalog());
        assert_eq!(r.symbols().names(), symbols().names());
        assert_eq!(r.symbols().lookup("GOOG"), Some(2));

        let events = read_all(&r);
        assert_eq!(events.len() as u64, n);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e, &event(i as u64, labelled), "event {i} of {n}");
        }
        // Block sizes: full blocks, then the remainder.
        for b in 0..r.block_count() {
            let expect = (n as usize - b * RECORDS_PER_BLOCK).min(RECORDS_PER_BLOCK);
            assert_eq!(r.block_len(b), expect);
        }
        r.verify().unwrap();
    }
}

#[test]
fn read_block_reuses_and_resets_batches() {
    let path = write_tape("reuse", 5000, false);
    let r = TapeReader::open(&path.0).unwrap();
    let mut batch = EventBatch::new(1); // wrong slot count: reset
    r.read_block(1, &mut batch).unwrap();
    assert_eq!(batch.slot_count(), 4);
    assert_eq!(batch.len(), 5000 - 4096);
    assert_eq!(batch.seq()[0], 4096);
    r.read_block(0, &mut batch).unwrap();
    assert_eq!(batch.len(), 4096);
    assert_eq!(batch.event(4095), event(4095, false));
    let err = r.read_block(2, &mut batch).unwrap_err();
    assert!(
        matches!(
            err,
            TapeError::NoSuchBlock {
                index: 2,
                block_count: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_tape() {
    let path = write_tape("empty", 0, false);
    let r = TapeReader::open(&path.0).unwrap();
    let info = r.info();
    assert_eq!(info.event_count, 0);
    assert_eq!(info.block_count, 0);
    assert_eq!(info.first_ts, None);
    assert_eq!(info.last_ts, None);
    assert_eq!(info.counts_per_type, vec![0; 4]);
    assert_eq!(r.batches().count(), 0);
    r.verify().unwrap();
}

#[test]
fn empty_catalog_tape() {
    let path = TempPath::new("nocat");
    let w = TapeWriter::create(&path.0, &Catalog::new(), &[], "").unwrap();
    w.finish(&SymbolTable::new()).unwrap();
    let r = TapeReader::open(&path.0).unwrap();
    assert_eq!(r.info().slot_count, 0);
    assert_eq!(r.info().event_count, 0);
}

#[test]
fn push_batch_reassigns_seqs() {
    let path = TempPath::new("batch");
    let mut w = TapeWriter::create(&path.0, &catalog(), &label_names(), "batch").unwrap();
    w.push(5, 2, Label::default(), &[]).unwrap();
    let mut batch = EventBatch::new(4);
    for i in 0..5000u64 {
        let mut e = event(i, true);
        e.seq = 1_000_000 + i; // ignored
        batch.push_event(&e);
    }
    w.push_batch(&batch).unwrap();
    // A batch with more columns than the tape is fine while the extra columns are zero.
    let mut wide = EventBatch::new(6);
    wide.push(0, 7, 1, Label::default(), &[1, 2, 3]);
    w.push_batch(&wide).unwrap();
    let mut bad = EventBatch::new(6);
    bad.push(0, 7, 1, Label::default(), &[1, 2, 3, 4, 5, 6]);
    assert!(matches!(
        w.push_batch(&bad),
        Err(TapeError::TooManySlots { .. })
    ));
    assert_eq!(w.event_count(), 5002);
    w.finish(&symbols()).unwrap();

    let r = TapeReader::open(&path.0).unwrap();
    let events = read_all(&r);
    assert_eq!(events.len(), 5002);
    assert_eq!(events[0].ts, 5);
    for i in 0..5000u64 {
        let mut e = event(i, true);
        e.seq = i + 1;
        assert_eq!(events[i as usize + 1], e);
    }
    assert_eq!(events[5001].slots, vec![1, 2, 3, 0]);
    assert_eq!(events[5001].seq, 5001);
    r.verify().unwrap();
}

#[test]
fn push_rejects_bad_events() {
    let path = TempPath::new("bad");
    let mut w = TapeWriter::create(&path.0, &catalog(), &label_names(), "").unwrap();
    let e = w.push(0, 4, Label::default(), &[]).unwrap_err();
    assert!(
        matches!(
            e,
            TapeError::UnknownType {
                type_id: 4,
                type_count: 4,
                seq: 0,
                ..
            }
        ),
        "{e}"
    );
    let e = w.push(0, 0, Label::default(), &[0; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            TapeError::TooManySlots {
                given: 5,
                slot_count: 4,
                ..
            }
        ),
        "{e}"
    );
    let e = w
        .push(
            0,
            0,
            Label {
                class: 3,
                instance: 1,
            },
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            TapeError::UnknownLabelClass {
                class: 3,
                label_count: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("label class 3"), "{e}");
    assert_eq!(
        w.push(
            0,
            0,
            Label {
                class: 2,
                instance: 1
            },
            &[]
        )
        .unwrap(),
        0
    );
}

#[test]
fn unfinished_tape_is_reported() {
    let path = TempPath::new("unfinished");
    let mut w = TapeWriter::create(&path.0, &catalog(), &[], "").unwrap();
    for i in 0..5000 {
        let e = event(i, false);
        w.push(e.ts, e.type_id, e.label, &e.slots).unwrap();
    }
    drop(w);
    let err = TapeReader::open(&path.0).unwrap_err();
    assert!(matches!(err, TapeError::NotFinished { .. }), "{err}");
    assert!(err.to_string().contains("not finished"), "{err}");
}

fn meta_range(bytes: &[u8]) -> (usize, usize) {
    let off = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
    (off, len)
}

#[test]
fn truncation_anywhere_names_an_offset() {
    let path = write_tape("trunc", 9000, true); // blocks of 4096, 4096, 808
    let bytes = std::fs::read(&path.0).unwrap();
    let (meta_off, meta_len) = meta_range(&bytes);
    assert_eq!(meta_off + meta_len, bytes.len());
    let width = 16 + 8 * 4;
    let block_size = 32 + RECORDS_PER_BLOCK * width;
    let blocks = [64, 64 + block_size, 64 + 2 * block_size];

    let mut cuts: Vec<usize> = (0..=80).collect();
    for &b in &blocks {
        cuts.extend([
            b - 1,
            b,
            b + 1,
            b + 4,
            b + 16,
            b + 31,
            b + 32,
            b + 33,
            b + 32 + width,
            b + 1000,
        ]);
    }
    cuts.extend((0..bytes.len()).step_by(9973));
    cuts.extend(meta_off - 1..=meta_off + 3);
    cuts.extend([meta_off + meta_len / 2, bytes.len() - 2, bytes.len() - 1]);

    let cut_path = TempPath::new("cut");
    for cut in cuts {
        std::fs::write(&cut_path.0, &bytes[..cut]).unwrap();
        let err = match TapeReader::open(&cut_path.0) {
            Ok(_) => panic!("cut at {cut} opened"),
            Err(e) => e,
        };
        let msg = err.to_string();
        match &err {
            TapeError::Truncated {
                offset,
                needed,
                file_size,
                ..
            } => {
                assert_eq!(*file_size, cut as u64, "{msg}");
                assert!(
                    *offset <= cut as u64 && offset + needed > cut as u64,
                    "cut {cut}: {msg}"
                );
                assert!(msg.contains(&format!("byte offset {offset}")), "{msg}");
                assert!(msg.contains(&format!("the file ends at {cut}")), "{msg}");
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
        // Where the cut falls decides what is named.
        if cut < 64 {
            assert!(
                msg.contains("header at byte offset 0 needs 64 bytes"),
                "{msg}"
            );
        } else if let Some(i) = blocks.iter().rposition(|&b| cut >= b && cut < b + 32) {
            assert!(
                msg.contains(&format!("header of block {i} at byte offset {}", blocks[i])),
                "{msg}"
            );
        } else if cut < meta_off {
            let i = blocks.iter().rposition(|&b| cut >= b).unwrap();
            assert!(
                msg.contains(&format!("block {i} at byte offset {} needs", blocks[i])),
                "{msg}"
            );
        } else {
            assert!(
                msg.contains(&format!(
                    "meta section at byte offset {meta_off} needs {meta_len}"
                )),
                "{msg}"
            );
        }
    }
    // Example message.
    std::fs::write(&cut_path.0, &bytes[..blocks[1] + 100]).unwrap();
    let msg = TapeReader::open(&cut_path.0).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "tape {} is truncated: block 1 at byte offset {} needs {block_size} bytes but the file ends at {}",
            cut_path.0.display(),
            blocks[1],
            blocks[1] + 100
        )
    );
}

#[test]
fn flipped_payload_byte_names_the_block() {
    let path = write_tape("flip", 9000, false);
    let mut bytes = std::fs::read(&path.0).unwrap();
    let width = 16 + 8 * 4;
    let block1 = 64 + 32 + RECORDS_PER_BLOCK * width;
    bytes[block1 + 32 + 777] ^= 0x40;
    std::fs::write(&path.0, &bytes).unwrap();

    let r = TapeReader::open(&path.0).unwrap(); // payload checksums are not checked up front
    assert_eq!(r.block_offset(1), Some(block1 as u64));
    let mut batch = EventBatch::new(4);
    r.read_block(0, &mut batch).unwrap();
    r.read_block(2, &mut batch).unwrap();
    let err = r.read_block(1, &mut batch).unwrap_err();
    assert!(
        matches!(err, TapeError::Corrupt { offset, block: Some(1), .. } if offset == block1 as u64),
        "{err:?}"
    );
    let expect = format!(
        "tape {} is corrupt: block 1 at byte offset {block1}: payload checksum mismatch",
        path.0.display()
    );
    assert_eq!(err.to_string(), expect);
    assert_eq!(r.verify().unwrap_err().to_string(), expect);
    assert_eq!(r.batches().filter(Result::is_err).count(), 1);
}

#[test]
fn corrupt_block_header_is_caught_at_open() {
    let path = write_tape("bhdr", 9000, false);
    let pristine = std::fs::read(&path.0).unwrap();
    let width = 16 + 8 * 4;
    let block2 = 64 + 2 * (32 + RECORDS_PER_BLOCK * width);
    for (field, at) in [
        ("magic", 0),
        ("n_records", 4),
        ("first_seq", 8),
        ("payload_len", 16),
    ] {
        let mut bytes = pristine.clone();
        bytes[block2 + at] ^= 0x01;
        std::fs::write(&path.0, &bytes).unwrap();
        let err = TapeReader::open(&path.0).unwrap_err();
        assert!(
            matches!(err, TapeError::Corrupt { offset, block: Some(2), .. } if offset == block2 as u64),
            "{field}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("block 2 at byte offset {block2}")),
            "{err}"
        );
    }
    // A flipped stored checksum shows up when the block is read.
    let mut bytes = pristine.clone();
    bytes[block2 + 20] ^= 0x01;
    std::fs::write(&path.0, &bytes).unwrap();
    let r = TapeReader::open(&path.0).unwrap();
    assert!(
        r.verify()
            .unwrap_err()
            .to_string()
            .contains("payload checksum mismatch")
    );
}

#[test]
fn flipped_meta_byte_is_an_error() {
    let path = write_tape("meta", 100, true);
    let pristine = std::fs::read(&path.0).unwrap();
    let (meta_off, meta_len) = meta_range(&pristine);
    for at in [0, 1, meta_len / 2, meta_len - 1] {
        let mut bytes = pristine.clone();
        bytes[meta_off + at] ^= 0x20;
        std::fs::write(&path.0, &bytes).unwrap();
        let err = TapeReader::open(&path.0).unwrap_err();
        assert!(
            matches!(err, TapeError::Corrupt { offset, .. } if offset == meta_off as u64),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!(
                "byte offset {meta_off}: meta section checksum mismatch"
            )),
            "{err}"
        );
    }
    // Valid checksum over invalid JSON: a Meta error.
    let mut bytes = pristine.clone();
    bytes[meta_off] = b'[';
    let crc = crc32fast::hash(&bytes[meta_off..]);
    bytes[48..52].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path.0, &bytes).unwrap();
    let err = TapeReader::open(&path.0).unwrap_err();
    assert!(
        matches!(err, TapeError::Meta { offset, .. } if offset == meta_off as u64),
        "{err:?}"
    );
}

#[test]
fn garbage_and_foreign_headers() {
    let path = TempPath::new("garbage");
    for content in [
        &b"hello, world"[..],
        &[0u8; 4096][..],
        b"abc",
        b"PK\x03\x04 this is a zip, not a tape....................................",
    ] {
        std::fs::write(&path.0, content).unwrap();
        let err = TapeReader::open(&path.0).unwrap_err();
        assert!(matches!(err, TapeError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains("not a Strix tape"), "{err}");
    }
    let tape = write_tape("version", 10, false);
    let mut bytes = std::fs::read(&tape.0).unwrap();
    bytes[8] = 2;
    std::fs::write(&tape.0, &bytes).unwrap();
    let err = TapeReader::open(&tape.0).unwrap_err();
    assert!(
        matches!(err, TapeError::UnsupportedVersion { version: 2, .. }),
        "{err:?}"
    );
    let missing = TempPath::new("missing");
    assert!(matches!(
        TapeReader::open(&missing.0),
        Err(TapeError::Io { .. })
    ));
}
