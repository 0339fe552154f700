//! Helpers for the expression-level lints.

/// Whether `s` looks like a CIDR prefix (`10.0.0.0/8`, `2001:db8::/32`).
pub(super) fn is_cidr_literal(s: &str) -> bool {
    s.contains('/') && s.parse::<ipnet::IpNet>().is_ok()
}

/// Go's canonical MIME header form (`user-agent` → `User-Agent`), or `None` when the name is
/// not a valid header token (Go leaves those unchanged).
pub(super) fn canonical_header(name: &str) -> Option<String> {
    const TOKEN_EXTRA: &str = "!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || TOKEN_EXTRA.contains(c))
    {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    Some(out)
}

/// The error of compiling `pattern` as a regular expression (RE2 syntax, via `regex`), as one
/// line.
pub(super) fn regex_error(pattern: &str) -> Option<String> {
    match regex::Regex::new(pattern) {
        Ok(_) => None,
        Err(regex::Error::CompiledTooBig(limit)) => Some(format!(
            "the compiled regular expression exceeds the size limit of {limit} bytes"
        )),
        Err(e) => {
            let text = e.to_string();
            // The syntax error's last line says what is wrong ("error: unclosed group").
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text);
            Some(last.trim().trim_start_matches("error: ").to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_literals() {
        assert!(is_cidr_literal("10.0.0.0/8"));
        assert!(is_cidr_literal("2001:db8::/32"));
        assert!(!is_cidr_literal("10.0.0.1"));
        assert!(!is_cidr_literal("/api/v1"));
    }

    #[test]
    fn canonical_headers() {
        assert_eq!(
            canonical_header("user-agent").as_deref(),
            Some("User-Agent")
        );
        assert_eq!(canonical_header("X-API-KEY").as_deref(), Some("X-Api-Key"));
        assert_eq!(canonical_header("bad header"), None);
    }

    #[test]
    fn regex_errors_are_one_line() {
        assert_eq!(regex_error("^/api/(v1|v2)$"), None);
        let e = regex_error("(unclosed").unwrap_or_default();
        assert!(e.contains("unclosed group"), "{e}");
        assert!(regex_error("(?=lookahead)").is_some());
    }
}
