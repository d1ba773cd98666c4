//! The canonical encoding behind the hash chains of the points ledger and the wallet ledger.
//!
//! Each field goes in as a length-prefixed byte string (or a fixed-width big-endian integer, or
//! a presence byte before an optional), so no two different entries encode alike; the previous
//! entry's hash goes in last. Written once so that the two ledgers cannot drift apart.

use sha2::{Digest, Sha256};

/// Length of an entry hash; a member's first entry chains to [`GENESIS_HASH`].
pub const HASH_LEN: usize = 32;
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// SHA-256 over fields added in a fixed order, starting with a version tag.
pub struct ChainHasher(Sha256);

impl ChainHasher {
    pub fn new(version_tag: &str) -> Self {
        let mut h = ChainHasher(Sha256::new());
        h.bytes(version_tag.as_bytes());
        h
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.0.update(v.to_be_bytes());
        self
    }

    /// A presence byte, then the text when present.
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.0.update([0u8]),
            Some(s) => {
                self.0.update([1u8]);
                self.text(s);
            }
        }
        self
    }

    pub fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            None => self.0.update([0u8]),
            Some(v) => {
                self.0.update([1u8]);
                self.int(v);
            }
        }
        self
    }

    /// Ends with the previous entry's hash.
    pub fn finish(mut self, prev: &[u8]) -> [u8; HASH_LEN] {
        self.bytes(prev);
        self.0.finalize().into()
    }
}
