//! Repository URLs: where a repository lives, as the user writes it, and opening the matching
//! backend.
//!
//! Accepted forms:
//!
//! - a plain path: `/var/backups/mc`, `./repo`
//! - `file:///abs/path`
//! - `s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false&object_lock=MODE:DURATION&sse=ALG&sse_kms_key_id=ID]`
//!
//! The S3 form's parameters are checked in [`super::s3`] ([`S3Config::from_url`]); the generic
//! URL text helpers are in `urltext`, so neither depends on the other's half.
//!
//! URLs never carry credentials: `s3://key:secret@bucket` is refused (credentials come from the
//! AWS chain), and any URL echoed in a message has its user-info redacted.

use std::fmt;
use std::path::PathBuf;

use super::s3::S3Config;
pub use super::urltext::redact;
use super::urltext::{userinfo_span, EXPECTED};
use super::StorageError;

/// Where a repository lives.
// Parsed once per process and rarely moved: boxing the S3 variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// A directory on a local or mounted filesystem.
    Local(PathBuf),
    /// A bucket (and prefix) of an S3-compatible service.
    S3(S3Config),
}

impl RepoUrl {
    /// Parses a repository location; errors name the (redacted) URL, the reason and the
    /// expected form.
    pub fn parse(input: &str) -> Result<RepoUrl, StorageError> {
        let err = |reason: String| StorageError::InvalidUrl {
            url: redact(input),
            reason,
        };
        if input.is_empty() {
            return Err(err(format!("empty repository location; {EXPECTED}")));
        }
        let Some(scheme) = scheme_of(input) else {
            return Ok(RepoUrl::Local(PathBuf::from(input)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => parse_file(input).map_err(err),
            "s3" => S3Config::from_url(input).map(RepoUrl::S3).map_err(err),
            other => Err(err(format!("unknown scheme {other:?}; {EXPECTED}"))),
        }
    }
}

/// The scheme of `scheme://…`, or `None` for a plain path. `s3:bucket` or `file:/x` (a known
/// scheme without `//`) count as URLs so they fail clearly instead of naming a local directory.
fn scheme_of(input: &str) -> Option<&str> {
    let colon = input.find(':')?;
    let scheme = &input[..colon];
    let valid = scheme.len() > 1 // one letter would be a Windows drive (`C:`)
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !valid {
        return None;
    }
    let known = matches!(scheme.to_ascii_lowercase().as_str(), "s3" | "file");
    (input[colon..].starts_with("://") || known).then_some(scheme)
}

fn parse_file(input: &str) -> Result<RepoUrl, String> {
    if !input[input.find(':').unwrap_or(0)..].starts_with("://") {
        return Err(format!("file URLs have three slashes; {EXPECTED}"));
    }
    if userinfo_span(input).is_some() {
        return Err("file URLs take no user name or password".into());
    }
    let url = url::Url::parse(input).map_err(|e| format!("{e}; {EXPECTED}"))?;
    if let Some(host) = url
        .host_str()
        .filter(|h| !h.is_empty() && *h != "localhost")
    {
        return Err(format!(
            "file URLs name a local path, not host {host:?}; use file:///absolute/path (three slashes) or a plain path"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("file URLs take no query (?…) or fragment (#…)".into());
    }
    let path = url
        .to_file_path()
        .map_err(|()| format!("not a local absolute path; {EXPECTED}"))?;
    Ok(RepoUrl::Local(path))
}

/// Prints the URL form, which [`RepoUrl::parse`] reads back; never contains credentials.
impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoUrl::Local(path) => write!(f, "{}", path.display()),
            RepoUrl::S3(c) => c.write_url(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open;
    use crate::storage::s3::{LockMode, ObjectLockSettings};
    use std::time::Duration;

    fn s3(input: &str) -> S3Config {
        match RepoUrl::parse(input) {
            Ok(RepoUrl::S3(c)) => c,
            other => panic!("{input}: {other:?}"),
        }
    }

    #[test]
    fn local_paths() {
        for (input, path) in [
            ("/var/backups/mc", "/var/backups/mc"),
            ("./repo", "./repo"),
            ("repo", "repo"),
            ("file:///abs/path", "/abs/path"),
            ("file:///with%20space", "/with space"),
            ("file://localhost/abs", "/abs"),
            ("C:\\backups", "C:\\backups"),
        ] {
            assert_eq!(
                RepoUrl::parse(input).unwrap(),
                RepoUrl::Local(path.into()),
                "{input}"
            );
        }
    }

    #[test]
    fn s3_urls() {
        let c = s3("s3://my-bucket");
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("my-bucket", ""));
        assert_eq!(
            (c.endpoint, c.region, c.force_path_style),
            (None, None, false)
        );

        let c = s3("s3://my-bucket/backups/prod/");
        assert_eq!(c.prefix, "backups/prod");

        let c = s3("s3://b.example/p?endpoint=http://127.0.0.1:18333&region=us-east-1&object_lock=governance:30d&sse=aws:kms&sse_kms_key_id=arn:aws:kms:k");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:18333"));
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert!(
            c.force_path_style,
            "path-style by default with a custom endpoint"
        );
        assert_eq!(
            c.object_lock,
            Some(ObjectLockSettings {
                mode: LockMode::Governance,
                retain_for: Duration::from_secs(30 * 86400)
            })
        );
        assert_eq!(c.sse.as_deref(), Some("aws:kms"));
        assert_eq!(c.sse_kms_key_id.as_deref(), Some("arn:aws:kms:k"));

        let c = s3("s3://bkt?endpoint=https://s3.local&path_style=false&object_lock=COMPLIANCE:1y");
        assert!(!c.force_path_style);
        assert_eq!(c.object_lock.map(|l| l.mode), Some(LockMode::Compliance));
        assert!(c.static_credentials.is_none());
    }

    #[test]
    fn bad_urls_say_why() {
        for (input, needle) in [
            ("", "empty"),
            ("ftp://host/x", "unknown scheme \"ftp\""),
            ("s3:bucket", "s3://bucket/prefix"),
            ("file://server/share", "not host \"server\""),
            ("file:///x?y=1", "no query"),
            ("s3:///prefix", "missing bucket"),
            ("s3://", "missing bucket"),
            ("s3://Upper", "lower-case"),
            ("s3://ab", "3 to 63"),
            ("s3://-bucket", "start and end"),
            ("s3://192.168.1.1", "IP"),
            ("s3://bucket:9000/x", "endpoint=http://host:port"),
            ("s3://bucket/a/../b", "invalid prefix"),
            ("s3://bucket/a/%2E%2E/b", "invalid prefix"),
            ("s3://bucket/a//b", "invalid prefix"),
            (
                "s3://bucket?colour=blue",
                "unknown query parameter \"colour\"",
            ),
            ("s3://bucket?region=us-east-1&region=eu-west-1", "twice"),
            ("s3://bucket?path_style=maybe", "path_style"),
            ("s3://bucket?object_lock=governance", "governance:DURATION"),
            ("s3://bucket?object_lock=legal:30d", "unknown mode"),
            (
                "s3://bucket?object_lock=governance:30 fortnights",
                "bad duration",
            ),
            ("s3://bucket?object_lock=governance:0s", "at least 1s"),
            ("s3://bucket?sse=rot13", "sse must be"),
            ("s3://bucket?sse_kms_key_id=k", "needs sse=aws:kms"),
            ("s3://bucket?endpoint=ftp://x", "invalid endpoint"),
            ("s3://bucket?endpoint=127.0.0.1:18333", "invalid endpoint"),
        ] {
            let err = RepoUrl::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains("invalid repository URL"), "{input:?}: {err}");
        }
    }

    #[test]
    fn credentials_are_refused_and_never_echoed() {
        for input in [
            "s3://AKIAXXX:very-secret@bucket/prefix",
            "s3://very-secret@bucket",
            "file://user:very-secret@/x",
            "ftp://user:very-secret@host/x",
            "s3://bucket?endpoint=http://ak:very-secret@127.0.0.1:1",
        ] {
            let err = RepoUrl::parse(input).expect_err(input).to_string();
            assert!(!err.contains("very-secret"), "{input:?}: {err}");
        }
        let err = RepoUrl::parse("s3://AKIAXXX:very-secret@bucket/prefix")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID") && err.contains("s3://***@bucket/prefix"),
            "{err}"
        );
        assert_eq!(redact("s3://a:b@c/d@e"), "s3://***@c/d@e");
        assert_eq!(redact("/plain/path@x"), "/plain/path@x");
        assert_eq!(
            redact("s3://b?endpoint=http://u:p@h&region=r"),
            "s3://b?endpoint=http://***@h&region=r"
        );
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "s3://bucket",
            "s3://bucket/a/b",
            "s3://bucket/p?endpoint=http://127.0.0.1:18333&region=us-east-1",
            "s3://bucket/p?endpoint=http://127.0.0.1:18333&path_style=false",
            "s3://bucket?path_style=true&object_lock=compliance:7days&sse=aws:kms&sse_kms_key_id=key%261",
            "/var/backups/mc",
        ] {
            let url = RepoUrl::parse(input).unwrap();
            let shown = url.to_string();
            assert_eq!(RepoUrl::parse(&shown).unwrap(), url, "{input} → {shown}");
        }
        assert_eq!(
            RepoUrl::parse("s3://bucket/p/?region=eu-west-1")
                .unwrap()
                .to_string(),
            "s3://bucket/p?region=eu-west-1"
        );
    }

    #[tokio::test]
    async fn open_local_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/repo");
        let store = open(&RepoUrl::Local(path.clone())).await.unwrap();
        assert!(path.is_dir());
        assert!(
            store.describe().starts_with("file:///"),
            "{}",
            store.describe()
        );
    }
}
