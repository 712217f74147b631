//! Encryption of repository objects: the keyring of key-encryption keys (KEKs), per-segment data
//! keys wrapped by them (envelope encryption), and the STREAM framing that encrypts a segment's
//! body frame by frame. `docs/format.md` §3.3 and §4 specify the bytes.

pub mod keys;
pub mod stream;

pub use keys::{DataKey, KeyError, KeyId, Keyring, KeyringSource, SecretKey, WrappedKey};
