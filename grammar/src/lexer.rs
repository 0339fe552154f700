//! Lexical pieces of CEL: whitespace and comments, identifiers, number and string literals.
//!
//! Each function takes the remaining input and returns the rest after the token; byte offsets
//! are computed by the parser from the lengths of the remaining input.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1, hex_digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::{IResult, Parser};

/// nom results with no error payload: the parser builds its own errors with spans.
type Lex<'a, O> = IResult<&'a str, O, ()>;

/// The words that may not be used as identifiers (cel-spec `RESERVED`).
pub(crate) const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Words that are tokens of the language and so cannot even be field or method names
/// (`a.in`, `a.true` are syntax errors; `a.as`, `a.if()` are fine).
pub(crate) const KEYWORD_TOKENS: &[&str] = &["true", "false", "null", "in"];

/// Whether `name` is a reserved word.
pub(crate) fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// Whether `name` can be written as a field or method name without backticks.
pub(crate) fn is_plain_selector(name: &str) -> bool {
    is_identifier_text(name) && !KEYWORD_TOKENS.contains(&name)
}

/// Whether `name` matches `[_a-zA-Z][_a-zA-Z0-9]*`.
pub(crate) fn is_identifier_text(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Whether `c` may appear inside a backtick-quoted field name.
pub(crate) fn is_backtick_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ' ')
}

/// Skips whitespace (`[\t\n\f\r ]`) and `//` comments.
pub(crate) fn skip_ws(mut s: &str) -> &str {
    loop {
        let trimmed = s.trim_start_matches(['\t', '\n', '\u{c}', '\r', ' ']);
        if let Some(comment) = trimmed.strip_prefix("//") {
            s = match comment.find(['\n', '\r']) {
                Some(i) => &comment[i..],
                None => "",
            };
        } else {
            return trimmed;
        }
    }
}

/// An identifier `[_a-zA-Z][_a-zA-Z0-9]*`.
pub(crate) fn identifier(s: &str) -> Lex<'_, &str> {
    recognize((
        take_while1(|c: char| c == '_' || c.is_ascii_alphabetic()),
        take_while(|c: char| c == '_' || c.is_ascii_alphanumeric()),
    ))
    .parse(s)
}

/// The kind of a number token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumKind {
    /// `123`, `0x1F`.
    Int,
    /// `123u`, `0x1Fu`.
    Uint,
    /// `1.5`, `.5`, `1e3`.
    Double,
}

/// A number token, not yet converted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NumToken<'a> {
    /// The digits to convert (without `0x` and without the `u` suffix); for doubles, the whole
    /// literal text.
    pub digits: &'a str,
    /// 10 or 16.
    pub radix: u32,
    /// What kind of literal.
    pub kind: NumKind,
}

fn exponent(s: &str) -> Lex<'_, &str> {
    recognize((one_of("eE"), opt(one_of("+-")), digit1)).parse(s)
}

fn uint_suffix(s: &str) -> Lex<'_, Option<char>> {
    opt(one_of("uU")).parse(s)
}

fn hex_number(s: &str) -> Lex<'_, NumToken<'_>> {
    let (s, digits) = nom::sequence::preceded(tag("0x"), hex_digit1).parse(s)?;
    let (s, suffix) = uint_suffix(s)?;
    let kind = if suffix.is_some() {
        NumKind::Uint
    } else {
        NumKind::Int
    };
    Ok((
        s,
        NumToken {
            digits,
            radix: 16,
            kind,
        },
    ))
}

fn decimal_number(s: &str) -> Lex<'_, NumToken<'_>> {
    let (rest, (int, frac, exp)) = (digit1, opt((char('.'), digit1)), opt(exponent)).parse(s)?;
    if frac.is_none() && exp.is_none() {
        let (rest, suffix) = uint_suffix(rest)?;
        let kind = if suffix.is_some() {
            NumKind::Uint
        } else {
            NumKind::Int
        };
        return Ok((
            rest,
            NumToken {
                digits: int,
                radix: 10,
                kind,
            },
        ));
    }
    let len = s.len() - rest.len();
    Ok((
        rest,
        NumToken {
            digits: &s[..len],
            radix: 10,
            kind: NumKind::Double,
        },
    ))
}

fn dot_number(s: &str) -> Lex<'_, NumToken<'_>> {
    let (rest, text) = recognize((char('.'), digit1, opt(exponent))).parse(s)?;
    Ok((
        rest,
        NumToken {
            digits: text,
            radix: 10,
            kind: NumKind::Double,
        },
    ))
}

/// A number literal (without sign): `0x1F`, `0x1Fu`, `12`, `12u`, `1.5`, `1e3`, `.5e-3`.
pub(crate) fn number(s: &str) -> Lex<'_, NumToken<'_>> {
    alt((hex_number, decimal_number, dot_number)).parse(s)
}

/// Whether a number literal starts here.
pub(crate) fn starts_number(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b'0'..=b'9') => true,
        Some(b'.') => matches!(bytes.next(), Some(b'0'..=b'9')),
        _ => false,
    }
}

/// A string or bytes literal, decoded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrValue {
    /// A string literal.
    Str(String),
    /// A bytes literal.
    Bytes(Vec<u8>),
}

/// A lexical error inside a string literal: byte offsets relative to the token start.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StrError {
    /// Offset of the offending text from the start of the literal.
    pub start: usize,
    /// Offset one past the offending text.
    pub end: usize,
    /// What is wrong.
    pub message: String,
}

/// If a string or bytes literal starts here, returns the length of its prefix (`r`, `b`, `bR`,
/// …) and the quote that opens it.
pub(crate) fn string_start(s: &str) -> Option<(usize, bool, bool)> {
    let b = s.as_bytes();
    let quote = |i: usize| matches!(b.get(i), Some(b'"' | b'\''));
    match b.first()? {
        b'"' | b'\'' => Some((0, false, false)),
        b'r' | b'R' if quote(1) => Some((1, false, true)),
        b'b' | b'B' if quote(1) => Some((1, true, false)),
        b'b' | b'B' if matches!(b.get(1), Some(b'r' | b'R')) && quote(2) => Some((2, true, true)),
        _ => None,
    }
}

/// Lexes and decodes a string or bytes literal at the start of `s`, which must satisfy
/// [`string_start`]. Returns the rest of the input and the value.
pub(crate) fn string_literal(s: &str) -> Result<(&str, StrValue), StrError> {
    let Some((prefix, is_bytes, raw)) = string_start(s) else {
        return Err(StrError {
            start: 0,
            end: 0,
            message: "expected a string literal".to_owned(),
        });
    };
    let after_prefix = &s[prefix..];
    let delim = if after_prefix.starts_with("\"\"\"") {
        "\"\"\""
    } else if after_prefix.starts_with("'''") {
        "'''"
    } else if after_prefix.starts_with('"') {
        "\""
    } else {
        "'"
    };
    let triple = delim.len() == 3;
    let body_start = prefix + delim.len();
    let mut out = Decoder::new(is_bytes);
    let mut i = body_start;
    loop {
        let rest = &s[i..];
        if rest.starts_with(delim) {
            let end = i + delim.len();
            return Ok((&s[end..], out.finish()));
        }
        let Some(c) = rest.chars().next() else {
            return Err(StrError {
                start: 0,
                end: s.len(),
                message: "unterminated string literal".to_owned(),
            });
        };
        if !triple && (c == '\n' || c == '\r') {
            return Err(StrError {
                start: 0,
                end: i,
                message: "unterminated string literal (newlines are only allowed in triple-quoted strings)"
                    .to_owned(),
            });
        }
        if c == '\\' && !raw {
            let len = out.escape(rest).map_err(|(len, message)| StrError {
                start: i,
                end: i + len,
                message,
            })?;
            i += len;
        } else {
            out.push_char(c);
            i += c.len_utf8();
        }
    }
}

/// Accumulates decoded string or bytes content.
struct Decoder {
    bytes: Vec<u8>,
    is_bytes: bool,
}

impl Decoder {
    fn new(is_bytes: bool) -> Self {
        Self {
            bytes: Vec::new(),
            is_bytes,
        }
    }

    fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.bytes
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    /// A `\x`/octal escape: a byte in bytes literals, a code point in strings.
    fn push_octet(&mut self, v: u8) {
        if self.is_bytes {
            self.bytes.push(v);
        } else {
            self.push_char(char::from(v));
        }
    }

    /// Decodes the escape at the start of `s` (which starts with `\`); returns its length, or
    /// the length of the bad escape and a message.
    fn escape(&mut self, s: &str) -> Result<usize, (usize, String)> {
        let b = s.as_bytes();
        let Some(&e) = b.get(1) else {
            return Err((1, "unterminated escape sequence".to_owned()));
        };
        let simple = match e {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'?' | b'"' | b'\'' | b'`' => Some(e),
            _ => None,
        };
        if let Some(v) = simple {
            self.bytes.push(v);
            return Ok(2);
        }
        let hex = |n: usize| -> Result<u32, (usize, String)> {
            let digits = s
                .get(2..2 + n)
                .filter(|d| d.bytes().all(|c| c.is_ascii_hexdigit()));
            match digits.and_then(|d| u32::from_str_radix(d, 16).ok()) {
                Some(v) => Ok(v),
                None => {
                    let len = 2 + s[2..]
                        .bytes()
                        .take(n)
                        .take_while(u8::is_ascii_hexdigit)
                        .count();
                    Err((
                        len,
                        format!(
                            "invalid escape sequence `{}`: expected {n} hexadecimal digits",
                            &s[..len]
                        ),
                    ))
                }
            }
        };
        match e {
            b'x' | b'X' => {
                let v = hex(2)?;
                self.push_octet(u8::try_from(v).unwrap_or(u8::MAX));
                Ok(4)
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let v = hex(n)?;
                let len = 2 + n;
                if self.is_bytes {
                    return Err((
                        len,
                        format!(
                            "invalid escape sequence `{}`: unicode escapes are not allowed in bytes literals",
                            &s[..len]
                        ),
                    ));
                }
                match char::from_u32(v) {
                    Some(c) => {
                        self.push_char(c);
                        Ok(len)
                    }
                    None => Err((
                        len,
                        format!(
                            "invalid escape sequence `{}`: not a unicode scalar value",
                            &s[..len]
                        ),
                    )),
                }
            }
            b'0'..=b'3' => {
                let digits = s
                    .get(1..4)
                    .filter(|d| d.bytes().all(|c| (b'0'..=b'7').contains(&c)));
                match digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                    Some(v) => {
                        self.push_octet(v);
                        Ok(4)
                    }
                    None => Err((
                        2,
                        "invalid octal escape: expected three octal digits `\\000` to `\\377`"
                            .to_owned(),
                    )),
                }
            }
            _ => {
                let len = 1 + s[1..].chars().next().map_or(0, char::len_utf8);
                Err((len, format!("invalid escape sequence `{}`", &s[..len])))
            }
        }
    }

    fn finish(self) -> StrValue {
        if self.is_bytes {
            StrValue::Bytes(self.bytes)
        } else {
            // Only whole UTF-8 sequences and code points are ever pushed for strings.
            match String::from_utf8(self.bytes) {
                Ok(s) => StrValue::Str(s),
                Err(e) => StrValue::Str(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_ok(src: &str) -> StrValue {
        let (rest, v) = string_literal(src).unwrap();
        assert_eq!(rest, "", "{src}");
        v
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(
            str_ok(r#""\a\b\f\n\r\t\v\\\?\"\'\`""#),
            StrValue::Str("\x07\x08\x0c\n\r\t\x0b\\?\"'`".to_owned())
        );
    }

    #[test]
    fn numeric_escapes_in_strings_are_code_points() {
        assert_eq!(
            str_ok(r#""\101\x41\X41\u0041\U0001F600\377\xFF""#),
            StrValue::Str("AAAA\u{1F600}\u{ff}\u{ff}".to_owned())
        );
    }

    #[test]
    fn numeric_escapes_in_bytes_are_octets() {
        assert_eq!(
            str_ok(r#"b"\377\xFFÿ""#),
            StrValue::Bytes(vec![0xff, 0xff, 0xc3, 0xbf])
        );
    }

    #[test]
    fn raw_strings_keep_backslashes() {
        assert_eq!(str_ok(r#"r"\n\x""#), StrValue::Str(r"\n\x".to_owned()));
        assert_eq!(str_ok(r"bR'\0'"), StrValue::Bytes(br"\0".to_vec()));
    }

    #[test]
    fn triple_quoted_strings_span_lines() {
        assert_eq!(
            str_ok("'''a\n'b''c'''"),
            StrValue::Str("a\n'b''c".to_owned())
        );
        assert_eq!(str_ok(r#""""\"""""#), StrValue::Str("\"".to_owned()));
    }

    #[test]
    fn bad_escapes_are_rejected() {
        for bad in [
            r#""\q""#,
            r#""\x4""#,
            r#""\u00""#,
            r#""\uD800""#,
            r#""\U00110000""#,
            r#""\400""#,
            r#""\08""#,
            r#"b"\u0041""#,
            "\"\\",
        ] {
            assert!(string_literal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn newlines_need_triple_quotes() {
        let err = string_literal("'a\nb'").unwrap_err();
        assert!(err.message.contains("unterminated"));
    }

    #[test]
    fn numbers() {
        let (rest, n) = number("0x1Fu+").unwrap();
        assert_eq!(
            (rest, n.digits, n.radix, n.kind),
            ("+", "1F", 16, NumKind::Uint)
        );
        let (rest, n) = number("1.5e-3x").unwrap();
        assert_eq!((rest, n.digits, n.kind), ("x", "1.5e-3", NumKind::Double));
        let (rest, n) = number("1.e3").unwrap();
        assert_eq!((rest, n.digits, n.kind), (".e3", "1", NumKind::Int));
        let (rest, n) = number(".5").unwrap();
        assert_eq!((rest, n.digits, n.kind), ("", ".5", NumKind::Double));
        let (rest, n) = number("1e").unwrap();
        assert_eq!((rest, n.digits, n.kind), ("e", "1", NumKind::Int));
    }

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(skip_ws(" \t\r\n\u{c}// c\n  // d\r\nx"), "x");
        assert_eq!(skip_ws("// only"), "");
    }
}
