//! Secret references: a policy never holds a password-bearing value itself, only where to find
//! it (`{ env: VARIABLE }` or `{ file: /path }`). [`SecretRef::resolve`] reads it into a
//! [`Secret`] (`crate::secret`), which wipes its memory on drop and never prints its value.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::error::{invalid, Place, PolicyError};
use crate::secret::Secret;

/// What a secret reference looks like, quoted in errors.
pub const SECRET_FORMS: &str = "write `{ env: VARIABLE }` (the value is read from that environment variable) or `{ file: /path/to/secret }` (e.g. a mounted Kubernetes Secret)";

/// Where a secret value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable holding the value.
    Env(String),
    /// A file holding the value; one trailing newline (`\n` or `\r\n`) is dropped because
    /// mounted secrets and `echo > file` usually end with one.
    File(PathBuf),
}

impl SecretRef {
    /// Reads the value. Errors name the variable or file and the fix but not the field: callers
    /// that know it attach it with [`PolicyError::at`] (as [`super::Policy::resolve_secret`]
    /// does).
    pub fn resolve(&self) -> Result<Secret, PolicyError> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(value) if value.is_empty() => Err(env_missing(var, "empty")),
                Ok(value) => Ok(Secret::new(value)),
                Err(std::env::VarError::NotPresent) => Err(env_missing(var, "not set")),
                Err(std::env::VarError::NotUnicode(_)) => Err(env_missing(var, "not valid UTF-8")),
            },
            SecretRef::File(path) => {
                let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    PolicyError::SecretFile {
                        place: Place::default(),
                        path: path.clone(),
                        source,
                    }
                })?);
                let trimmed = text.trim_end_matches('\n').trim_end_matches('\r').len();
                text.truncate(trimmed);
                if text.is_empty() {
                    return Err(PolicyError::SecretFileEmpty {
                        place: Place::default(),
                        path: path.clone(),
                    });
                }
                // Moves the buffer (no copy); the Secret zeroes it, truncated bytes included.
                Ok(Secret::new(std::mem::take(&mut *text)))
            }
        }
    }

    /// `$VAR` or `file /path`, for messages (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("${var}"),
            SecretRef::File(path) => format!("file {}", path.display()),
        }
    }
}

fn env_missing(var: &str, state: &'static str) -> PolicyError {
    PolicyError::EnvMissing {
        place: Place::default(),
        var: var.to_owned(),
        state,
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Environment variable names as shells accept them.
fn valid_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads the body of `{ env: VAR }` / `{ file: PATH }` from a YAML mapping: exactly one of the
/// two keys. Shared by every field that takes a reference.
pub(super) fn secret_from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<SecretRef, A::Error> {
    let Some(key) = map.next_key::<String>()? else {
        return Err(invalid(
            "an empty mapping is not a secret reference",
            SECRET_FORMS,
        ));
    };
    let secret = match key.as_str() {
        "env" => {
            let var: String = map.next_value()?;
            if !valid_env_name(&var) {
                return Err(invalid(
                    format!("`{var}` is not an environment variable name"),
                    "use letters, digits and `_`, not starting with a digit, e.g. `{ env: MC_MONGODB_URI }`",
                ));
            }
            SecretRef::Env(var)
        }
        "file" => {
            let path: PathBuf = map.next_value()?;
            if path.as_os_str().is_empty() {
                return Err(invalid("the file path is empty", SECRET_FORMS));
            }
            SecretRef::File(path)
        }
        other => {
            return Err(invalid(
                format!("unknown field `{other}`, expected `env` or `file`"),
                SECRET_FORMS,
            ))
        }
    };
    if let Some(extra) = map.next_key::<String>()? {
        return Err(invalid(
            format!("`{extra}` given beside `{key}`"),
            "a secret reference has exactly one key: `env` or `file`",
        ));
    }
    Ok(secret)
}

/// The message for a value written inline where a reference is required. It must not quote the
/// value: it may be a URL with a password.
pub(super) const INLINE_SECRET: &str =
    "an inline value is not allowed here because it could carry a password";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{ env: VARIABLE }` or `{ file: /path/to/secret }`")
            }
            fn visit_str<E: de::Error>(self, _inline: &str) -> Result<SecretRef, E> {
                Err(invalid(INLINE_SECRET, SECRET_FORMS))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
                secret_from_map(map)
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Resolves `secret` for the policy field `place` names; errors carry that place.
pub(super) fn resolve_at(secret: &SecretRef, place: Place) -> Result<Secret, PolicyError> {
    secret.resolve().map_err(|e| e.at(place))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            ("value\n", "value"),
            ("value\r\n", "value"),
            ("value", "value"),
            ("two\nlines\n", "two\nlines"),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, content).unwrap();
            let secret = SecretRef::File(path).resolve().unwrap();
            assert_eq!(secret.expose(), expected, "{content:?}");
        }
    }

    #[test]
    fn missing_sources_name_the_variable_or_file() {
        let err = SecretRef::Env("MC_POLICY_TEST_SURELY_UNSET_1".into())
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MC_POLICY_TEST_SURELY_UNSET_1 is not set")
                && err.contains("export MC_POLICY_TEST_SURELY_UNSET_1=…"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = SecretRef::File(missing.clone())
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&missing.display().to_string()) && err.contains("mount the secret"),
            "{err}"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = SecretRef::File(empty).resolve().unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("MC_MONGODB_URI") && valid_env_name("_x1"));
        for bad in ["", "1X", "A-B", "A B", "$A"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
