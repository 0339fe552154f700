//! cel-go's encoders extension: `base64.encode(bytes) -> string` (standard alphabet, padded)
//! and `base64.decode(string) -> bytes`.
//!
//! Like cel-go (Go's `StdEncoding`, then `RawStdEncoding`), decoding accepts padded and
//! unpadded input, ignores line breaks and tolerates non-zero trailing bits. (The ngrok docs
//! claim unpadded input errors; the conformance corpus, which decides here, decodes it.)

use std::sync::Arc;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::{CallResult, invalid, no_overload};
use crate::error::EvalError;
use crate::value::Value;

/// Padded standard base64 that tolerates non-canonical trailing bits.
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Unpadded standard base64 that tolerates non-canonical trailing bits.
const UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Base64Decode = "base64.decode",
        Base64Encode = "base64.encode",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    match f {
        Global::Base64Encode => Some(match args {
            [Value::Bytes(b)] => Ok(Value::string(encode(b))),
            _ => Err(no_overload(f.name())),
        }),
        Global::Base64Decode => Some(match args {
            [Value::String(s)] => decode(s).map(|b| Value::Bytes(Arc::from(b))),
            _ => Err(no_overload(f.name())),
        }),
    }
}

/// Standard padded base64 of `bytes`.
pub(super) fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode standard base64, padded or not (Go's decoders skip `\r` and `\n`).
pub(super) fn decode(text: &str) -> Result<Vec<u8>, EvalError> {
    let cleaned: String;
    let text = if text.contains(['\r', '\n']) {
        cleaned = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        &cleaned
    } else {
        text
    };
    PADDED
        .decode(text)
        .or_else(|_| UNPADDED.decode(text))
        .map_err(|e| invalid(format!("base64.decode: invalid base64 input: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};

    #[test]
    fn encode_is_padded() {
        let r = call(
            "base64.encode",
            None,
            &[Value::Bytes(Arc::from(&b"hello"[..]))],
        )
        .unwrap()
        .unwrap();
        assert!(values_equal(&r, &Value::string("aGVsbG8=")));
        assert!(matches!(
            call("base64.encode", None, &[Value::string("hello")]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }

    #[test]
    fn decode_accepts_padded_and_unpadded() {
        assert_eq!(decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode("").unwrap(), b"");
        assert!(decode("a").is_err());
        assert!(decode("!!!!").is_err());
        assert!(decode("aGVsbG8==").is_err());
        let r = call("base64.decode", None, &[Value::string("aGk=")])
            .unwrap()
            .unwrap();
        assert!(values_equal(&r, &Value::Bytes(Arc::from(&b"hi"[..]))));
    }
}
