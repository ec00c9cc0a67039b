//! Phase one of the strict parse: the envelope. The payload stays raw until its intent is known.
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::name::{IntentId, NameError, Nonce};

/// The default bound on an intent file's size, in bytes.
pub const DEFAULT_MAX_INTENT_BYTES: usize = 64 * 1024;
/// The deepest nesting of arrays and objects accepted anywhere in a file.
pub const MAX_DEPTH: usize = 16;

/// Why an intent file's bytes were refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file is larger than the bound.
    #[error("intent is {len} bytes, more than the limit of {max}")]
    Oversize {
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Arrays/objects nest deeper than [`MAX_DEPTH`].
    #[error("JSON nests deeper than {max} levels (at byte {at})")]
    TooDeep {
        /// The bound.
        max: usize,
        /// Where the bound was crossed.
        at: usize,
    },
    /// A key other than `intent_id`, `nonce`, `payload`.
    #[error("unknown key {key:?} in the envelope")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key given twice.
    #[error("duplicate key {key:?} in the envelope")]
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// A required key is missing.
    #[error("missing key {key:?} in the envelope")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// `payload` is not a JSON object.
    #[error("payload must be a JSON object")]
    PayloadNotObject,
    /// `intent_id` or `nonce` is outside its grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Not JSON, a wrong type, or trailing bytes.
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description.
        message: String,
    },
}

impl ParseError {
    /// A short stable code for audit records (`oversize`, `duplicate_key`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Oversize { .. } => "oversize",
            Self::TooDeep { .. } => "too_deep",
            Self::UnknownKey { .. } => "unknown_key",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::MissingKey { .. } => "missing_key",
            Self::PayloadNotObject => "payload_not_object",
            Self::Name(_) => "bad_name",
            Self::Json { .. } => "bad_json",
        }
    }
}

/// A parsed envelope: a valid id, a valid nonce, and the payload's raw JSON text.
#[derive(Debug)]
pub struct IntentFile<'a> {
    intent_id: IntentId,
    nonce: Nonce,
    payload: &'a RawValue,
}

impl<'a> IntentFile<'a> {
    /// Parses `bytes` with the default size bound. See [`IntentFile::parse_bounded`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_bounded(bytes, DEFAULT_MAX_INTENT_BYTES)
    }

    /// Parses the envelope `{"intent_id", "nonce", "payload"}` strictly: size ≤ `max_bytes`,
    /// nesting ≤ [`MAX_DEPTH`], exactly these three keys once each, `payload` an object kept raw.
    pub fn parse_bounded(bytes: &'a [u8], max_bytes: usize) -> Result<Self, ParseError> {
        if bytes.len() > max_bytes {
            return Err(ParseError::Oversize {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        check_depth(bytes, MAX_DEPTH)?;
        let fault = Cell::new(None);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = EnvelopeSeed { fault: &fault }
            .deserialize(&mut de)
            .and_then(|env| de.end().map(|()| env));
        let raw = match (parsed, fault.take()) {
            (_, Some(fault)) => return Err(fault),
            (Ok(raw), None) => raw,
            (Err(e), None) => {
                return Err(ParseError::Json {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                });
            }
        };
        let intent_id = IntentId::new(&raw.intent_id)?;
        let nonce = Nonce::new(&raw.nonce)?;
        if !raw.payload.get().starts_with('{') {
            return Err(ParseError::PayloadNotObject);
        }
        Ok(Self {
            intent_id,
            nonce,
            payload: raw.payload,
        })
    }

    /// The intent id.
    pub fn intent_id(&self) -> &IntentId {
        &self.intent_id
    }

    /// The nonce (lower case).
    pub fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// The payload's JSON text, exactly as in the file.
    pub fn payload(&self) -> &'a RawValue {
        self.payload
    }
}

/// Refuses nesting deeper than `max` before serde sees the bytes (no recursion on hostile input).
fn check_depth(bytes: &[u8], max: usize) -> Result<(), ParseError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(ParseError::TooDeep { max, at });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

struct RawEnvelope<'a> {
    intent_id: std::borrow::Cow<'a, str>,
    nonce: std::borrow::Cow<'a, str>,
    payload: &'a RawValue,
}

/// A hand-written visitor (no maps, no `Value`): it records the exact fault so the caller gets a
/// typed error rather than a message to sniff.
struct EnvelopeSeed<'c> {
    fault: &'c Cell<Option<ParseError>>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = RawEnvelope<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = RawEnvelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with intent_id, nonce and payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut intent_id, mut nonce, mut payload) = (None, None, None);
        let fail = |fault: ParseError| {
            let message = fault.to_string();
            self.fault.set(Some(fault));
            de::Error::custom(message)
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "intent_id" if intent_id.is_some() => {
                    return Err(fail(ParseError::DuplicateKey { key: "intent_id" }));
                }
                "intent_id" => intent_id = Some(map.next_value::<std::borrow::Cow<'de, str>>()?),
                "nonce" if nonce.is_some() => {
                    return Err(fail(ParseError::DuplicateKey { key: "nonce" }));
                }
                "nonce" => nonce = Some(map.next_value::<std::borrow::Cow<'de, str>>()?),
                "payload" if payload.is_some() => {
                    return Err(fail(ParseError::DuplicateKey { key: "payload" }));
                }
                "payload" => payload = Some(map.next_value::<&'de RawValue>()?),
                other => {
                    return Err(fail(ParseError::UnknownKey {
                        key: other.escape_debug().take(80).collect(),
                    }));
                }
            }
        }
        let intent_id =
            intent_id.ok_or_else(|| fail(ParseError::MissingKey { key: "intent_id" }))?;
        let nonce = nonce.ok_or_else(|| fail(ParseError::MissingKey { key: "nonce" }))?;
        let payload = payload.ok_or_else(|| fail(ParseError::MissingKey { key: "payload" }))?;
        Ok(RawEnvelope {
            intent_id,
            nonce,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"intent_id":"INTENT_RESTART_UNIT","nonce":"0123456789abcdef","payload":{"unit":"web.service"}}"#;

    #[test]
    fn accepts_a_valid_file_and_keeps_the_payload_raw() {
        let file = IntentFile::parse(OK.as_bytes()).expect("valid");
        assert_eq!(file.intent_id().as_str(), "INTENT_RESTART_UNIT");
        assert_eq!(file.nonce().as_str(), "0123456789abcdef");
        assert_eq!(file.payload().get(), r#"{"unit":"web.service"}"#);
    }

    #[test]
    fn refuses_each_hostile_shape_with_its_own_error() {
        let n = r#""nonce":"0123456789abcdef""#;
        let i = r#""intent_id":"INTENT_X""#;
        let cases: Vec<(String, &str)> = vec![
            (
                format!(r#"{{{i},{n},"payload":{{}},"extra":1}}"#),
                "unknown_key",
            ),
            (
                format!(r#"{{{i},{n},{n},"payload":{{}}}}"#),
                "duplicate_key",
            ),
            (
                format!(r#"{{{i},{i},{n},"payload":{{}}}}"#),
                "duplicate_key",
            ),
            (
                format!(r#"{{{i},{n},"payload":{{}},"payload":{{}}}}"#),
                "duplicate_key",
            ),
            (format!(r#"{{{i},{n}}}"#), "missing_key"),
            (format!(r#"{{{i},{n},"payload":[]}}"#), "payload_not_object"),
            (
                format!(r#"{{{i},{n},"payload":"x"}}"#),
                "payload_not_object",
            ),
            (
                format!(r#"{{"intent_id":"INTENT_\u0000",{n},"payload":{{}}}}"#),
                "bad_name",
            ),
            (
                format!(r#"{{"intent_id":"rm -rf /",{n},"payload":{{}}}}"#),
                "bad_name",
            ),
            (
                format!(r#"{{{i},"nonce":"12","payload":{{}}}}"#),
                "bad_name",
            ),
            (
                format!(r#"{{"intent_id":7,{n},"payload":{{}}}}"#),
                "bad_json",
            ),
            (
                format!(r#"{{{i},{n},"payload":{{}}}} trailing"#),
                "bad_json",
            ),
            ("[]".to_owned(), "bad_json"),
            ("".to_owned(), "bad_json"),
            ("\u{feff}{}".to_owned(), "bad_json"),
            (
                format!(r#"{{{i},{n},"payload":{{"a":{}}}}}"#, "[".repeat(60_000)),
                "too_deep",
            ),
        ];
        for (input, code) in cases {
            let err = IntentFile::parse(input.as_bytes()).expect_err(&input[..input.len().min(80)]);
            assert_eq!(err.code(), code, "{}: {err}", &input[..input.len().min(80)]);
        }
        let deep = format!(r#"{{{i},{n},"payload":{{"a":{}}}}}"#, "[".repeat(200_000));
        assert!(matches!(
            IntentFile::parse_bounded(deep.as_bytes(), 1 << 20),
            Err(ParseError::TooDeep { max: MAX_DEPTH, .. })
        ));
        let big = format!(r#"{{{i},{n},"payload":{{"a":"{}"}}}}"#, "x".repeat(70_000));
        assert!(matches!(
            IntentFile::parse(big.as_bytes()),
            Err(ParseError::Oversize { max: 65536, .. })
        ));
    }

    #[test]
    fn escaped_keys_and_values_are_compared_after_unescaping() {
        // "nonc\u0065" is "nonce": a duplicate in disguise must still be caught.
        let s = r#"{"intent_id":"INTENT_X","nonce":"0123456789abcdef","nonc\u0065":"0123456789abcdef","payload":{}}"#;
        assert!(matches!(
            IntentFile::parse(s.as_bytes()),
            Err(ParseError::DuplicateKey { key: "nonce" })
        ));
    }

    #[test]
    fn serde_derive_rejects_duplicate_struct_fields() {
        // The payload phase relies on this serde_derive behaviour; pin it.
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            unit: String,
        }
        let err = serde_json::from_str::<P>(r#"{"unit":"a.service","unit":"b.service"}"#)
            .expect_err("duplicate");
        assert!(err.to_string().contains("duplicate field `unit`"), "{err}");
        let err = serde_json::from_str::<P>(r#"{"unit":"a.service","x":1}"#).expect_err("unknown");
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = IntentFile::parse(&bytes);
            }

            #[test]
            fn never_panics_on_json_like_noise(s in r#"[{}\[\]",:a-z_0-9\\ ]{0,300}"#) {
                let _ = IntentFile::parse(s.as_bytes());
            }

            #[test]
            fn valid_envelopes_round_trip(id in "INTENT_[A-Z0-9_]{1,40}", nonce in "[0-9a-f]{16,128}", v in "[a-z.]{0,20}") {
                let s = format!(r#"{{"payload":{{"k":"{v}"}},"nonce":"{nonce}","intent_id":"{id}"}}"#);
                let file = IntentFile::parse(s.as_bytes()).expect("valid");
                prop_assert_eq!(file.intent_id().as_str(), id.as_str());
                prop_assert_eq!(file.nonce().as_str(), nonce.as_str());
                let expected = format!(r#"{{"k":"{v}"}}"#);
                prop_assert_eq!(file.payload().get(), expected.as_str());
            }

            #[test]
            fn any_extra_key_is_refused(key in "[a-z_]{1,12}") {
                prop_assume!(!["intent_id", "nonce", "payload"].contains(&key.as_str()));
                let s = format!(r#"{{"intent_id":"INTENT_A","nonce":"0123456789abcdef","payload":{{}},"{key}":0}}"#);
                let is_unknown = matches!(IntentFile::parse(s.as_bytes()), Err(ParseError::UnknownKey { .. }));
                prop_assert!(is_unknown);
            }
        }
    }
}
