//! Byte layouts of the index file: its header and its fixed-size records.
//!
//! Everything is little-endian. `docs/store-format.md` is the normative description; this module
//! is the only code that knows the offsets, so the two must change together (and the version must
//! be bumped when they do).
//!
//! A record is 512 bytes: small enough that an append is one sector-sized write, large enough for
//! the longest `Put` (a 128-byte name, a 128-byte base hash and the fixed fields). Fixed-size slots
//! are what make recovery simple: a reader can find every record boundary without trusting any
//! length field, so one damaged record never hides the ones after it.

use crate::adapter::TargetModule;

/// First bytes of the index file.
pub(super) const INDEX_MAGIC: &[u8; 8] = b"LORADIDX";
/// The index format this code reads and writes.
pub(super) const INDEX_VERSION: u32 = 1;
/// Size of the header and of every record slot.
pub(super) const RECORD_SIZE: usize = 512;
/// The header occupies the first slot, so records start at this offset.
pub(super) const HEADER_SIZE: usize = RECORD_SIZE;

const RECORD_MAGIC: &[u8; 4] = b"LREC";
/// Offset of the payload inside a record (magic 4, kind 1, reserved 3, seq 8, payload len 2,
/// reserved 6).
const PAYLOAD_OFF: usize = 24;
/// The CRC32 of bytes `0..CRC_OFF` sits in the last four bytes of the slot.
const CRC_OFF: usize = RECORD_SIZE - 4;
const MAX_PAYLOAD: usize = CRC_OFF - PAYLOAD_OFF;
/// Longest string field (names and base hashes are validated against this before writing).
pub(super) const MAX_STR: usize = 128;

/// Where a blob lives: segment id, byte offset in the segment (4 KiB-aligned) and length (a
/// multiple of 4 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Loc {
    pub(super) segment: u32,
    pub(super) offset: u64,
    pub(super) len: u64,
}

impl Loc {
    /// The byte after the blob. Never overflows for a `Loc` the store holds: the writer's come
    /// from real file offsets and [`decode_record`] refuses any other ([`Loc::is_possible`]).
    pub(super) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }

    /// Whether a file can hold this range: it ends at an offset `pread` can reach (a signed
    /// 64-bit `off_t`). A record naming any other range is damaged, whatever its CRC says.
    pub(super) fn is_possible(&self) -> bool {
        crate::fsutil::reachable(self.offset, self.len)
    }
}

/// The parsed index header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexHeader {
    /// Bumped by every compaction, so a reader can tell a rewritten index from the one it mapped.
    pub(super) generation: u64,
    /// Unix seconds when this generation was written.
    pub(super) created: u64,
}

/// Why a header was refused.
#[derive(Debug)]
pub(super) enum HeaderError {
    /// Not an index file at all, or damaged.
    Corrupt(String),
    /// A format version this code does not know.
    Version(u32),
}

pub(super) fn encode_header(h: &IndexHeader) -> [u8; HEADER_SIZE] {
    let mut out = [0u8; HEADER_SIZE];
    out[0..8].copy_from_slice(INDEX_MAGIC);
    out[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
    out[16..24].copy_from_slice(&h.generation.to_le_bytes());
    out[24..32].copy_from_slice(&h.created.to_le_bytes());
    let crc = crc32fast::hash(&out[..CRC_OFF]);
    out[CRC_OFF..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Parses a header. The version is checked before the CRC: another version may lay the header out
/// differently, and "unknown version" is the actionable message in that case.
pub(super) fn decode_header(bytes: &[u8]) -> Result<IndexHeader, HeaderError> {
    if bytes.len() < HEADER_SIZE {
        return Err(HeaderError::Corrupt(format!(
            "the file is {} bytes, shorter than its {HEADER_SIZE}-byte header",
            bytes.len()
        )));
    }
    if &bytes[0..8] != INDEX_MAGIC {
        return Err(HeaderError::Corrupt("bad magic: not a lorad store index".to_owned()));
    }
    let version = le_u32(&bytes[8..12]);
    if version != INDEX_VERSION {
        return Err(HeaderError::Version(version));
    }
    let crc = le_u32(&bytes[CRC_OFF..HEADER_SIZE]);
    if crc != crc32fast::hash(&bytes[..CRC_OFF]) {
        return Err(HeaderError::Corrupt("header checksum mismatch".to_owned()));
    }
    let record_size = le_u32(&bytes[12..16]);
    if record_size as usize != RECORD_SIZE {
        return Err(HeaderError::Corrupt(format!("record size {record_size}, expected 512")));
    }
    Ok(IndexHeader { generation: le_u64(&bytes[16..24]), created: le_u64(&bytes[24..32]) })
}

/// An import: the name now refers to the blob at `loc`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PutRecord {
    pub(super) name: String,
    pub(super) loc: Loc,
    /// Summary dtype tag (see [`dtype_summary_str`]).
    pub(super) dtype: u8,
    pub(super) rank: u32,
    pub(super) alpha: f64,
    pub(super) use_rslora: bool,
    pub(super) targets: Vec<TargetModule>,
    pub(super) pinned: bool,
    pub(super) created: u64,
    pub(super) content_hash: [u8; 32],
    pub(super) base_hash: String,
}

/// One index record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    Put(PutRecord),
    Remove {
        name: String,
    },
    Pin {
        name: String,
    },
    Unpin {
        name: String,
    },
    Quarantine {
        name: String,
        reason: String,
    },
    /// gc copied the blob with this content hash from `from` to `to` (same length).
    Relocate {
        content_hash: [u8; 32],
        from: Loc,
        to: Loc,
    },
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Put(_) => 1,
            Record::Remove { .. } => 2,
            Record::Pin { .. } => 3,
            Record::Unpin { .. } => 4,
            Record::Quarantine { .. } => 5,
            Record::Relocate { .. } => 6,
        }
    }
}

/// The summary dtype of a blob as [`crate::StoredInfo::dtype`] spells it.
pub(super) fn dtype_summary_str(tag: u8) -> &'static str {
    match tag {
        0 => "bf16",
        1 => "f16",
        2 => "f32",
        _ => "mixed",
    }
}

/// Inverse of [`dtype_summary_str`] (anything unknown is "mixed").
pub(super) fn dtype_summary_tag(s: &str) -> u8 {
    match s {
        "bf16" => 0,
        "f16" => 1,
        "f32" => 2,
        _ => 3,
    }
}

fn targets_mask(targets: &[TargetModule]) -> u8 {
    targets.iter().fold(0u8, |m, t| m | (1 << t.index()))
}

fn targets_from_mask(mask: u8) -> Vec<TargetModule> {
    TargetModule::ALL.into_iter().filter(|t| mask & (1 << t.index()) != 0).collect()
}

/// Encodes `record` with sequence number `seq` into one slot.
///
/// Strings longer than the layout allows are cut (callers validate names and base hashes first;
/// only quarantine reasons, which are informational, can actually be cut).
pub(super) fn encode_record(seq: u64, record: &Record) -> [u8; RECORD_SIZE] {
    let mut p = Writer(Vec::with_capacity(MAX_PAYLOAD));
    match record {
        Record::Put(r) => {
            p.str8(&r.name);
            p.u32(r.loc.segment);
            p.u64(r.loc.offset);
            p.u64(r.loc.len);
            p.u8(r.dtype);
            p.u32(r.rank);
            p.u64(r.alpha.to_bits());
            p.u8(u8::from(r.use_rslora));
            p.u8(targets_mask(&r.targets));
            p.u8(u8::from(r.pinned));
            p.u64(r.created);
            p.bytes(&r.content_hash);
            p.str8(&r.base_hash);
        }
        Record::Remove { name } | Record::Pin { name } | Record::Unpin { name } => p.str8(name),
        Record::Quarantine { name, reason } => {
            p.str8(name);
            let room = MAX_PAYLOAD - p.0.len() - 2;
            let reason = truncate_utf8(reason, room);
            p.u16(reason.len() as u16);
            p.bytes(reason.as_bytes());
        }
        Record::Relocate { content_hash, from, to } => {
            p.bytes(content_hash);
            for loc in [from, to] {
                p.u32(loc.segment);
                p.u64(loc.offset);
                p.u64(loc.len);
            }
        }
    }
    let payload = &p.0[..p.0.len().min(MAX_PAYLOAD)];
    let mut out = [0u8; RECORD_SIZE];
    out[0..4].copy_from_slice(RECORD_MAGIC);
    out[4] = record.kind();
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..18].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    out[PAYLOAD_OFF..PAYLOAD_OFF + payload.len()].copy_from_slice(payload);
    let crc = crc32fast::hash(&out[..CRC_OFF]);
    out[CRC_OFF..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes one slot; `None` for anything that is not a complete, valid record (torn write,
/// garbage, zeros, a kind or layout this version does not know).
pub(super) fn decode_record(slot: &[u8]) -> Option<(u64, Record)> {
    if slot.len() != RECORD_SIZE || &slot[0..4] != RECORD_MAGIC {
        return None;
    }
    if le_u32(&slot[CRC_OFF..]) != crc32fast::hash(&slot[..CRC_OFF]) {
        return None;
    }
    let seq = le_u64(&slot[8..16]);
    let len = u16::from_le_bytes([slot[16], slot[17]]) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let mut r = Reader { b: &slot[PAYLOAD_OFF..PAYLOAD_OFF + len], pos: 0 };
    let record = match slot[4] {
        1 => Record::Put(PutRecord {
            name: r.str8()?,
            loc: Loc { segment: r.u32()?, offset: r.u64()?, len: r.u64()? },
            dtype: r.u8()?,
            rank: r.u32()?,
            alpha: f64::from_bits(r.u64()?),
            use_rslora: r.u8()? != 0,
            targets: targets_from_mask(r.u8()?),
            pinned: r.u8()? != 0,
            created: r.u64()?,
            content_hash: r.array32()?,
            base_hash: r.str8()?,
        }),
        2 => Record::Remove { name: r.str8()? },
        3 => Record::Pin { name: r.str8()? },
        4 => Record::Unpin { name: r.str8()? },
        5 => {
            let name = r.str8()?;
            let n = r.u16()? as usize;
            let reason = String::from_utf8(r.take(n)?.to_vec()).ok()?;
            Record::Quarantine { name, reason }
        }
        6 => {
            let content_hash = r.array32()?;
            let from = Loc { segment: r.u32()?, offset: r.u64()?, len: r.u64()? };
            let to = Loc { segment: r.u32()?, offset: r.u64()?, len: r.u64()? };
            Record::Relocate { content_hash, from, to }
        }
        _ => return None,
    };
    let possible = match &record {
        Record::Put(p) => p.loc.is_possible(),
        Record::Relocate { from, to, .. } => from.is_possible() && to.is_possible(),
        _ => true,
    };
    // Trailing payload bytes mean a layout this version does not know.
    (possible && r.pos == r.b.len()).then_some((seq, record))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

pub(super) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(super) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Little-endian field writer.
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// A string of at most [`MAX_STR`] bytes, prefixed by its length.
    fn str8(&mut self, s: &str) {
        let s = truncate_utf8(s, MAX_STR);
        self.u8(s.len() as u8);
        self.bytes(s.as_bytes());
    }
}

/// Bounds-checked little-endian field reader: every getter returns `None` past the end.
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_le_bytes([s[0], s[1]]))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le_u32)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le_u64)
    }
    pub(super) fn array32(&mut self) -> Option<[u8; 32]> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Some(a)
    }
    fn str8(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put() -> Record {
        Record::Put(PutRecord {
            name: "n".repeat(MAX_STR),
            loc: Loc { segment: 7, offset: 4096 * 3, len: 8192 },
            dtype: 0,
            rank: 16,
            alpha: 32.5,
            use_rslora: true,
            targets: vec![TargetModule::QProj, TargetModule::DownProj],
            pinned: true,
            created: 1_700_000_000,
            content_hash: [0xab; 32],
            base_hash: "f".repeat(MAX_STR),
        })
    }

    #[test]
    fn records_round_trip() {
        let loc = Loc { segment: 1, offset: 4096, len: 4096 };
        let records = [
            put(),
            Record::Remove { name: "a".into() },
            Record::Pin { name: "b".into() },
            Record::Unpin { name: "c".into() },
            Record::Quarantine { name: "d".into(), reason: "tensor `x` bad".into() },
            Record::Relocate { content_hash: [1; 32], from: loc, to: Loc { segment: 2, ..loc } },
        ];
        for (i, r) in records.iter().enumerate() {
            let slot = encode_record(i as u64 + 1, r);
            assert_eq!(decode_record(&slot), Some((i as u64 + 1, r.clone())));
        }
    }

    #[test]
    fn damaged_records_are_rejected() {
        let slot = encode_record(5, &put());
        for i in [0, 4, 9, 30, 200, 511] {
            let mut bad = slot;
            bad[i] ^= 0x40;
            assert_eq!(decode_record(&bad), None, "flip at {i}");
        }
        let mut torn = slot;
        torn[300..].fill(0);
        assert_eq!(decode_record(&torn), None);
    }

    #[test]
    fn records_naming_ranges_past_any_file_are_rejected() {
        // CRCs intact: such a record is written by no lorad, so it is damage that got past them.
        let Record::Put(good) = put() else { unreachable!() };
        let at = |offset, len| Loc { segment: 1, offset, len };
        let past_off_t = at((1 << 63) - 8192, 8192);
        for loc in [at(4096, u64::MAX - 4095), at(u64::MAX - 4095, 8192), past_off_t] {
            let slot = encode_record(1, &Record::Put(PutRecord { loc, ..good.clone() }));
            assert_eq!(decode_record(&slot), None, "{loc:?}");
            for (from, to) in [(loc, at(4096, 4096)), (at(4096, 4096), loc)] {
                let slot = encode_record(1, &Record::Relocate { content_hash: [1; 32], from, to });
                assert_eq!(decode_record(&slot), None, "{from:?} -> {to:?}");
            }
        }
        let edge = at((1 << 63) - 8192, 8191); // ends at i64::MAX, as far as a range may reach
        let slot = encode_record(1, &Record::Put(PutRecord { loc: edge, ..good }));
        assert!(decode_record(&slot).is_some());
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(400);
        let slot = encode_record(1, &Record::Quarantine { name: "x".into(), reason });
        let Some((_, Record::Quarantine { reason, .. })) = decode_record(&slot) else {
            panic!("quarantine record did not decode")
        };
        assert!(reason.len() <= 480 && reason.len() > 400 && reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn header_version_checked_before_crc() {
        let h = IndexHeader { generation: 3, created: 9 };
        let mut bytes = encode_header(&h);
        assert_eq!(decode_header(&bytes).ok(), Some(h));
        bytes[8] = 99;
        assert!(matches!(decode_header(&bytes), Err(HeaderError::Version(99))));
        bytes[8] = 1;
        bytes[20] ^= 1;
        assert!(matches!(decode_header(&bytes), Err(HeaderError::Corrupt(_))));
    }
}
