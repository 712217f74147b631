//! Text helpers for repository URLs shared by the generic parser (`url`) and the S3 one
//! (`s3`): user-info detection and redaction, the raw path, percent decoding and escaping.

pub(crate) const EXPECTED: &str =
    "expected a path, file:///absolute/path, or s3://bucket/optional/prefix?endpoint=…&region=…";

/// The `user:password@` part of a URL's authority, if any.
pub(crate) fn userinfo_span(input: &str) -> Option<(usize, usize)> {
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
pub(crate) fn raw_path(input: &str) -> &str {
    let after_scheme = input.find("://").map_or(input, |i| &input[i + 3..]);
    let path_start = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let path = &after_scheme[path_start..];
    &path[..path.find(['?', '#']).unwrap_or(path.len())]
}

/// Decodes `%XX` escapes; `None` on a malformed escape (`%4`, `%zz`, which the
/// `percent-encoding` crate would pass through as text: a repository path must not guess) or a
/// non-UTF-8 result. The decoding itself is the crate's, as for namespaces (`catalog::names`).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

/// Escapes what would break a query value (`&`, `#`, `%`, `+`, space); keeps `:` and `/`
/// readable.
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' | '#' | '%' | '+' | ' ' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("/a%20b/%2541").as_deref(), Some("/a b/%41"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%", "%4", "a%zz", "%%41", "%C3", "%FF"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
