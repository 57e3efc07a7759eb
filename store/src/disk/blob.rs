//! Adapter blobs: a manifest followed by the tensors, each tensor at a 4 KiB-aligned offset.
//!
//! Blob layout (little-endian; offsets relative to the blob start, which is itself 4 KiB-aligned
//! in its segment, so every tensor is at a 4 KiB-aligned *file* offset and can be read with
//! O_DIRECT straight into its final place):
//!
//! ```text
//! 0   magic "LORADBLB" | 8 version u32 | 12 pair count u32 | 16 manifest length u32 | 20 reserved
//! 24  content hash [32] | 56 blob length u64 (multiple of 4096)
//! 64  pair entries, 64 bytes each:
//!     layer u32 | module u8 | A dtype u8 | B dtype u8 | reserved u8 | rank u32 | scale f32 |
//!     in_features u32 | out_features u32 | A offset u64 | A length u64 | B offset u64 |
//!     B length u64 | A crc32 u32 | B crc32 u32
//! ..  crc32 of the manifest bytes before it
//! then zero padding to 4096, then each tensor (A then B, pair by pair), each padded to 4096.
//! ```
//!
//! Each tensor is stored in the narrowest dtype that reproduces its f32 values bit for bit (see
//! [`StoredDtype::narrowest`]), so decoding is lossless and a PEFT adapter saved in bf16 costs
//! bf16 space.

use std::path::PathBuf;

use serde::Serialize;

use super::StoredInfo;
use super::format::{Reader, Writer, le_u32};
use crate::adapter::{LoraWeights, TargetModule};
use crate::paging::{ALIGN, AlignedBuf};

const BLOB_MAGIC: &[u8; 8] = b"LORADBLB";
/// The blob format this code reads and writes.
const BLOB_VERSION: u32 = 1;
const BLOB_HEADER: usize = 64;
const PAIR_SIZE: usize = 64;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredDtype {
    /// bfloat16.
    BF16,
    /// IEEE half.
    F16,
    /// 32-bit float.
    F32,
}

impl StoredDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StoredDtype::BF16 | StoredDtype::F16 => 2,
            StoredDtype::F32 => 4,
        }
    }

    /// `"bf16"`, `"f16"` or `"f32"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredDtype::BF16 => "bf16",
            StoredDtype::F16 => "f16",
            StoredDtype::F32 => "f32",
        }
    }

    /// The narrowest dtype that round-trips every value exactly (bit for bit, so `-0.0` and
    /// subnormals count): bf16, else f16, else f32. bf16 is tried first because it is what PEFT
    /// adapters trained in bf16 hold, and it keeps f32's exponent range.
    pub fn narrowest(values: &[f32]) -> StoredDtype {
        let exact_bf16 =
            values.iter().all(|&v| half::bf16::from_f32(v).to_f32().to_bits() == v.to_bits());
        if exact_bf16 {
            return StoredDtype::BF16;
        }
        let exact_f16 =
            values.iter().all(|&v| half::f16::from_f32(v).to_f32().to_bits() == v.to_bits());
        if exact_f16 { StoredDtype::F16 } else { StoredDtype::F32 }
    }

    fn tag(self) -> u8 {
        match self {
            StoredDtype::BF16 => 0,
            StoredDtype::F16 => 1,
            StoredDtype::F32 => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<StoredDtype> {
        [StoredDtype::BF16, StoredDtype::F16, StoredDtype::F32].into_iter().find(|d| d.tag() == tag)
    }

    fn encode(self, values: &[f32], out: &mut [u8]) {
        match self {
            StoredDtype::BF16 => {
                for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
                }
            }
            StoredDtype::F16 => {
                for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
            StoredDtype::F32 => {
                for (v, o) in values.iter().zip(out.chunks_exact_mut(4)) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }

    fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            StoredDtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StoredDtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StoredDtype::F32 => bytes.chunks_exact(4).map(le_f32).collect(),
        }
    }
}

fn le_f32(c: &[u8]) -> f32 {
    f32::from_bits(le_u32(c))
}

/// Where one tensor lives inside its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorExtent {
    /// Element type on disk.
    pub dtype: StoredDtype,
    /// Byte offset from the blob start (a multiple of 4096).
    pub offset: u64,
    /// Bytes of tensor data (without padding).
    pub len: u64,
    /// CRC32 of those bytes.
    pub crc32: u32,
}

/// One LoRA pair as the blob manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestPair {
    /// Decoder layer.
    pub layer: usize,
    /// Projection.
    pub module: TargetModule,
    /// LoRA rank of the pair.
    pub rank: usize,
    /// Resolved scale.
    pub scale: f32,
    /// `in_features` of the projection (A is `[rank, in]`).
    pub in_features: usize,
    /// `out_features` of the projection (B is `[out, rank]`).
    pub out_features: usize,
    /// The A matrix.
    pub a: TensorExtent,
    /// The B matrix.
    pub b: TensorExtent,
}

impl ManifestPair {
    /// The canonical PEFT name of A (`is_b == false`) or B, for error messages.
    pub fn tensor_name(&self, is_b: bool) -> String {
        self.module.tensor_name(self.layer, is_b)
    }
}

/// Where a blob is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// Segment id.
    pub segment: u32,
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the blob in the segment (a multiple of 4096).
    pub offset: u64,
    /// Blob length in bytes (a multiple of 4096).
    pub len: u64,
}

/// An adapter's blob read from disk, checksums verified, not yet decoded to f32.
#[derive(Debug)]
pub struct Blob {
    pub(super) info: StoredInfo,
    pub(super) location: BlobLocation,
    pub(super) manifest: Vec<ManifestPair>,
    pub(super) buf: AlignedBuf,
}

impl Blob {
    /// The index entry it was read for.
    pub fn info(&self) -> &StoredInfo {
        &self.info
    }

    /// Bytes held in memory.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no bytes are held (never the case for a blob read from a store).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The parsed manifest, one entry per LoRA pair.
    pub fn manifest(&self) -> &[ManifestPair] {
        &self.manifest
    }

    /// Where it was read from.
    pub fn location(&self) -> &BlobLocation {
        &self.location
    }

    /// The raw blob bytes (manifest, padding and tensors).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One tensor's bytes as stored: little-endian `extent.dtype` elements, starting 4 KiB-aligned
    /// in memory. `extent` must come from this blob's [`Blob::manifest`] (those are checked to lie
    /// inside the blob when it is read); any other extent gets an empty slice.
    pub fn tensor_bytes(&self, extent: &TensorExtent) -> &[u8] {
        let start = usize::try_from(extent.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(extent.len).unwrap_or(usize::MAX));
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// Whether the bytes sit in page-locked memory (a device copy from them is DMA).
    pub fn is_pinned(&self) -> bool {
        self.buf.is_pinned()
    }
}

/// A blob ready to be written.
#[derive(Debug)]
pub(super) struct EncodedBlob {
    pub(super) bytes: Vec<u8>,
    /// Summary dtype tag: 0 bf16, 1 f16, 2 f32, 3 mixed.
    pub(super) dtype: u8,
}

pub(super) fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

/// Lays out `weights` as a blob. The weights must already be validated (ranks divide lengths,
/// values finite, dimensions fit u32); the encoding is a pure function of them, which is what makes
/// blobs deduplicable by content hash.
pub(super) fn encode_blob(weights: &[LoraWeights], content_hash: &[u8; 32]) -> EncodedBlob {
    let manifest_len = BLOB_HEADER + weights.len() * PAIR_SIZE + 4;
    let mut pairs = Vec::with_capacity(weights.len());
    let mut offset = round_up(manifest_len as u64);
    for w in weights {
        let mut extent = |values: &[f32]| {
            let dtype = StoredDtype::narrowest(values);
            let e =
                TensorExtent { dtype, offset, len: (values.len() * dtype.size()) as u64, crc32: 0 };
            offset = round_up(offset + e.len);
            e
        };
        let a = extent(&w.a);
        let b = extent(&w.b);
        pairs.push((a, b));
    }
    let total = offset;
    let mut bytes = vec![0u8; total as usize];
    for (w, (a, b)) in weights.iter().zip(pairs.iter_mut()) {
        for (values, e) in [(&w.a, a), (&w.b, b)] {
            let range = e.offset as usize..(e.offset + e.len) as usize;
            e.dtype.encode(values, &mut bytes[range.clone()]);
            e.crc32 = crc32fast::hash(&bytes[range]);
        }
    }
    let mut m = Writer(Vec::with_capacity(manifest_len));
    m.bytes(BLOB_MAGIC);
    m.u32(BLOB_VERSION);
    m.u32(weights.len() as u32);
    m.u32(manifest_len as u32);
    m.u32(0);
    m.bytes(content_hash);
    m.u64(total);
    for (w, (a, b)) in weights.iter().zip(&pairs) {
        m.u32(w.layer as u32);
        m.u8(w.module.index() as u8);
        m.u8(a.dtype.tag());
        m.u8(b.dtype.tag());
        m.u8(0);
        m.u32(w.rank as u32);
        m.u32(w.scale.to_bits());
        m.u32((w.a.len() / w.rank) as u32);
        m.u32((w.b.len() / w.rank) as u32);
        for e in [a, b] {
            m.u64(e.offset);
            m.u64(e.len);
        }
        m.u32(a.crc32);
        m.u32(b.crc32);
    }
    let crc = crc32fast::hash(&m.0);
    m.u32(crc);
    bytes[..manifest_len].copy_from_slice(&m.0);

    let mut dtypes = pairs.iter().flat_map(|(a, b)| [a.dtype, b.dtype]);
    let first = dtypes.next().map_or(3, |d| d.tag());
    let dtype = if dtypes.all(|d| d.tag() == first) { first } else { 3 };
    EncodedBlob { bytes, dtype }
}

/// Parses and checks the manifest of `buf` (a whole blob): magic, version, its own CRC, that the
/// content hash is the one the index expects, and that every extent is aligned, sized for its
/// shape and inside the blob. The error is a reason for [`crate::StoreError::CorruptBlob`].
pub(super) fn parse_manifest(
    buf: &[u8],
    expected_hash: &[u8; 32],
) -> Result<Vec<ManifestPair>, String> {
    let mut r = Reader { b: buf, pos: 0 };
    let short = || format!("the blob is only {} bytes, too short for its manifest", buf.len());
    if r.take(8).ok_or_else(short)? != BLOB_MAGIC {
        return Err("bad blob magic (no blob at the indexed offset)".to_owned());
    }
    let version = r.u32().ok_or_else(short)?;
    if version != BLOB_VERSION {
        return Err(format!("blob format version {version} is not supported (expected 1)"));
    }
    let count = r.u32().ok_or_else(short)? as usize;
    let manifest_len = r.u32().ok_or_else(short)? as usize;
    if count == 0 || manifest_len != BLOB_HEADER + count * PAIR_SIZE + 4 {
        return Err(format!("manifest claims {count} pairs in {manifest_len} bytes"));
    }
    let Some(manifest) = buf.get(..manifest_len) else { return Err(short()) };
    let stored_crc = le_u32(&manifest[manifest_len - 4..]);
    if stored_crc != crc32fast::hash(&manifest[..manifest_len - 4]) {
        return Err("manifest checksum mismatch".to_owned());
    }
    r.u32().ok_or_else(short)?;
    let hash = r.array32().ok_or_else(short)?;
    if &hash != expected_hash {
        return Err(format!(
            "the blob holds content {} but the index expects {}",
            hex::encode(hash),
            hex::encode(expected_hash)
        ));
    }
    let blob_len = r.u64().ok_or_else(short)?;
    if blob_len != buf.len() as u64 {
        return Err(format!("the blob says it is {blob_len} bytes, the index {}", buf.len()));
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let pair =
            parse_pair(&mut r, blob_len).ok_or_else(|| format!("manifest pair {i} is invalid"))?;
        pairs.push(pair);
    }
    Ok(pairs)
}

fn parse_pair(r: &mut Reader<'_>, blob_len: u64) -> Option<ManifestPair> {
    let layer = r.u32()? as usize;
    let module = *TargetModule::ALL.get(r.u8()? as usize)?;
    let a_dtype = StoredDtype::from_tag(r.u8()?)?;
    let b_dtype = StoredDtype::from_tag(r.u8()?)?;
    r.u8()?;
    let rank = r.u32()? as usize;
    let scale = f32::from_bits(r.u32()?);
    let in_features = r.u32()? as usize;
    let out_features = r.u32()? as usize;
    let mut extent = |dtype: StoredDtype, elems: usize| -> Option<TensorExtent> {
        let offset = r.u64()?;
        let len = r.u64()?;
        let ok = offset % ALIGN as u64 == 0
            && offset.checked_add(len)? <= blob_len
            && len == (elems.checked_mul(dtype.size())?) as u64;
        ok.then_some(TensorExtent { dtype, offset, len, crc32: 0 })
    };
    let mut a = extent(a_dtype, rank.checked_mul(in_features)?)?;
    let mut b = extent(b_dtype, out_features.checked_mul(rank)?)?;
    a.crc32 = r.u32()?;
    b.crc32 = r.u32()?;
    (rank > 0 && in_features > 0 && out_features > 0 && scale.is_finite()).then_some(ManifestPair {
        layer,
        module,
        rank,
        scale,
        in_features,
        out_features,
        a,
        b,
    })
}

/// A tensor whose bytes do not match their CRC32: `(tensor name, stored, computed)`.
pub(super) type CrcFailure = (String, u32, u32);

/// Checks every tensor's CRC32 against the manifest.
pub(super) fn check_crcs(buf: &[u8], pairs: &[ManifestPair]) -> Result<(), CrcFailure> {
    for p in pairs {
        for (is_b, e) in [(false, &p.a), (true, &p.b)] {
            let bytes = &buf[e.offset as usize..(e.offset + e.len) as usize];
            let actual = crc32fast::hash(bytes);
            if actual != e.crc32 {
                return Err((p.tensor_name(is_b), e.crc32, actual));
            }
        }
    }
    Ok(())
}

/// Decodes a checked blob to f32 weights, in manifest order (which is the imported order).
pub(super) fn decode_weights(buf: &[u8], pairs: &[ManifestPair]) -> Vec<LoraWeights> {
    let tensor =
        |e: &TensorExtent| e.dtype.decode(&buf[e.offset as usize..(e.offset + e.len) as usize]);
    pairs
        .iter()
        .map(|p| LoraWeights {
            layer: p.layer,
            module: p.module,
            rank: p.rank,
            scale: p.scale,
            a: tensor(&p.a),
            b: tensor(&p.b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(values_a: Vec<f32>, values_b: Vec<f32>) -> LoraWeights {
        LoraWeights {
            layer: 1,
            module: TargetModule::VProj,
            rank: 2,
            scale: 0.5,
            a: values_a,
            b: values_b,
        }
    }

    #[test]
    fn narrowest_dtype_is_exact() {
        assert_eq!(StoredDtype::narrowest(&[1.0, -0.0, 0.5, 2f32.powi(120)]), StoredDtype::BF16);
        // 1 + 2^-10 needs f16's 10-bit mantissa; bf16 has 7.
        assert_eq!(StoredDtype::narrowest(&[1.0 + 1.0 / 1024.0]), StoredDtype::F16);
        assert_eq!(StoredDtype::narrowest(&[0.1]), StoredDtype::F32);
        // f16 cannot hold 1e6 at all.
        assert_eq!(StoredDtype::narrowest(&[1.0e6 + 1.0]), StoredDtype::F32);
    }

    #[test]
    fn blob_round_trips_and_is_aligned() {
        let w = vec![
            pair(vec![1.0, 2.0, 0.5, -4.0], vec![0.1; 6]),
            LoraWeights {
                layer: 3,
                module: TargetModule::QProj,
                ..pair(vec![1.5; 4], vec![1.0 + 1.0 / 1024.0; 6])
            },
        ];
        let hash = [9u8; 32];
        let blob = encode_blob(&w, &hash);
        assert_eq!(blob.dtype, 3);
        assert_eq!(blob.bytes.len() % ALIGN, 0);
        let pairs = parse_manifest(&blob.bytes, &hash).unwrap();
        assert!(pairs.iter().all(|p| p.a.offset % 4096 == 0 && p.b.offset % 4096 == 0));
        assert_eq!(pairs[0].a.dtype, StoredDtype::BF16);
        assert_eq!(pairs[0].b.dtype, StoredDtype::F32);
        assert_eq!(pairs[1].b.dtype, StoredDtype::F16);
        check_crcs(&blob.bytes, &pairs).unwrap();
        assert_eq!(decode_weights(&blob.bytes, &pairs), w);
        assert!(parse_manifest(&blob.bytes, &[0u8; 32]).unwrap_err().contains("expects"));
    }

    #[test]
    fn damage_is_detected() {
        let w = vec![pair(vec![1.0, 2.0, 0.5, -4.0], vec![0.25; 6])];
        let blob = encode_blob(&w, &[1; 32]);
        let pairs = parse_manifest(&blob.bytes, &[1; 32]).unwrap();
        let mut bad = blob.bytes.clone();
        bad[pairs[0].b.offset as usize + 1] ^= 1;
        let (tensor, _, _) = check_crcs(&bad, &pairs).unwrap_err();
        assert!(tensor.ends_with("v_proj.lora_B.weight"), "{tensor}");
        let mut bad = blob.bytes.clone();
        bad[70] ^= 1;
        assert!(parse_manifest(&bad, &[1; 32]).unwrap_err().contains("checksum"));
        assert!(parse_manifest(&blob.bytes[..100], &[1; 32]).is_err());
        assert!(parse_manifest(&[], &[1; 32]).is_err());
    }
}
