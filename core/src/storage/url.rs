//! Repository URLs: where a repository lives, as the user writes it, and opening the matching
//! backend.
//!
//! Accepted forms:
//!
//! - a plain path: `/var/backups/mc`, `./repo`
//! - `file:///abs/path`
//! - `s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false&object_lock=MODE:DURATION&sse=ALG&sse_kms_key_id=ID]`
//!
//! URLs never carry credentials: `s3://key:secret@bucket` is refused (credentials come from the
//! AWS chain), and any URL echoed in a message has its user-info redacted.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::local::LocalDir;
use super::s3::{LockMode, ObjectLockSettings, S3Config, S3Store};
use super::{check_key, ObjectStore, StorageError};

const EXPECTED: &str =
    "expected a path, file:///absolute/path, or s3://bucket/optional/prefix?endpoint=…&region=…";
const S3_PARAMS: &str = "endpoint, region, path_style, object_lock, sse, sse_kms_key_id";

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
            "s3" => parse_s3(input).map_err(err),
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

/// The `user:password@` part of a URL's authority, if any.
fn userinfo_span(input: &str) -> Option<(usize, usize)> {
    let start = input.find("://")? + 3;
    let authority_end = input[start..]
        .find(['/', '?', '#'])
        .map_or(input.len(), |i| start + i);
    let at = input[start..authority_end].rfind('@')?;
    Some((start, start + at))
}

/// `input` with the user-info of every embedded URL (the repository's, an `endpoint=`'s) replaced
/// by `***`, safe to print.
pub fn redact(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let authority_end = rest.find(['/', '?', '#', '&']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// The path of `scheme://authority/path?query#fragment` as written (the `url` crate would resolve
/// `..` segments, hiding them from the prefix check).
fn raw_path(input: &str) -> &str {
    let after_scheme = input.find("://").map_or(input, |i| &input[i + 3..]);
    let path_start = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let path = &after_scheme[path_start..];
    &path[..path.find(['?', '#']).unwrap_or(path.len())]
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

fn parse_s3(input: &str) -> Result<RepoUrl, String> {
    if !input[input.find(':').unwrap_or(0)..].starts_with("://") {
        return Err(format!(
            "S3 URLs have the form s3://bucket/prefix; {EXPECTED}"
        ));
    }
    if userinfo_span(input).is_some() {
        return Err("credentials in the URL are refused; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use an AWS profile or role".into());
    }
    let url = url::Url::parse(input).map_err(|e| format!("{e}; {EXPECTED}"))?;
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(format!("missing bucket name; {EXPECTED}"));
    }
    if url.port().is_some() {
        return Err("a bucket has no port; give the server as ?endpoint=http://host:port".into());
    }
    if url.fragment().is_some() {
        return Err("S3 URLs take no fragment (#…)".into());
    }
    check_bucket_name(bucket)
        .map_err(|reason| format!("invalid bucket name {bucket:?}: {reason}"))?;
    let mut config = S3Config::new(bucket);

    let path =
        percent_decode(raw_path(input)).ok_or("the prefix is not valid percent-encoded UTF-8")?;
    let prefix = path.trim_matches('/');
    if !prefix.is_empty() {
        check_key(prefix).map_err(|e| match e {
            StorageError::InvalidKey { reason, .. } => {
                format!("invalid prefix {prefix:?}: {reason}")
            }
            other => other.to_string(),
        })?;
    }
    config.prefix = prefix.to_owned();

    let mut seen = Vec::new();
    let mut path_style = None;
    for (name, value) in url.query_pairs() {
        if seen.contains(&name) {
            return Err(format!("query parameter {name:?} is given twice"));
        }
        seen.push(name.clone());
        match name.as_ref() {
            "endpoint" => {
                check_endpoint(&value)?;
                config.endpoint = Some(value.trim_end_matches('/').to_owned());
            }
            "region" => {
                if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(format!(
                        "invalid region {value:?} (expected e.g. us-east-1)"
                    ));
                }
                config.region = Some(value.into_owned());
            }
            "path_style" => {
                path_style = Some(match value.as_ref() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => {
                        return Err(format!("path_style must be true or false, not {other:?}"))
                    }
                });
            }
            "object_lock" => config.object_lock = Some(parse_object_lock(&value)?),
            "sse" => {
                if !matches!(value.as_ref(), "AES256" | "aws:kms" | "aws:kms:dsse") {
                    return Err(format!(
                        "sse must be AES256, aws:kms or aws:kms:dsse, not {value:?}"
                    ));
                }
                config.sse = Some(value.into_owned());
            }
            "sse_kms_key_id" => {
                if value.is_empty() {
                    return Err("sse_kms_key_id is empty".into());
                }
                config.sse_kms_key_id = Some(value.into_owned());
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; known: {S3_PARAMS}"
                ))
            }
        }
    }
    if config.sse_kms_key_id.is_some()
        && !config
            .sse
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"))
    {
        return Err("sse_kms_key_id needs sse=aws:kms (or aws:kms:dsse)".into());
    }
    // S3-compatible servers on a custom endpoint nearly always need path-style addressing.
    config.force_path_style = path_style.unwrap_or(config.endpoint.is_some());
    Ok(RepoUrl::S3(config))
}

/// `governance:30d` or `compliance:1y`.
fn parse_object_lock(value: &str) -> Result<ObjectLockSettings, String> {
    let form =
        "object_lock must be governance:DURATION or compliance:DURATION (e.g. governance:30d)";
    let (mode, duration) = value
        .split_once(':')
        .ok_or_else(|| format!("{form}, not {value:?}"))?;
    let mode = match mode.to_ascii_lowercase().as_str() {
        "governance" => LockMode::Governance,
        "compliance" => LockMode::Compliance,
        other => return Err(format!("{form}; unknown mode {other:?}")),
    };
    let retain_for = humantime::parse_duration(duration)
        .map_err(|e| format!("{form}; bad duration {duration:?}: {e}"))?;
    if retain_for.as_secs() < 1 {
        return Err(format!("{form}; the duration must be at least 1s"));
    }
    Ok(ObjectLockSettings { mode, retain_for })
}

/// S3 bucket naming rules (the portable subset): 3–63 characters of lower-case letters, digits,
/// `-` and `.`, starting and ending with a letter or digit, no `..`, not an IP address.
pub(crate) fn check_bucket_name(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("bucket names are 3 to 63 characters long");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("bucket names use only lower-case letters, digits, '-' and '.'");
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(bucket.chars().next()) || !alnum(bucket.chars().last()) {
        return Err("bucket names start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("bucket names have no '..'");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("bucket names are not IP addresses");
    }
    Ok(())
}

/// An endpoint is an `http(s)://host[:port]` URL without credentials.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if userinfo_span(endpoint).is_some() {
        return Err("credentials in the endpoint are refused; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use an AWS profile".into());
    }
    let shown = redact(endpoint);
    let url = url::Url::parse(endpoint).map_err(|e| format!("invalid endpoint {shown:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "invalid endpoint {shown:?}: expected http://host:port or https://host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid endpoint {shown:?}: no query or fragment allowed"
        ));
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what would break a query value (`&`, `#`, `%`, `+`, space); keeps `:` and `/`
/// readable.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' | '#' | '%' | '+' | ' ' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Prints the URL form, which [`RepoUrl::parse`] reads back; never contains credentials.
impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoUrl::Local(path) => write!(f, "{}", path.display()),
            RepoUrl::S3(c) => {
                write!(f, "s3://{}", c.bucket)?;
                if !c.prefix.is_empty() {
                    write!(f, "/{}", c.prefix)?;
                }
                let mut params = Vec::new();
                if let Some(endpoint) = &c.endpoint {
                    params.push(format!("endpoint={}", query_escape(&redact(endpoint))));
                }
                if let Some(region) = &c.region {
                    params.push(format!("region={}", query_escape(region)));
                }
                if c.force_path_style != c.endpoint.is_some() {
                    params.push(format!("path_style={}", c.force_path_style));
                }
                if let Some(lock) = &c.object_lock {
                    let mode = match lock.mode {
                        LockMode::Governance => "governance",
                        LockMode::Compliance => "compliance",
                    };
                    let duration = humantime::format_duration(lock.retain_for)
                        .to_string()
                        .replace(' ', "");
                    params.push(format!("object_lock={mode}:{duration}"));
                }
                if let Some(sse) = &c.sse {
                    params.push(format!("sse={}", query_escape(sse)));
                }
                if let Some(id) = &c.sse_kms_key_id {
                    params.push(format!("sse_kms_key_id={}", query_escape(id)));
                }
                if !params.is_empty() {
                    write!(f, "?{}", params.join("&"))?;
                }
                Ok(())
            }
        }
    }
}

/// Opens the backend a URL names: creates a local directory if missing; for S3, builds the client
/// and checks that the bucket exists and is reachable with the current credentials.
pub async fn open(url: &RepoUrl) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match url {
        RepoUrl::Local(path) => Ok(Arc::new(LocalDir::new(path.clone())?)),
        RepoUrl::S3(config) => {
            let store = S3Store::connect(config.clone()).await?;
            store.check_bucket().await?;
            tracing::debug!(repo = %store.describe(), "opened S3 repository");
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
