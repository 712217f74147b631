//! Keys: the keyring of KEKs loaded from a file or an environment variable, key ids, and the
//! wrapping of per-segment data keys (`docs/format.md` §4).
//!
//! Key material lives in [`SecretKey`], which zeroes itself when dropped and prints as
//! `<redacted>` in `Debug`, so no log line, error or panic message can show a key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of every key (KEK and data key): AES-256.
pub const KEY_LEN: usize = 32;
/// Length of a wrapped data key: 12-byte nonce, 32-byte ciphertext, 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 12 + KEY_LEN + 16;

const KEY_ID_CONTEXT: &[u8] = b"mc-backup key id v1";
const WRAP_CONTEXT: &[u8] = b"mc-backup data key v1";

/// 32 bytes of key material. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut bytes[..])?;
        Ok(Self(bytes))
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The id naming this key (first 8 bytes of SHA-256 over a context string and the key).
    pub fn id(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update(KEY_ID_CONTEXT);
        h.update(&self.0[..]);
        KeyId(hex::encode(&h.finalize()[..8]))
    }

    /// The key as one keyring line (base64). Zeroed when the returned string is dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(&self.0[..]))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted>)")
    }
}

/// A per-segment data key: a [`SecretKey`] made fresh for every segment.
pub type DataKey = SecretKey;

/// The public name of a KEK: 16 hex digits. Safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses an id as written in a segment header.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data key wrapped by a KEK: nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(pub [u8; WRAPPED_KEY_LEN]);

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Wrapped keys are not secret, but there is no reason to spray them into logs either.
        write!(f, "WrappedKey({} bytes)", WRAPPED_KEY_LEN)
    }
}

/// Where a keyring comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    /// A file with one base64 key per line (e.g. a mounted Kubernetes Secret).
    File(PathBuf),
    /// An environment variable holding the same text (lines or commas between keys).
    Env(String),
}

impl fmt::Display for KeyringSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringSource::File(p) => write!(f, "keyring file {}", p.display()),
            KeyringSource::Env(v) => write!(f, "keyring variable ${v}"),
        }
    }
}

/// Errors about keys. None of them contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable ${var} is not set; export the keyring there (one base64 key per line) or use a keyring file")]
    EnvMissing { var: String },
    #[error("{origin} holds no key; generate one with `mc-agent key generate --keyring FILE`")]
    Empty { origin: String },
    #[error("{origin}, line {line}: {reason}; each line must be 32 random bytes in base64 (44 characters), e.g. from `mc-agent key generate`")]
    BadKey {
        origin: String,
        line: usize,
        reason: String,
    },
    #[error("{origin}, line {line}: the same key as line {first}; remove the duplicate")]
    Duplicate {
        origin: String,
        line: usize,
        first: usize,
    },
    #[error("key {key_id} is not in the keyring (it has {available}); add the key that wrote this data to the keyring")]
    UnknownKey { key_id: String, available: String },
    #[error("the data key could not be unwrapped with key {key_id}: the key with that id is not the one that wrapped it, or the wrapped key was altered")]
    UnwrapFailed { key_id: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} already exists; use `mc-agent key rotate` to add a key to an existing keyring"
    )]
    Exists { path: PathBuf },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("encryption failed: {0}")]
    Cipher(&'static str),
}

/// The KEKs this process may use. The first is the primary: new segments are wrapped with it.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(KeyId, SecretKey)>,
    origin: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("origin", &self.origin)
            .field("key_ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring of the given keys, the first being the primary.
    pub fn new(keys: Vec<SecretKey>, origin: impl Into<String>) -> Result<Self, KeyError> {
        let origin = origin.into();
        if keys.is_empty() {
            return Err(KeyError::Empty { origin });
        }
        let keys = keys.into_iter().map(|k| (k.id(), k)).collect();
        Ok(Self { keys, origin })
    }

    /// Loads a keyring from where the policy says.
    pub fn load(source: &KeyringSource) -> Result<Self, KeyError> {
        let origin = source.to_string();
        let text = match source {
            KeyringSource::File(path) => {
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::Read {
                    origin: origin.clone(),
                    source: e,
                })?)
            }
            KeyringSource::Env(var) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| KeyError::EnvMissing { var: var.clone() })?
                    .replace(',', "\n"),
            ),
        };
        Self::parse(&text, origin)
    }

    /// Parses keyring text: one base64 key per line, `#` comments and blank lines ignored.
    pub fn parse(text: &str, origin: impl Into<String>) -> Result<Self, KeyError> {
        let origin = origin.into();
        let mut keys: Vec<(usize, SecretKey)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut decoded = Zeroizing::new(Vec::with_capacity(KEY_LEN));
            BASE64
                .decode_vec(line, &mut decoded)
                .map_err(|_| KeyError::BadKey {
                    origin: origin.clone(),
                    line: line_no,
                    reason: "not valid base64".into(),
                })?;
            let bytes: [u8; KEY_LEN] =
                decoded
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyError::BadKey {
                        origin: origin.clone(),
                        line: line_no,
                        reason: format!("decodes to {} bytes, not {KEY_LEN}", decoded.len()),
                    })?;
            let key = SecretKey::from_bytes(bytes);
            if let Some((first, _)) = keys.iter().find(|(_, k)| k.expose() == key.expose()) {
                return Err(KeyError::Duplicate {
                    origin,
                    line: line_no,
                    first: *first,
                });
            }
            keys.push((line_no, key));
        }
        Self::new(keys.into_iter().map(|(_, k)| k).collect(), origin)
    }

    /// The key new data is wrapped with.
    pub fn primary(&self) -> (&KeyId, &SecretKey) {
        let (id, key) = &self.keys[0];
        (id, key)
    }

    /// The key with this id, or an error naming the ids the ring has.
    pub fn get(&self, id: &str) -> Result<&SecretKey, KeyError> {
        self.keys
            .iter()
            .find(|(kid, _)| kid.as_str() == id)
            .map(|(_, k)| k)
            .ok_or_else(|| KeyError::UnknownKey {
                key_id: id.to_owned(),
                available: self
                    .ids()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Ids of all keys, primary first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(id, _)| id)
    }

    /// Where the keyring was loaded from (for messages).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Wraps a data key under the primary KEK. Returns the KEK's id and the wrapped bytes.
    pub fn wrap(&self, data_key: &DataKey) -> Result<(KeyId, WrappedKey), KeyError> {
        let (id, kek) = self.primary();
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce)?;
        let cipher = Aes256Gcm::new(kek.expose().into());
        let aad = wrap_aad(id);
        let sealed = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &data_key.expose()[..],
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Cipher("wrapping a data key"))?;
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..12].copy_from_slice(&nonce);
        out[12..].copy_from_slice(&sealed);
        Ok((id.clone(), WrappedKey(out)))
    }

    /// Unwraps a data key with the KEK named `key_id`.
    pub fn unwrap(&self, key_id: &str, wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        let kek = self.get(key_id)?;
        let id = KeyId(key_id.to_owned());
        let cipher = Aes256Gcm::new(kek.expose().into());
        let aad = wrap_aad(&id);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&wrapped.0[..12]);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    (&nonce).into(),
                    Payload {
                        msg: &wrapped.0[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| KeyError::UnwrapFailed {
                    key_id: key_id.to_owned(),
                })?,
        );
        let bytes: [u8; KEY_LEN] =
            plain
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::UnwrapFailed {
                    key_id: key_id.to_owned(),
                })?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// The keyring as file text, primary first. Zeroed when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# mc-backup keyring: one base64 key per line; the first is the primary.\n# Keep every key as long as data written with it is retained.\n",
        ));
        for (id, key) in &self.keys {
            text.push_str(&format!("# key id {id}\n"));
            text.push_str(&key.to_base64());
            text.push('\n');
        }
        text
    }
}

fn wrap_aad(id: &KeyId) -> Vec<u8> {
    [WRAP_CONTEXT, id.as_str().as_bytes()].concat()
}

fn fill_random(buf: &mut [u8]) -> Result<(), KeyError> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| KeyError::Random(e.to_string()))
}

/// Creates a new keyring file holding one fresh key. Refuses to replace an existing file.
pub fn create_keyring_file(path: &Path) -> Result<Keyring, KeyError> {
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    let ring = Keyring::new(
        vec![SecretKey::generate()?],
        KeyringSource::File(path.to_owned()).to_string(),
    )?;
    write_keyring_file(path, &ring)?;
    Ok(ring)
}

/// Adds a fresh key to a keyring file as its new primary, keeping the old keys (they still open
/// old segments). Returns the new keyring.
pub fn rotate_keyring_file(path: &Path) -> Result<Keyring, KeyError> {
    let old = Keyring::load(&KeyringSource::File(path.to_owned()))?;
    let mut keys = vec![SecretKey::generate()?];
    keys.extend(old.keys.iter().map(|(_, k)| k.clone()));
    let ring = Keyring::new(keys, old.origin)?;
    write_keyring_file(path, &ring)?;
    Ok(ring)
}

/// Replaces `path` atomically (temp file, fsync, rename, directory fsync) with mode 0600.
fn write_keyring_file(path: &Path, ring: &Keyring) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir).map_err(err)?;
    let text = ring.to_text();
    tmp.1.write_all(text.as_bytes()).map_err(err)?;
    tmp.1.sync_all().map_err(err)?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file in `dir` readable by its owner only.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut suffix)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let path = dir.join(format!(".keyring-{}.tmp", hex::encode(suffix)));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Keyring {
        Keyring::new(
            (0..n).map(|_| SecretKey::generate().unwrap()).collect(),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn wrap_and_unwrap_round_trip() {
        let ring = ring(1);
        let dk = SecretKey::generate().unwrap();
        let (id, wrapped) = ring.wrap(&dk).unwrap();
        let back = ring.unwrap(id.as_str(), &wrapped).unwrap();
        assert_eq!(back.expose(), dk.expose());
    }

    #[test]
    fn rotated_ring_opens_old_data_and_unknown_key_fails_clearly() {
        let old = ring(1);
        let dk = SecretKey::generate().unwrap();
        let (id_a, wrapped) = old.wrap(&dk).unwrap();

        // B becomes primary, A stays: old data still opens, new data uses B.
        let b = SecretKey::generate().unwrap();
        let rotated = Keyring::new(vec![b.clone(), old.keys[0].1.clone()], "rotated").unwrap();
        assert_eq!(
            rotated.unwrap(id_a.as_str(), &wrapped).unwrap().expose(),
            dk.expose()
        );
        assert_eq!(rotated.primary().0, &b.id());

        // A keyring without A names the missing key and what it has.
        let without_a = Keyring::new(vec![b.clone()], "only-b").unwrap();
        let err = without_a
            .unwrap(id_a.as_str(), &wrapped)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(id_a.as_str()) && err.contains(b.id().as_str()),
            "{err}"
        );
    }

    #[test]
    fn tampered_wrapped_key_fails() {
        let ring = ring(1);
        let (id, mut wrapped) = ring.wrap(&SecretKey::generate().unwrap()).unwrap();
        wrapped.0[20] ^= 1;
        assert!(matches!(
            ring.unwrap(id.as_str(), &wrapped),
            Err(KeyError::UnwrapFailed { .. })
        ));
    }

    #[test]
    fn parse_reports_line_and_never_echoes_the_key() {
        let good = SecretKey::generate().unwrap().to_base64();
        let text = format!("# comment\n\n{}\nnot-base64!!\n", &*good);
        let err = Keyring::parse(&text, "keyring file k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("base64"), "{err}");
        assert!(!err.contains(good.as_str()));

        let short = BASE64.encode([7u8; 16]);
        let err = Keyring::parse(&short, "k").unwrap_err().to_string();
        assert!(err.contains("16 bytes"), "{err}");

        let dup = format!("{}\n{}\n", &*good, &*good);
        assert!(matches!(
            Keyring::parse(&dup, "k"),
            Err(KeyError::Duplicate {
                line: 2,
                first: 1,
                ..
            })
        ));
        assert!(matches!(
            Keyring::parse("# nothing\n", "k"),
            Err(KeyError::Empty { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let key = SecretKey::from_bytes([0x41; 32]);
        let ring = Keyring::new(vec![key.clone()], "k").unwrap();
        for shown in [
            format!("{key:?}"),
            format!("{ring:?}"),
            format!("{ring:#?}"),
        ] {
            assert!(!shown.contains(key.to_base64().as_str()), "{shown}");
            assert!(!shown.contains("65, 65"), "{shown}");
        }
    }

    #[test]
    fn key_files_are_created_private_and_rotated_in_place() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let first = create_keyring_file(&path).unwrap();
        assert!(matches!(
            create_keyring_file(&path),
            Err(KeyError::Exists { .. })
        ));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let rotated = rotate_keyring_file(&path).unwrap();
        let ids: Vec<_> = rotated.ids().cloned().collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            &ids[1],
            first.primary().0,
            "the old primary is kept, second"
        );
        let reloaded = Keyring::load(&KeyringSource::File(path.clone())).unwrap();
        assert_eq!(reloaded.ids().cloned().collect::<Vec<_>>(), ids);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
