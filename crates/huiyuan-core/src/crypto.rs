//! Keys and the three things done with them: sealing personal data (AES-256-GCM), keyed
//! hashes for lookups and secrets (HMAC-SHA256), and signing member codes (Ed25519, one key
//! per brand, so a till can check a code offline with the brand's public key).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The installation's root secret. Every working key is derived from it with HKDF, so one
/// value (a file in the data folder, or `HUIYUAN_MASTER_KEY`) is all an operator must keep safe.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Reads the base64 form written by [`MasterKey::to_base64`].
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| CryptoError::BadMasterKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(arr))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("ciphertext cannot be opened with this key (wrong key, or tampered data)")]
    Unsealable,
}

/// Format version of sealed data; the first byte of every ciphertext, for future key rotation.
const SEAL_V1: u8 = 1;

/// The working keys.
#[derive(Clone)]
pub struct Keyring {
    sealing: Aes256Gcm,
    lookup: Hmac<Sha256>,
    secrets: Hmac<Sha256>,
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"huiyuan/v1"), &master.0);
        let derive = |info: &[u8]| {
            let mut k = [0u8; 32];
            hk.expand(info, &mut k)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            k
        };
        let hmac =
            |k: [u8; 32]| <Hmac<Sha256> as Mac>::new_from_slice(&k).expect("HMAC takes any key length");
        Self {
            sealing: Aes256Gcm::new(&derive(b"seal").into()),
            lookup: hmac(derive(b"lookup")),
            secrets: hmac(derive(b"secrets")),
        }
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the row it belongs to): a ciphertext
    /// copied into another row does not open.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .sealing
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(SEAL_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 13 || sealed[0] != SEAL_V1 {
            return Err(CryptoError::Unsealable);
        }
        self.sealing
            .decrypt(
                Nonce::from_slice(&sealed[1..13]),
                Payload {
                    msg: &sealed[13..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Unsealable)
    }

    /// The blind index of a value: equal inputs give equal hashes, and without the key the hash
    /// says nothing. Parts are length-prefixed so `("ab","c")` and `("a","bc")` differ.
    pub fn lookup_hash(&self, parts: &[&str]) -> Vec<u8> {
        keyed(&self.lookup, parts)
    }

    /// The stored form of a bearer secret (API key, session token).
    pub fn secret_hash(&self, secret: &str) -> Vec<u8> {
        keyed(&self.secrets, &[secret])
    }
}

fn keyed(mac: &Hmac<Sha256>, parts: &[&str]) -> Vec<u8> {
    let mut m = mac.clone();
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p.as_bytes());
    }
    m.finalize().into_bytes().to_vec()
}

/// Random bytes as URL-safe base64, for tokens and nonces.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_in_its_context_and_unaltered() {
        let k = Keyring::new(&MasterKey::generate());
        let sealed = k.seal("member:1", b"13800138000");
        assert_eq!(k.open("member:1", &sealed).unwrap(), b"13800138000");
        assert_eq!(k.open("member:2", &sealed), Err(CryptoError::Unsealable));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(k.open("member:1", &tampered), Err(CryptoError::Unsealable));
        let other = Keyring::new(&MasterKey::generate());
        assert_eq!(other.open("member:1", &sealed), Err(CryptoError::Unsealable));
        assert!(!sealed.windows(11).any(|w| w == b"13800138000"));
    }

    #[test]
    fn lookup_hashes_are_keyed_and_unambiguous() {
        let m = MasterKey::generate();
        let (a, b) = (Keyring::new(&m), Keyring::new(&m));
        assert_eq!(
            a.lookup_hash(&["b", "phone", "x"]),
            b.lookup_hash(&["b", "phone", "x"])
        );
        assert_ne!(a.lookup_hash(&["ab", "c"]), a.lookup_hash(&["a", "bc"]));
        assert_ne!(
            a.lookup_hash(&["x"]),
            Keyring::new(&MasterKey::generate()).lookup_hash(&["x"])
        );
    }

    #[test]
    fn master_key_round_trips() {
        let m = MasterKey::generate();
        assert_eq!(MasterKey::from_base64(&m.to_base64()).unwrap().0, m.0);
        assert_eq!(
            MasterKey::from_base64("short").unwrap_err(),
            CryptoError::BadMasterKey
        );
    }
}
