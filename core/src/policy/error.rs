//! Errors about policy files. Every one says where (file, line, column when known, field path)
//! and how to fix it; none ever contains the value of a secret.

use std::fmt;
use std::path::PathBuf;

use serde::de;

use crate::crypto::KeyError;

/// Separates a message from its fix inside the text of a serde custom error, so our own value
/// checks can carry a precise hint through the YAML deserializer. A control character, so it
/// never occurs in serde's or the parser's own messages.
pub(super) const HINT_SEPARATOR: char = '\u{1f}';

/// A serde error carrying `message` and the `hint` that fixes it.
pub(super) fn invalid<E: de::Error>(message: impl fmt::Display, hint: impl fmt::Display) -> E {
    E::custom(format!("{message}{HINT_SEPARATOR}{hint}"))
}

/// Where in a policy something is: `policies/dev.yaml:12:3: objectives.rpo: `. Parts that are not
/// known are left out, so a [`Place::default`] prints nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// The policy file as the user named it.
    pub file: Option<PathBuf>,
    /// 1-based line of the field (or of the offending value).
    pub line: Option<u32>,
    /// 1-based column, when the parser knows it.
    pub column: Option<u32>,
    /// Dotted path of the field, e.g. `capture.seal_interval`.
    pub field: Option<String>,
}

impl Place {
    /// The last part of the field path (`uri` for `source.mongodb.uri`), for hints that talk
    /// about "the field" by name; `the field` when unknown.
    pub fn leaf(&self) -> String {
        match &self.field {
            Some(field) => {
                let leaf = field.rsplit('.').next().unwrap_or(field);
                format!("`{leaf}`")
            }
            None => "the field".into(),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        Ok(())
    }
}

/// What can be wrong with a policy or with the environment it refers to.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file itself cannot be read.
    #[error("cannot read policy file {}: {source}; check the path given to --policy", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The YAML does not parse, does not fit the schema, or a value breaks a rule.
    #[error("{place}{message}; {hint}")]
    Invalid {
        place: Place,
        message: String,
        hint: String,
    },

    /// A `{ env: VAR }` reference names a variable that is not set (or is empty).
    #[error("{place}environment variable {var} is {state}; export {var}=… or point {} at a file ({{ file: /path/to/secret }})", .place.leaf())]
    EnvMissing {
        place: Place,
        var: String,
        /// `not set`, `empty` or `not valid UTF-8`.
        state: &'static str,
    },

    /// A `{ file: PATH }` reference cannot be read.
    #[error("{place}cannot read secret file {}: {source}; mount the secret there, or point {} at an environment variable ({{ env: VARIABLE }})", .path.display(), .place.leaf())]
    SecretFile {
        place: Place,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `{ file: PATH }` reference names an empty file.
    #[error("{place}secret file {} is empty; put the value in it (a trailing newline is ignored)", .path.display())]
    SecretFileEmpty { place: Place, path: PathBuf },

    /// The keyring named by `repository.keyring` cannot be loaded.
    #[error("{place}{source}{hint}")]
    Keyring {
        place: Place,
        // Boxed: KeyError is large and this variant is rare.
        #[source]
        source: Box<KeyError>,
        /// `; …` with a fix when the keyring error lacks one, else empty.
        hint: &'static str,
    },
}

impl PolicyError {
    /// Where the error is, when it is about a place in a policy.
    pub fn place(&self) -> Option<&Place> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Invalid { place, .. }
            | PolicyError::EnvMissing { place, .. }
            | PolicyError::SecretFile { place, .. }
            | PolicyError::SecretFileEmpty { place, .. }
            | PolicyError::Keyring { place, .. } => Some(place),
        }
    }

    /// The same error, placed at `place` (used to attach the file and field to errors from
    /// [`super::SecretRef::resolve`], which knows neither).
    pub fn at(mut self, new_place: Place) -> Self {
        match &mut self {
            PolicyError::Read { .. } => {}
            PolicyError::Invalid { place, .. }
            | PolicyError::EnvMissing { place, .. }
            | PolicyError::SecretFile { place, .. }
            | PolicyError::SecretFileEmpty { place, .. }
            | PolicyError::Keyring { place, .. } => *place = new_place,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_print_what_is_known() {
        assert_eq!(Place::default().to_string(), "");
        let full = Place {
            file: Some("policies/dev.yaml".into()),
            line: Some(12),
            column: Some(3),
            field: Some("objectives.rpo".into()),
        };
        assert_eq!(full.to_string(), "policies/dev.yaml:12:3: objectives.rpo: ");
        let no_column = Place {
            column: None,
            ..full.clone()
        };
        assert_eq!(
            no_column.to_string(),
            "policies/dev.yaml:12: objectives.rpo: "
        );
        assert_eq!(full.leaf(), "`rpo`");
    }
}
