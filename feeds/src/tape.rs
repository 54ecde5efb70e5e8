//! The `.tape` format, version 1: a recorded event stream that replays by memory-mapping.
//!
//! Input: events from a decoder or generator ([`TapeWriter::push`], [`TapeWriter::push_batch`]).
//! Output: a file that [`TapeReader`] maps (memmap2) and decodes block by block into
//! [`EventBatch`]es in sequence order. Next stage: a matcher (replay).
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//! offset 0   fixed header, 64 bytes
//!            magic  b"STRXTAPE"        [0..8)
//!            version u16 = 1           [8..10)
//!            flags u16 (bit0 has_labels) [10..12)
//!            record_width u32          [12..16)   = 16 + 8 * slot_count
//!            slot_count u32            [16..20)
//!            reserved u32              [20..24)
//!            event_count u64           [24..32)
//!            meta_offset u64           [32..40)   0 until the writer finishes
//!            meta_len u64              [40..48)
//!            meta_crc32 u32            [48..52)
//!            zero padding              [52..64)
//! offset 64  blocks, back to back, each:
//!            block header, 32 bytes:  magic u32 = 0x4B4C4253 ("SBLK"), n_records u32,
//!                                     first_seq u64, payload_len u32, payload_crc32 u32,
//!                                     reserved u64
//!            payload: n_records records of record_width bytes:
//!                                     ts i64, label instance u32, type_id u16, label class u16,
//!                                     slot_count u64 slots
//! meta_offset  meta section: JSON (catalog, symbols, label names, per-type counts, first and
//!              last event time, source text, block offsets); its CRC-32 is in the header.
//! ```
//!
//! Sequence numbers are implicit: record `i` of a block has seq `first_seq + i`, and seqs run
//! `0..event_count` without gaps across blocks. The writer puts a placeholder header first and
//! rewrites it in [`TapeWriter::finish`], so a tape whose writer never finished has
//! `meta_offset == 0` and is reported as [`TapeError::NotFinished`].
//!
//! Opening a tape checks the header, the meta section (checksum and JSON) and every block header;
//! payload checksums are checked when a block is read ([`TapeReader::read_block`]) or by
//! [`TapeReader::verify`]. Every truncation or corruption error names the byte offset.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cep_core::event::Label;
use cep_core::schema::MAX_FIELDS;
use cep_core::{Catalog, EventBatch, SymbolTable, TypeId};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

/// File magic, the first 8 bytes of every tape.
pub const MAGIC: [u8; 8] = *b"STRXTAPE";
/// The format version this module writes and reads.
pub const VERSION: u16 = 1;
/// Length of the fixed file header in bytes.
pub const HEADER_LEN: usize = 64;
/// Magic of a block header (`"SBLK"` as little-endian bytes).
pub const BLOCK_MAGIC: u32 = 0x4B4C_4253;
/// Length of a block header in bytes.
pub const BLOCK_HEADER_LEN: usize = 32;
/// Most records the writer puts in one block (readers accept any block size).
pub const RECORDS_PER_BLOCK: usize = 4096;
/// Bytes of a record before its slots: ts, label instance, type id, label class.
pub const RECORD_HEADER_LEN: usize = 16;
/// Header flag bit: events carry ground-truth labels.
pub const FLAG_HAS_LABELS: u16 = 1;

const BLOCK_HEADER_LEN_U64: u64 = BLOCK_HEADER_LEN as u64;
const HEADER_LEN_U64: u64 = HEADER_LEN as u64;

/// Errors writing or reading a tape. Messages name the tape and, for truncation and corruption,
/// the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// The operating system refused a read, write, open or map.
    #[error("I/O error on tape {}: {source}", .path.display())]
    Io {
        /// The tape.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with `STRXTAPE`.
    #[error("{} is not a Strix tape (bad magic; expected the file to start with \"STRXTAPE\")", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The tape was written by a newer (or unknown) format version.
    #[error("tape {} has format version {version}; this build reads version {VERSION}", .path.display())]
    UnsupportedVersion {
        /// The tape.
        path: PathBuf,
        /// Version found in the header.
        version: u16,
    },
    /// The writer stopped before [`TapeWriter::finish`] (the header has no meta section).
    #[error("tape {} was not finished: the writer stopped before writing the meta section (header meta_offset is 0)", .path.display())]
    NotFinished {
        /// The tape.
        path: PathBuf,
    },
    /// The file ends before a part it declares.
    #[error(
        "tape {} is truncated: {} needs {needed} bytes but the file ends at {file_size}",
        .path.display(),
        Locate(.what, *.block, *.offset)
    )]
    Truncated {
        /// The tape.
        path: PathBuf,
        /// Byte offset where the cut part starts.
        offset: u64,
        /// Bytes that part needs from `offset`.
        needed: u64,
        /// Actual file size.
        file_size: u64,
        /// The block the part belongs to, if any.
        block: Option<u64>,
        /// The part: `"header"`, `"block"`, `"block header"`, `"meta section"`.
        what: &'static str,
    },
    /// A part of the file is inconsistent (checksum, magic, sizes, sequence numbers).
    #[error("tape {} is corrupt: {}: {what}", .path.display(), Locate("", *.block, *.offset))]
    Corrupt {
        /// The tape.
        path: PathBuf,
        /// Byte offset of the corrupt part.
        offset: u64,
        /// The block, if the corruption is inside one.
        block: Option<u64>,
        /// What is wrong.
        what: String,
    },
    /// The meta section is not valid JSON of the expected shape, or disagrees with the header.
    #[error("tape {}: meta section at byte offset {offset} is invalid: {message}", .path.display())]
    Meta {
        /// The tape.
        path: PathBuf,
        /// Byte offset of the meta section.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The catalog or label names cannot be stored (too many slots or label classes).
    #[error("tape {}: {message}", .path.display())]
    Schema {
        /// The tape.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An event was pushed with a type id the tape's catalog lacks.
    #[error("tape {}: event seq {seq} has type id {type_id}, but the catalog has {type_count} types", .path.display())]
    UnknownType {
        /// The tape.
        path: PathBuf,
        /// Sequence number the event would have had.
        seq: u64,
        /// The offending type id.
        type_id: TypeId,
        /// Types in the catalog.
        type_count: usize,
    },
    /// An event was pushed with more slots than the tape's records hold.
    #[error("tape {}: event seq {seq} (type id {type_id}) has {given} slots, but records hold {slot_count}", .path.display())]
    TooManySlots {
        /// The tape.
        path: PathBuf,
        /// Sequence number the event would have had.
        seq: u64,
        /// The event's type id.
        type_id: TypeId,
        /// Slots given.
        given: usize,
        /// Slots per record.
        slot_count: usize,
    },
    /// An event was pushed with a label class that has no name.
    #[error("tape {}: event seq {seq} has label class {class}, but only {label_count} label names were given", .path.display())]
    UnknownLabelClass {
        /// The tape.
        path: PathBuf,
        /// Sequence number the event would have had.
        seq: u64,
        /// The offending class.
        class: u16,
        /// Label names known (class ids `0..label_count`).
        label_count: usize,
    },
    /// [`TapeReader::read_block`] was asked for a block past the end.
    #[error("tape {}: no block {index} (the tape has {block_count})", .path.display())]
    NoSuchBlock {
        /// The tape.
        path: PathBuf,
        /// Requested index.
        index: usize,
        /// Blocks in the tape.
        block_count: usize,
    },
}

/// Renders "block 3 at byte offset N", "header of block 3 at byte offset N", "meta section at
/// byte offset N" or "byte offset N".
struct Locate<'a>(&'a str, Option<u64>, u64);

impl fmt::Display for Locate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Locate(what, block, offset) = *self;
        match (what, block) {
            ("" | "block", Some(b)) => write!(f, "block {b} at byte offset {offset}"),
            ("block header", Some(b)) => write!(f, "header of block {b} at byte offset {offset}"),
            (w, Some(b)) => write!(f, "{w} of block {b} at byte offset {offset}"),
            ("", None) => write!(f, "byte offset {offset}"),
            (w, None) => write!(f, "{w} at byte offset {offset}"),
        }
    }
}

/// Summary of a tape: what `strix tape info` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TapeInfo {
    /// Format version.
    pub version: u16,
    /// Number of events (seqs are `0..event_count`).
    pub event_count: u64,
    /// 64-bit slots per record.
    pub slot_count: u32,
    /// Whether events carry ground-truth labels.
    pub has_labels: bool,
    /// Events per type id (index = type id).
    pub counts_per_type: Vec<u64>,
    /// Event time of the first event in sequence order (ns since the UNIX epoch).
    pub first_ts: Option<i64>,
    /// Event time of the last event in sequence order (ns since the UNIX epoch).
    pub last_ts: Option<i64>,
    /// Number of blocks.
    pub block_count: u64,
    /// Free text saying where the events came from.
    pub source: String,
    /// File size in bytes.
    pub file_size: u64,
}

/// The meta section as stored (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    catalog: Catalog,
    symbols: Vec<String>,
    label_names: Vec<String>,
    counts_per_type: Vec<u64>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    block_count: u64,
    source: String,
    block_offsets: Vec<u64>,
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, Default)]
struct Header {
    version: u16,
    flags: u16,
    record_width: u32,
    slot_count: u32,
    event_count: u64,
    meta_offset: u64,
    meta_len: u64,
    meta_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        h[10..12].copy_from_slice(&self.flags.to_le_bytes());
        h[12..16].copy_from_slice(&self.record_width.to_le_bytes());
        h[16..20].copy_from_slice(&self.slot_count.to_le_bytes());
        h[24..32].copy_from_slice(&self.event_count.to_le_bytes());
        h[32..40].copy_from_slice(&self.meta_offset.to_le_bytes());
        h[40..48].copy_from_slice(&self.meta_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.meta_crc.to_le_bytes());
        h
    }

    /// Decodes the fields after the magic; `h` must hold at least [`HEADER_LEN`] bytes.
    fn decode(h: &[u8]) -> Self {
        Self {
            version: le_u16(h, 8),
            flags: le_u16(h, 10),
            record_width: le_u32(h, 12),
            slot_count: le_u32(h, 16),
            event_count: le_u64(h, 24),
            meta_offset: le_u64(h, 32),
            meta_len: le_u64(h, 40),
            meta_crc: le_u32(h, 48),
        }
    }
}

/// A block header, decoded.
#[derive(Debug, Clone, Copy)]
struct BlockHeader {
    magic: u32,
    n_records: u32,
    first_seq: u64,
    payload_len: u32,
    payload_crc: u32,
}

impl BlockHeader {
    fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut h = [0u8; BLOCK_HEADER_LEN];
        h[0..4].copy_from_slice(&self.magic.to_le_bytes());
        h[4..8].copy_from_slice(&self.n_records.to_le_bytes());
        h[8..16].copy_from_slice(&self.first_seq.to_le_bytes());
        h[16..20].copy_from_slice(&self.payload_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.payload_crc.to_le_bytes());
        h
    }

    /// Decodes a block header starting at `at`; the caller checks that 32 bytes are there.
    fn decode(b: &[u8], at: usize) -> Self {
        Self {
            magic: le_u32(b, at),
            n_records: le_u32(b, at + 4),
            first_seq: le_u64(b, at + 8),
            payload_len: le_u32(b, at + 16),
            payload_crc: le_u32(b, at + 20),
        }
    }
}

// Little-endian reads at a byte offset. Callers check bounds first; an out-of-range read yields 0
// rather than panicking.
fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at.saturating_add(2))
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Writes a tape: buffered, one block of records accumulated in memory at a time.
///
/// Push events in sequence order (seqs are assigned `0, 1, 2, ...`), then call
/// [`TapeWriter::finish`]. After any error the writer should be dropped: the file is left
/// unfinished and readers report [`TapeError::NotFinished`].
#[derive(Debug)]
pub struct TapeWriter {
    path: PathBuf,
    out: BufWriter<File>,
    catalog: Catalog,
    label_names: Vec<String>,
    source: String,
    slot_count: usize,
    type_count: usize,
    /// Payload of the block being filled.
    block: Vec<u8>,
    block_records: u32,
    block_first_seq: u64,
    next_seq: u64,
    /// File offset where the next block goes.
    offset: u64,
    block_offsets: Vec<u64>,
    counts_per_type: Vec<u64>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    any_label: bool,
    /// Row buffer for [`TapeWriter::push_batch`].
    scratch: Vec<u64>,
}

impl TapeWriter {
    /// Creates (or truncates) `path` and writes a placeholder header.
    ///
    /// `label_names[c]` names label class `c`; class 0 means "unlabelled" (an empty list is
    /// stored as `["none"]`). `source` is free text recorded in the meta section.
    pub fn create(
        path: &Path,
        catalog: &Catalog,
        label_names: &[String],
        source: &str,
    ) -> Result<Self, TapeError> {
        let slot_count = catalog.slot_count();
        if slot_count > MAX_FIELDS {
            return Err(TapeError::Schema {
                path: path.to_path_buf(),
                message: format!(
                    "the catalog needs {slot_count} slots per record; at most {MAX_FIELDS} are supported"
                ),
            });
        }
        if label_names.len() > usize::from(u16::MAX) + 1 {
            return Err(TapeError::Schema {
                path: path.to_path_buf(),
                message: format!(
                    "{} label names given; at most 65536 classes are supported",
                    label_names.len()
                ),
            });
        }
        let label_names = if label_names.is_empty() {
            vec!["none".to_owned()]
        } else {
            label_names.to_vec()
        };
        let io_err = |source| TapeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let record_width = record_width(slot_count);
        let placeholder = Header {
            version: VERSION,
            // Both fit: slot_count <= MAX_FIELDS was checked above.
            record_width: record_width as u32,
            slot_count: slot_count as u32,
            ..Header::default()
        };
        out.write_all(&placeholder.encode()).map_err(io_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            type_count: catalog.types().len(),
            counts_per_type: vec![0; catalog.types().len()],
            catalog: catalog.clone(),
            label_names,
            source: source.to_owned(),
            slot_count,
            block: Vec::with_capacity(RECORDS_PER_BLOCK * record_width),
            block_records: 0,
            block_first_seq: 0,
            next_seq: 0,
            offset: HEADER_LEN_U64,
            block_offsets: Vec::new(),
            first_ts: None,
            last_ts: None,
            any_label: false,
            scratch: vec![0; slot_count],
        })
    }

    /// The catalog events are written against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events pushed so far (also the seq the next event gets).
    pub fn event_count(&self) -> u64 {
        self.next_seq
    }

    /// Appends one event and returns its seq. Slots past `slots.len()` are zero; more slots than
    /// the tape's `slot_count`, an unknown type id or an unnamed label class are errors.
    #[inline]
    pub fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<u64, TapeError> {
        let seq = self.next_seq;
        if usize::from(type_id) >= self.type_count {
            return Err(TapeError::UnknownType {
                path: self.path.clone(),
                seq,
                type_id,
                type_count: self.type_count,
            });
        }
        if slots.len() > self.slot_count {
            return Err(TapeError::TooManySlots {
                path: self.path.clone(),
                seq,
                type_id,
                given: slots.len(),
                slot_count: self.slot_count,
            });
        }
        if usize::from(label.class) >= self.label_names.len() {
            return Err(TapeError::UnknownLabelClass {
                path: self.path.clone(),
                seq,
                class: label.class,
                label_count: self.label_names.len(),
            });
        }
        let b = &mut self.block;
        b.extend_from_slice(&ts.to_le_bytes());
        b.extend_from_slice(&label.instance.to_le_bytes());
        b.extend_from_slice(&type_id.to_le_bytes());
        b.extend_from_slice(&label.class.to_le_bytes());
        for s in slots {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b.resize(b.len() + 8 * (self.slot_count - slots.len()), 0);

        if let Some(c) = self.counts_per_type.get_mut(usize::from(type_id)) {
            *c += 1;
        }
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
        }
        self.last_ts = Some(ts);
        self.any_label |= label.class != 0 || label.instance != 0;
        self.next_seq += 1;
        self.block_records += 1;
        if self.block_records as usize >= RECORDS_PER_BLOCK {
            self.flush_block()?;
        }
        Ok(seq)
    }

    /// Appends every row of `batch` in order. The batch's seq column is ignored: rows get the
    /// next seqs of this tape. Slot columns past the tape's `slot_count` must be zero.
    pub fn push_batch(&mut self, batch: &EventBatch) -> Result<(), TapeError> {
        let ncols = batch.slot_count();
        let keep = ncols.min(self.slot_count);
        let mut row = std::mem::take(&mut self.scratch);
        row.resize(keep, 0);
        let ts = batch.ts();
        let types = batch.type_ids();
        let classes = batch.classes();
        let instances = batch.instances();
        let mut result = Ok(());
        for i in 0..batch.len() {
            for (c, r) in row.iter_mut().enumerate() {
                *r = batch.slot_column(c)[i];
            }
            if ncols > keep && (keep..ncols).any(|c| batch.slot_column(c)[i] != 0) {
                result = Err(TapeError::TooManySlots {
                    path: self.path.clone(),
                    seq: self.next_seq,
                    type_id: types[i],
                    given: ncols,
                    slot_count: self.slot_count,
                });
                break;
            }
            let label = Label {
                class: classes[i],
                instance: instances[i],
            };
            if let Err(e) = self.push(ts[i], types[i], label, &row) {
                result = Err(e);
                break;
            }
        }
        self.scratch = row;
        result
    }

    /// Writes the block being filled, if it has records.
    fn flush_block(&mut self) -> Result<(), TapeError> {
        if self.block_records == 0 {
            return Ok(());
        }
        let header = BlockHeader {
            magic: BLOCK_MAGIC,
            n_records: self.block_records,
            first_seq: self.block_first_seq,
            // At most RECORDS_PER_BLOCK * (16 + 8 * MAX_FIELDS) bytes, far below u32::MAX.
            payload_len: self.block.len() as u32,
            payload_crc: crc32fast::hash(&self.block),
        };
        let io_err = |source| TapeError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(&header.encode()).map_err(io_err)?;
        self.out.write_all(&self.block).map_err(io_err)?;
        self.block_offsets.push(self.offset);
        self.offset += BLOCK_HEADER_LEN_U64 + self.block.len() as u64;
        self.block.clear();
        self.block_records = 0;
        self.block_first_seq = self.next_seq;
        Ok(())
    }

    /// Flushes the last block, writes the meta section (with `symbols`, the table every `sym`
    /// slot refers to) and rewrites the header. Does not fsync.
    pub fn finish(mut self, symbols: &SymbolTable) -> Result<TapeInfo, TapeError> {
        self.flush_block()?;
        let has_labels = self.any_label || self.label_names.len() > 1;
        let meta_offset = self.offset;
        let meta = Meta {
            catalog: self.catalog,
            symbols: symbols.names().to_vec(),
            label_names: self.label_names,
            counts_per_type: self.counts_per_type,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            block_count: self.block_offsets.len() as u64,
            source: self.source,
            block_offsets: self.block_offsets,
        };
        let path = self.path;
        let json = serde_json::to_vec(&meta).map_err(|e| TapeError::Meta {
            path: path.clone(),
            offset: meta_offset,
            message: format!("cannot encode: {e}"),
        })?;
        let io_err = |source| TapeError::Io {
            path: path.clone(),
            source,
        };
        self.out.write_all(&json).map_err(io_err)?;
        let header = Header {
            version: VERSION,
            flags: if has_labels { FLAG_HAS_LABELS } else { 0 },
            // Checked against MAX_FIELDS in `create`.
            record_width: record_width(self.slot_count) as u32,
            slot_count: self.slot_count as u32,
            event_count: self.next_seq,
            meta_offset,
            meta_len: json.len() as u64,
            meta_crc: crc32fast::hash(&json),
        };
        self.out.seek(SeekFrom::Start(0)).map_err(io_err)?;
        self.out.write_all(&header.encode()).map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok(TapeInfo {
            version: VERSION,
            event_count: self.next_seq,
            slot_count: header.slot_count,
            has_labels,
            counts_per_type: meta.counts_per_type,
            first_ts: meta.first_ts,
            last_ts: meta.last_ts,
            block_count: meta.block_count,
            source: meta.source,
            file_size: meta_offset + header.meta_len,
        })
    }
}

fn record_width(slot_count: usize) -> usize {
    RECORD_HEADER_LEN + 8 * slot_count
}

/// Where one block lives, from the block index and its header (checked at open).
#[derive(Debug, Clone, Copy)]
struct BlockRef {
    offset: u64,
    n_records: u32,
    first_seq: u64,
    payload_len: u32,
    payload_crc: u32,
}

/// Reads a tape through a memory map of the whole file.
///
/// The file must not be truncated or rewritten by another process while the reader is alive
/// (the map would then fault); tapes are written once and then only read.
#[derive(Debug)]
pub struct TapeReader {
    path: PathBuf,
    map: Mmap,
    slot_count: usize,
    has_labels: bool,
    catalog: Catalog,
    symbols: SymbolTable,
    label_names: Vec<String>,
    blocks: Vec<BlockRef>,
    info: TapeInfo,
}

impl TapeReader {
    /// Opens and validates a tape: header, meta checksum and JSON, and every block header
    /// (magic, sizes, seq continuity, bounds). Payload checksums are checked on read.
    pub fn open(path: &Path) -> Result<Self, TapeError> {
        let p = path.to_path_buf();
        let io_err = |source| TapeError::Io {
            path: p.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len < HEADER_LEN_U64 {
            let mut bytes = Vec::with_capacity(HEADER_LEN);
            file.read_to_end(&mut bytes).map_err(io_err)?;
            let n = bytes.len().min(MAGIC.len());
            if bytes.get(..n) != MAGIC.get(..n) {
                return Err(TapeError::BadMagic { path: p });
            }
            return Err(TapeError::Truncated {
                path: p,
                offset: 0,
                needed: HEADER_LEN_U64,
                file_size: bytes.len() as u64,
                block: None,
                what: "header",
            });
        }
        // SAFETY: the map is read-only and private to this reader. Tapes are immutable once
        // written; a concurrent truncation by another process would fault, which is documented
        // on `TapeReader`.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let parts = validate(path, &map)?;
        Ok(Self {
            path: p,
            slot_count: parts.slot_count,
            has_labels: parts.has_labels,
            catalog: parts.catalog,
            symbols: parts.symbols,
            label_names: parts.label_names,
            blocks: parts.blocks,
            info: parts.info,
            map,
        })
    }

    /// The tape's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Summary (counts, time range, size).
    pub fn info(&self) -> &TapeInfo {
        &self.info
    }

    /// Event types and enums of the recorded stream.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The symbol table `sym` slots refer to.
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// Label class names (index = class id; class 0 is "unlabelled").
    pub fn label_names(&self) -> &[String] {
        &self.label_names
    }

    /// Whether events carry ground-truth labels.
    pub fn has_labels(&self) -> bool {
        self.has_labels
    }

    /// Slots per record.
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of events in block `index` (0 past the end).
    pub fn block_len(&self, index: usize) -> usize {
        self.blocks.get(index).map_or(0, |b| b.n_records as usize)
    }

    /// Byte offset of block `index`'s header in the file.
    pub fn block_offset(&self, index: usize) -> Option<u64> {
        self.blocks.get(index).map(|b| b.offset)
    }

    /// Decodes block `index` into `out`, replacing its rows. `out` is reset if its slot count
    /// differs from the tape's. Checks the payload checksum and that type ids and label classes
    /// are known; errors name the block's byte offset.
    pub fn read_block(&self, index: usize, out: &mut EventBatch) -> Result<(), TapeError> {
        let b = *self
            .blocks
            .get(index)
            .ok_or_else(|| TapeError::NoSuchBlock {
                path: self.path.clone(),
                index,
                block_count: self.blocks.len(),
            })?;
        let corrupt = |what: String| TapeError::Corrupt {
            path: self.path.clone(),
            offset: b.offset,
            block: Some(index as u64),
            what,
        };
        // Bounds were checked at open; `get` keeps this panic-free regardless.
        let start = b.offset as usize + BLOCK_HEADER_LEN;
        let payload = self
            .map
            .get(start..start + b.payload_len as usize)
            .ok_or_else(|| corrupt("payload lies outside the file".into()))?;
        if crc32fast::hash(payload) != b.payload_crc {
            return Err(corrupt("payload checksum mismatch".into()));
        }
        if out.slot_count() == self.slot_count {
            out.clear();
        } else {
            *out = EventBatch::with_capacity(self.slot_count, b.n_records as usize);
        }

        let type_count = self.catalog.types().len();
        let label_count = self.label_names.len();
        let words_per_record = 2 + self.slot_count;
        let (words, _) = payload.as_chunks::<8>();
        let mut slots = [0u64; MAX_FIELDS];
        let slots = &mut slots[..self.slot_count];
        for (i, rec) in words.chunks_exact(words_per_record).enumerate() {
            let [w0, w1, rest @ ..] = rec else {
                return Err(corrupt("record shorter than 16 bytes".into()));
            };
            let ts = i64::from_le_bytes(*w0);
            let w1 = u64::from_le_bytes(*w1);
            let instance = w1 as u32;
            let type_id = (w1 >> 32) as u16;
            let class = (w1 >> 48) as u16;
            if usize::from(type_id) >= type_count || usize::from(class) >= label_count {
                return Err(corrupt(format!(
                    "record {i} (seq {}) has type id {type_id} and label class {class}; the tape has {type_count} types and {label_count} label classes",
                    b.first_seq + i as u64
                )));
            }
            for (d, s) in slots.iter_mut().zip(rest) {
                *d = u64::from_le_bytes(*s);
            }
            out.push(
                b.first_seq + i as u64,
                ts,
                type_id,
                Label { class, instance },
                slots,
            );
        }
        Ok(())
    }

    /// Decodes every block in order, one batch per block.
    pub fn batches(&self) -> impl Iterator<Item = Result<EventBatch, TapeError>> + '_ {
        (0..self.blocks.len()).map(move |i| {
            let mut batch = EventBatch::with_capacity(self.slot_count, self.block_len(i));
            self.read_block(i, &mut batch).map(|()| batch)
        })
    }

    /// Checks every block's payload checksum and records, seq continuity, and that the per-type
    /// counts and first/last event times in the meta section match the records.
    pub fn verify(&self) -> Result<(), TapeError> {
        let mut batch = EventBatch::with_capacity(self.slot_count, RECORDS_PER_BLOCK);
        let mut next_seq = 0u64;
        let mut counts = vec![0u64; self.catalog.types().len()];
        let mut first_ts = None;
        let mut last_ts = None;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.first_seq != next_seq {
                return Err(TapeError::Corrupt {
                    path: self.path.clone(),
                    offset: b.offset,
                    block: Some(i as u64),
                    what: format!("block starts at seq {}, expected {next_seq}", b.first_seq),
                });
            }
            self.read_block(i, &mut batch)?;
            for &t in batch.type_ids() {
                if let Some(c) = counts.get_mut(usize::from(t)) {
                    *c += 1;
                }
            }
            if first_ts.is_none() {
                first_ts = batch.ts().first().copied();
            }
            if let Some(&t) = batch.ts().last() {
                last_ts = Some(t);
            }
            next_seq += batch.len() as u64;
        }
        let meta_mismatch = |message: String| TapeError::Corrupt {
            path: self.path.clone(),
            offset: self.meta_offset(),
            block: None,
            what: message,
        };
        if next_seq != self.info.event_count {
            return Err(meta_mismatch(format!(
                "blocks hold {next_seq} events but the header says {}",
                self.info.event_count
            )));
        }
        if counts != self.info.counts_per_type {
            return Err(meta_mismatch(format!(
                "meta section counts per type {:?} but the records have {counts:?}",
                self.info.counts_per_type
            )));
        }
        if (first_ts, last_ts) != (self.info.first_ts, self.info.last_ts) {
            return Err(meta_mismatch(format!(
                "meta section says first/last ts {:?}/{:?} but the records have {first_ts:?}/{last_ts:?}",
                self.info.first_ts, self.info.last_ts
            )));
        }
        Ok(())
    }

    fn meta_offset(&self) -> u64 {
        le_u64(&self.map, 32)
    }
}

/// Everything [`TapeReader::open`] derives from the file.
struct Parts {
    slot_count: usize,
    has_labels: bool,
    catalog: Catalog,
    symbols: SymbolTable,
    label_names: Vec<String>,
    blocks: Vec<BlockRef>,
    info: TapeInfo,
}

/// Validates a whole mapped tape (at least [`HEADER_LEN`] bytes).
fn validate(path: &Path, bytes: &[u8]) -> Result<Parts, TapeError> {
    let p = || path.to_path_buf();
    let file_size = bytes.len() as u64;
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(TapeError::BadMagic { path: p() });
    }
    let h = Header::decode(bytes);
    if h.version != VERSION {
        return Err(TapeError::UnsupportedVersion {
            path: p(),
            version: h.version,
        });
    }
    let corrupt = |offset: u64, what: String| TapeError::Corrupt {
        path: p(),
        offset,
        block: None,
        what,
    };
    if h.flags & !FLAG_HAS_LABELS != 0 {
        return Err(corrupt(
            10,
            format!("unknown header flags {:#06x}", h.flags),
        ));
    }
    if h.slot_count as usize > MAX_FIELDS {
        return Err(corrupt(
            16,
            format!(
                "header says {} slots per record; at most {MAX_FIELDS} are supported",
                h.slot_count
            ),
        ));
    }
    let slot_count = h.slot_count as usize;
    let width = record_width(slot_count);
    if h.record_width as usize != width {
        return Err(corrupt(
            12,
            format!(
                "record width {} does not match {} slots (expected {width})",
                h.record_width, h.slot_count
            ),
        ));
    }
    if h.meta_offset == 0 {
        return Err(TapeError::NotFinished { path: p() });
    }
    if h.meta_offset < HEADER_LEN_U64 {
        return Err(corrupt(
            32,
            format!("meta offset {} lies inside the header", h.meta_offset),
        ));
    }
    let Some(meta_end) = h.meta_offset.checked_add(h.meta_len) else {
        return Err(corrupt(
            32,
            format!(
                "meta offset {} + length {} overflows",
                h.meta_offset, h.meta_len
            ),
        ));
    };
    if meta_end > file_size {
        return Err(diagnose_truncation(path, bytes, &h));
    }
    // In bounds: meta_end <= file_size, which is a usize.
    let meta_bytes = &bytes[h.meta_offset as usize..meta_end as usize];
    if crc32fast::hash(meta_bytes) != h.meta_crc {
        return Err(TapeError::Corrupt {
            path: p(),
            offset: h.meta_offset,
            block: None,
            what: "meta section checksum mismatch".into(),
        });
    }
    let meta_err = |message: String| TapeError::Meta {
        path: p(),
        offset: h.meta_offset,
        message,
    };
    let meta: Meta = serde_json::from_slice(meta_bytes).map_err(|e| meta_err(e.to_string()))?;

    let type_count = meta.catalog.types().len();
    if meta.catalog.slot_count() > slot_count {
        return Err(meta_err(format!(
            "the catalog needs {} slots per record but records hold {slot_count}",
            meta.catalog.slot_count()
        )));
    }
    if meta.label_names.is_empty() {
        return Err(meta_err("no label names (class 0 must be named)".into()));
    }
    if meta.counts_per_type.len() != type_count {
        return Err(meta_err(format!(
            "{} per-type counts for {type_count} event types",
            meta.counts_per_type.len()
        )));
    }
    if meta
        .counts_per_type
        .iter()
        .fold(0u64, |a, &c| a.saturating_add(c))
        != h.event_count
    {
        return Err(meta_err(format!(
            "per-type counts sum to {} but the header says {} events",
            meta.counts_per_type
                .iter()
                .fold(0u64, |a, &c| a.saturating_add(c)),
            h.event_count
        )));
    }
    if meta.block_count != meta.block_offsets.len() as u64 {
        return Err(meta_err(format!(
            "block_count is {} but the block index has {} entries",
            meta.block_count,
            meta.block_offsets.len()
        )));
    }

    let mut blocks = Vec::with_capacity(meta.block_offsets.len());
    let mut prev_end = HEADER_LEN_U64;
    let mut next_seq = 0u64;
    for (i, &offset) in meta.block_offsets.iter().enumerate() {
        let block_corrupt = |what: String| TapeError::Corrupt {
            path: p(),
            offset,
            block: Some(i as u64),
            what,
        };
        if offset < prev_end {
            return Err(block_corrupt(format!(
                "block overlaps the header or the previous block (which ends at byte offset {prev_end})"
            )));
        }
        if offset.saturating_add(BLOCK_HEADER_LEN_U64) > h.meta_offset {
            return Err(block_corrupt(format!(
                "block header runs past the start of the meta section at byte offset {}",
                h.meta_offset
            )));
        }
        // In bounds: offset + 32 <= meta_offset < file_size.
        let bh = BlockHeader::decode(bytes, offset as usize);
        check_block_header(&bh, width).map_err(&block_corrupt)?;
        if bh.first_seq != next_seq {
            return Err(block_corrupt(format!(
                "block starts at seq {}, expected {next_seq}",
                bh.first_seq
            )));
        }
        let end = offset + BLOCK_HEADER_LEN_U64 + u64::from(bh.payload_len);
        if end > h.meta_offset {
            return Err(block_corrupt(format!(
                "block ends at byte offset {end}, past the start of the meta section at byte offset {}",
                h.meta_offset
            )));
        }
        blocks.push(BlockRef {
            offset,
            n_records: bh.n_records,
            first_seq: bh.first_seq,
            payload_len: bh.payload_len,
            payload_crc: bh.payload_crc,
        });
        next_seq += u64::from(bh.n_records);
        prev_end = end;
    }
    if next_seq != h.event_count {
        return Err(corrupt(
            24,
            format!(
                "header says {} events but the blocks hold {next_seq}",
                h.event_count
            ),
        ));
    }

    let has_labels = h.flags & FLAG_HAS_LABELS != 0;
    let info = TapeInfo {
        version: h.version,
        event_count: h.event_count,
        slot_count: h.slot_count,
        has_labels,
        counts_per_type: meta.counts_per_type,
        first_ts: meta.first_ts,
        last_ts: meta.last_ts,
        block_count: meta.block_count,
        source: meta.source,
        file_size,
    };
    Ok(Parts {
        slot_count,
        has_labels,
        catalog: meta.catalog,
        symbols: SymbolTable::from_names(meta.symbols),
        label_names: meta.label_names,
        blocks,
        info,
    })
}

/// Checks a block header's magic and that its payload length matches its record count.
fn check_block_header(bh: &BlockHeader, width: usize) -> Result<(), String> {
    if bh.magic != BLOCK_MAGIC {
        return Err(format!(
            "bad block magic {:#010x} (expected {BLOCK_MAGIC:#010x}, \"SBLK\")",
            bh.magic
        ));
    }
    let expected = u64::from(bh.n_records) * width as u64;
    if u64::from(bh.payload_len) != expected {
        return Err(format!(
            "payload length {} does not match {} records of {width} bytes",
            bh.payload_len, bh.n_records
        ));
    }
    Ok(())
}

/// The meta section lies past the end of the file: walks the blocks from the start to name the
/// first part that was cut off (a block, or else the meta section).
fn diagnose_truncation(path: &Path, bytes: &[u8], h: &Header) -> TapeError {
    let file_size = bytes.len() as u64;
    let width = h.record_width as usize;
    let mut offset = HEADER_LEN_U64;
    let mut index = 0u64;
    while offset < h.meta_offset {
        if offset + BLOCK_HEADER_LEN_U64 > file_size {
            return TapeError::Truncated {
                path: path.to_path_buf(),
                offset,
                needed: BLOCK_HEADER_LEN_U64,
                file_size,
                block: Some(index),
                what: "block header",
            };
        }
        // In bounds: checked just above.
        let bh = BlockHeader::decode(bytes, offset as usize);
        if let Err(what) = check_block_header(&bh, width) {
            return TapeError::Corrupt {
                path: path.to_path_buf(),
                offset,
                block: Some(index),
                what,
            };
        }
        let needed = BLOCK_HEADER_LEN_U64 + u64::from(bh.payload_len);
        if offset + needed > file_size {
            return TapeError::Truncated {
                path: path.to_path_buf(),
                offset,
                needed,
                file_size,
                block: Some(index),
                what: "block",
            };
        }
        offset += needed;
        index += 1;
    }
    TapeError::Truncated {
        path: path.to_path_buf(),
        offset: h.meta_offset,
        needed: h.meta_len,
        file_size,
        block: None,
        what: "meta section",
    }
}
