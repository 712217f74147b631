//! [`Secret`]: a resolved secret value (a password, a connection string with one), zeroed when
//! dropped and printed as `<redacted>`.
//!
//! A leaf: it depends on nothing else in the crate, so both the policy (which resolves secret
//! references into it) and the Kafka client (which takes SASL passwords as one) can use it
//! without depending on each other.

use std::fmt;

use zeroize::Zeroizing;

/// A resolved secret value: zeroed when dropped, printed as `<redacted>`.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value (taking ownership, so no unzeroed copy is left behind by this call).
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The value itself. Keep what you derive from it out of logs and errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("mongodb://admin:hunter2@db".into());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.to_string(), "<redacted>");
        assert_eq!(secret.expose(), "mongodb://admin:hunter2@db");
    }
}
