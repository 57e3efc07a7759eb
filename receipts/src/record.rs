//! The journal's on-disk record and the scan that recovers a journal after a crash.
//!
//! ```text
//! record     = header | payload: [u8; len]
//! header     = magic "LRC1" | len: u32 LE | crc32: u32 LE | id: [u8; 32] | header_crc: u32 LE
//! crc32      = CRC-32 (IEEE) of id ‖ payload
//! header_crc = CRC-32 of the 44 header bytes before it
//! ```
//!
//! The header has its own checksum because a damaged length field would otherwise make
//! every later record look like the unfinished tail of this one, and recovery would cut
//! acknowledged receipts.
//!
//! Records are only ever appended. A crash can leave at most the last record incomplete
//! (the append was not yet acknowledged, so no client saw it), possibly followed by zeros
//! or stale bytes where the filesystem had already extended the file: the scan reports such
//! a torn tail and the journal truncates it. Damage followed by a valid record cannot come
//! from a crash, so it is reported as corruption and the file is left alone.

use std::io::{BufReader, ErrorKind, Read};

/// First bytes of every record.
pub const MAGIC: [u8; 4] = *b"LRC1";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 4 + 4 + 4 + 32 + 4;
/// Largest payload accepted (a signed receipt with 32 shares is under 3 KiB).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Appends the encoding of one record to `out`.
pub fn encode(id: &[u8; 32], payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(id);
    crc.update(payload);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(id);
    let header_crc = crc32fast::hash(&out[out.len() - (HEADER_LEN - 4)..]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A record found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Offset of its header.
    pub offset: u64,
    /// Its id.
    pub id: [u8; 32],
    /// Its payload.
    pub payload: Vec<u8>,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` to the end are an unfinished last record (or zeros a crash
    /// left after it); truncating there loses nothing that was acknowledged.
    TornTail {
        /// Where the valid prefix ends.
        offset: u64,
        /// Why the rest is not a record.
        reason: String,
    },
    /// A damaged record with more data after it.
    Corrupt {
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Reads records from `reader` (a whole journal), calling `each` for every valid one, and
/// says how the data ended. `total_len` is the journal's size.
///
/// The rule that separates a crash from damage: a crash can only spoil the end of the file,
/// so bad bytes are a torn tail exactly when no valid record header follows them.
pub fn scan<R: Read>(
    reader: R,
    total_len: u64,
    mut each: impl FnMut(Found),
) -> std::io::Result<ScanEnd> {
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_LEN];
    loop {
        if offset == total_len {
            return Ok(ScanEnd::Clean);
        }
        let left = total_len - offset;
        if left < HEADER_LEN as u64 {
            let mut rest = vec![0u8; left as usize];
            read_exact_or_eof(&mut r, &mut rest)?;
            // Too short to hold a header, so certainly nothing valid follows.
            return Ok(ScanEnd::TornTail { offset, reason: "a record header cut short".into() });
        }
        read_exact_or_eof(&mut r, &mut header)?;
        if header[..4] != MAGIC {
            return damaged(&header[1..], &mut r, offset, "bytes that are not a record header");
        }
        let header_crc = u32::from_le_bytes([header[44], header[45], header[46], header[47]]);
        if crc32fast::hash(&header[..44]) != header_crc {
            return damaged(&header[1..], &mut r, offset, "header checksum mismatch");
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let end = offset + (HEADER_LEN + len) as u64;
        if len > MAX_PAYLOAD {
            return Ok(ScanEnd::Corrupt {
                offset,
                reason: format!("length {len} exceeds {MAX_PAYLOAD}"),
            });
        }
        if end > total_len {
            // The header is intact, so the length is right: the payload never fully landed.
            return Ok(ScanEnd::TornTail { offset, reason: "the last record is cut short".into() });
        }
        let mut payload = vec![0u8; len];
        read_exact_or_eof(&mut r, &mut payload)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&header[12..44]);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&id);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            let mut consumed = header[1..].to_vec();
            consumed.extend_from_slice(&payload);
            return damaged(&consumed, &mut r, offset, "checksum mismatch");
        }
        each(Found { offset, id, payload });
        offset = end;
    }
}

/// Bad bytes at `offset`: a torn tail when no valid header starts anywhere after `offset`
/// (`consumed` are the bytes after `offset` already read, `r` the rest), else corruption.
fn damaged<R: Read>(
    consumed: &[u8],
    r: &mut R,
    offset: u64,
    reason: &str,
) -> std::io::Result<ScanEnd> {
    Ok(if valid_header_follows(consumed, r)? {
        ScanEnd::Corrupt { offset, reason: format!("{reason}, with valid records after it") }
    } else {
        ScanEnd::TornTail { offset, reason: reason.to_string() }
    })
}

/// Streams the rest looking for MAGIC followed by a header whose checksum holds.
fn valid_header_follows<R: Read>(consumed: &[u8], r: &mut R) -> std::io::Result<bool> {
    let mut window: Vec<u8> = consumed.to_vec();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut i = 0;
        while i + HEADER_LEN <= window.len() {
            if window[i..i + 4] == MAGIC {
                let h = &window[i..i + HEADER_LEN];
                if crc32fast::hash(&h[..44]).to_le_bytes() == h[44..48] {
                    return Ok(true);
                }
            }
            i += 1;
        }
        // Keep the bytes that could still begin a header.
        window.drain(..i);
        let n = loop {
            match r.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&buf[..n]);
    }
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "the journal shrank while it was being read",
            )
        } else {
            e
        }
    })
}
