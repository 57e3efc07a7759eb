//! The record hash and the Merkle commitment: pinned encodings and structural properties.
//!
//! The golden values were computed once by this crate and hard-coded: any change to the canonical
//! record bytes or the Merkle scheme breaks these tests, because contracts and other
//! implementations depend on both.

use lorad_datanet::{
    MerkleTree, RecordContent, canonical_record_bytes, leaf_hash, merkle_proof, merkle_root,
    node_hash, parse_records, record_hash, verify_merkle_proof,
};
use lorad_model::ChatMessage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use sha3::Keccak256;

const GOLDEN_TEXT: &str = "07e79c2bdb107b0437b60746af7d48dd9184c04b707497395d5b6e63441d6033";
const GOLDEN_CHAT: &str = "c100643a9ed87668570c2c2072669582931446712e66168d5808d7341f920b19";
/// Root over the record hashes [0x11; 32], [0x22; 32], [0x33; 32] (the docs' worked example).
const GOLDEN_ROOT3: &str = "0x1f10d5ff7dac9f8fdce71943b76fc8219096e56f12fb972fae2f1dd70900be9b";

fn text_record() -> (&'static str, &'static str, RecordContent) {
    ("rec-1", "alice", RecordContent::Text("Hello, Datanet!\nSecond line: caf\u{e9}.".into()))
}

fn chat_record() -> (&'static str, &'static str, RecordContent) {
    (
        "42",
        "bob",
        RecordContent::Chat(vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "2+2?"),
            ChatMessage::new("assistant", "4"),
        ]),
    )
}

/// `u32` big-endian length, then the bytes: built by hand, independently of the crate.
fn lp(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[test]
fn golden_text_record_hash() {
    let (id, contributor, content) = text_record();
    let mut bytes = b"lorad/datanet/record/v1".to_vec();
    lp(&mut bytes, "rec-1");
    lp(&mut bytes, "alice");
    bytes.push(0);
    lp(&mut bytes, "Hello, Datanet!\nSecond line: caf\u{e9}.");
    assert_eq!(canonical_record_bytes(id, contributor, &content), bytes);
    let by_hand: [u8; 32] = Sha256::digest(&bytes).into();
    let h = record_hash(id, contributor, &content);
    assert_eq!(h, by_hand);
    assert_eq!(hex::encode(h), GOLDEN_TEXT);
}

#[test]
fn golden_chat_record_hash() {
    let (id, contributor, content) = chat_record();
    let mut bytes = b"lorad/datanet/record/v1".to_vec();
    lp(&mut bytes, "42");
    lp(&mut bytes, "bob");
    bytes.push(1);
    bytes.extend_from_slice(&3u32.to_be_bytes());
    for (role, text) in [("system", "Be brief."), ("user", "2+2?"), ("assistant", "4")] {
        lp(&mut bytes, role);
        lp(&mut bytes, text);
    }
    assert_eq!(canonical_record_bytes(id, contributor, &content), bytes);
    let by_hand: [u8; 32] = Sha256::digest(&bytes).into();
    let h = record_hash(id, contributor, &content);
    assert_eq!(h, by_hand);
    assert_eq!(hex::encode(h), GOLDEN_CHAT);
}

#[test]
fn hash_is_of_the_normalized_record() {
    // Integer id, padded contributor, CRLF, decomposed é, unknown field: same hash as the clean
    // record.
    let line = "{\"id\": \"  rec-1\", \"contributor\": \"alice \", \"text\": \"\\r\\n Hello, \
                Datanet!\\r\\nSecond line: cafe\\u0301.  \", \"lang\": \"en\"}\n\
                {\"id\": 42, \"contributor\": \"bob\", \"messages\": [{\"role\": \"system\", \
                \"content\": \"Be brief.\\r\"}, {\"role\": \"user\", \"content\": \" 2+2?\"}, \
                {\"role\": \"assistant\", \"content\": \"4\"}]}";
    let (records, problems) = parse_records(line.as_bytes());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(hex::encode(records[0].1.hash()), GOLDEN_TEXT);
    assert_eq!(hex::encode(records[1].1.hash()), GOLDEN_CHAT);
}

#[test]
fn every_field_changes_the_hash() {
    let (id, contributor, content) = text_record();
    let base = record_hash(id, contributor, &content);
    assert_ne!(record_hash("rec-2", contributor, &content), base);
    assert_ne!(record_hash(id, "alicf", &content), base);
    assert_ne!(record_hash(id, contributor, &RecordContent::Text("Hello".into())), base);
    // Length prefixes keep field boundaries apart.
    assert_ne!(
        record_hash("ab", "c", &RecordContent::Text("x".into())),
        record_hash("a", "bc", &RecordContent::Text("x".into()))
    );
    // Kind byte: a text record and a chat record never collide by construction.
    let chat = RecordContent::Chat(vec![ChatMessage::new("assistant", "x")]);
    assert_ne!(
        record_hash("a", "b", &chat),
        record_hash("a", "b", &RecordContent::Text("x".into()))
    );
}

// ---------------------------------------------------------------------------------------------
// Merkle

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    let mut k = Keccak256::new();
    for p in parts {
        k.update(p);
    }
    k.finalize().into()
}

/// The scheme written out again from its definition, with its own keccak calls.
fn reference_root(record_hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = record_hashes.iter().map(|h| keccak(&[&[0u8], h])).collect();
    if level.is_empty() {
        return [0; 32];
    }
    while level.len() > 1 {
        let mut next = Vec::new();
        let mut i = 0;
        while i < level.len() {
            if i + 1 < level.len() {
                let (a, b) = (level[i], level[i + 1]);
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                next.push(keccak(&[&[1u8], &lo, &hi]));
            } else {
                next.push(level[i]);
            }
            i += 2;
        }
        level = next;
    }
    level[0]
}

fn random_hashes(rng: &mut ChaCha8Rng, n: usize) -> Vec<[u8; 32]> {
    (0..n).map(|_| rng.random()).collect()
}

#[test]
fn golden_three_leaf_root() {
    // Keccak-256 as the EVM has it (not NIST SHA3-256): keccak256("") is c5d2...a470.
    assert_eq!(
        hex::encode(keccak(&[])),
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    );
    let hashes = [[0x11u8; 32], [0x22; 32], [0x33; 32]];
    let (l0, l1, l2) = (leaf_hash(&hashes[0]), leaf_hash(&hashes[1]), leaf_hash(&hashes[2]));
    assert_eq!(l0, keccak(&[&[0], &hashes[0]]));
    let n01 = node_hash(&l0, &l1);
    assert_eq!(n01, node_hash(&l1, &l0));
    let root = node_hash(&n01, &l2);
    assert_eq!(merkle_root(&hashes), root);
    assert_eq!(reference_root(&hashes), root);
    // Proofs: leaf 2 was promoted at the first level, so its proof is one sibling.
    assert_eq!(merkle_proof(&hashes, 0), vec![l1, l2]);
    assert_eq!(merkle_proof(&hashes, 2), vec![n01]);
    assert_eq!(format!("0x{}", hex::encode(root)), GOLDEN_ROOT3);
}

#[test]
fn all_proofs_verify_and_tampering_fails() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xDA7A);
    for n in 1..=70 {
        let hashes = random_hashes(&mut rng, n);
        let tree = MerkleTree::new(&hashes);
        let root = merkle_root(&hashes);
        assert_eq!(tree.root(), root);
        assert_eq!(reference_root(&hashes), root, "n = {n}");
        assert_eq!(tree.len(), n);
        let max_depth = (n as f64).log2().ceil() as usize;
        for (i, h) in hashes.iter().enumerate() {
            let proof = merkle_proof(&hashes, i);
            assert_eq!(tree.proof(i).as_ref(), Some(&proof));
            assert!(proof.len() <= max_depth, "n = {n}, i = {i}");
            assert!(verify_merkle_proof(&root, h, &proof), "n = {n}, i = {i}");

            let bit = rng.random_range(0..256);
            let flip = |x: &mut [u8; 32]| x[bit / 8] ^= 1 << (bit % 8);
            let mut leaf = *h;
            flip(&mut leaf);
            assert!(!verify_merkle_proof(&root, &leaf, &proof), "flipped leaf, n = {n}, i = {i}");
            let mut bad_root = root;
            flip(&mut bad_root);
            assert!(!verify_merkle_proof(&bad_root, h, &proof), "flipped root, n = {n}, i = {i}");
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = rng.random_range(0..bad.len());
                flip(&mut bad[k]);
                assert!(!verify_merkle_proof(&root, h, &bad), "flipped proof, n = {n}, i = {i}");
                // Dropping a level fails too.
                assert!(!verify_merkle_proof(&root, h, &proof[..proof.len() - 1]));
            }
            // A proof belongs to its own leaf.
            if n > 1 {
                let j = (i + 1) % n;
                assert!(!verify_merkle_proof(&root, &hashes[j], &proof), "n = {n}, i = {i}");
            }
        }
        assert!(tree.proof(n).is_none());
    }
}

#[test]
fn inner_node_cannot_pass_as_a_record() {
    // Second preimage: with domain bytes, the pair under the root is not a valid "record".
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let hashes = random_hashes(&mut rng, 4);
    let root = merkle_root(&hashes);
    let n01 = node_hash(&leaf_hash(&hashes[0]), &leaf_hash(&hashes[1]));
    let n23 = node_hash(&leaf_hash(&hashes[2]), &leaf_hash(&hashes[3]));
    assert_eq!(node_hash(&n01, &n23), root);
    assert!(!verify_merkle_proof(&root, &n01, &[n23]));
}

#[test]
fn root_depends_on_order_and_content() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let hashes = random_hashes(&mut rng, 5);
    let mut swapped = hashes.clone();
    swapped.swap(0, 4);
    assert_ne!(merkle_root(&hashes), merkle_root(&swapped));
    assert_ne!(merkle_root(&hashes), merkle_root(&hashes[..4]));
    assert_eq!(merkle_root(&[]), [0; 32]);
}
