//! The grammars of the strings that matter: intent ids, nonces, systemd unit names, file names.
use std::fmt;

use thiserror::Error;

/// The longest intent id accepted, in bytes.
pub const MAX_INTENT_ID_LEN: usize = 64;
/// The shortest nonce accepted, in hex characters (64 bits).
pub const MIN_NONCE_LEN: usize = 16;
/// The longest nonce accepted, in hex characters.
pub const MAX_NONCE_LEN: usize = 128;
/// The longest unit name systemd accepts (`UNIT_NAME_MAX` minus the NUL).
pub const MAX_UNIT_NAME_LEN: usize = 255;
/// The suffix every intent file name carries.
pub const INTENT_FILE_SUFFIX: &str = ".intent.json";
/// The longest intent file name accepted, in bytes (the common `NAME_MAX`).
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which kind of name.
        what: &'static str,
    },
    /// The name is longer than its bound.
    #[error("{what} is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The name is shorter than its bound.
    #[error("{what} is {len} characters long, fewer than the minimum of {min}")]
    TooShort {
        /// Which kind of name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        min: usize,
    },
    /// A NUL or another control character.
    #[error("{what} {value:?} contains the control character {ch:?} at byte {at}")]
    ControlChar {
        /// Which kind of name.
        what: &'static str,
        /// The name, escaped by `{:?}`.
        value: String,
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts with `-` (it could pass for an option).
    #[error("{what} {value:?} starts with '-'")]
    LeadingDash {
        /// Which kind of name.
        what: &'static str,
        /// The name.
        value: String,
    },
    /// A character outside the grammar.
    #[error("{what} {value:?} contains {ch:?} at byte {at}, outside its grammar ({grammar})")]
    BadChar {
        /// Which kind of name.
        what: &'static str,
        /// The name.
        value: String,
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
        /// The grammar, in words.
        grammar: &'static str,
    },
    /// The overall shape is wrong (prefix, suffix, `@` placement).
    #[error("{what} {value:?} is malformed: {why}")]
    Malformed {
        /// Which kind of name.
        what: &'static str,
        /// The name.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

fn check_common(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if let Some((at, ch)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlChar {
            what,
            value: value.escape_debug().to_string(),
            ch,
            at,
        });
    }
    if value.len() > max {
        return Err(NameError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    if value.starts_with('-') {
        return Err(NameError::LeadingDash {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// An intent id: `INTENT_` then upper-case ASCII letters, digits and `_`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntentId(String);

impl IntentId {
    const WHAT: &'static str = "intent_id";

    /// Checks `value` against the grammar.
    pub fn new(value: &str) -> Result<Self, NameError> {
        check_common(Self::WHAT, value, MAX_INTENT_ID_LEN)?;
        if let Some((at, ch)) = value
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(NameError::BadChar {
                what: Self::WHAT,
                value: value.to_owned(),
                ch,
                at,
                grammar: "INTENT_ then A-Z, 0-9, _",
            });
        }
        if !value.starts_with("INTENT_") || value.len() == "INTENT_".len() {
            return Err(NameError::Malformed {
                what: Self::WHAT,
                value: value.to_owned(),
                why: "must be INTENT_ followed by at least one character",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A nonce: 16 to 128 hex digits, kept in lower case (so `AB…` and `ab…` are the same nonce).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(String);

impl Nonce {
    const WHAT: &'static str = "nonce";

    /// Checks `value` against the grammar and lower-cases it.
    pub fn new(value: &str) -> Result<Self, NameError> {
        check_common(Self::WHAT, value, MAX_NONCE_LEN)?;
        if let Some((at, ch)) = value.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(NameError::BadChar {
                what: Self::WHAT,
                value: value.to_owned(),
                ch,
                at,
                grammar: "hex digits",
            });
        }
        if value.len() < MIN_NONCE_LEN {
            return Err(NameError::TooShort {
                what: Self::WHAT,
                len: value.len(),
                min: MIN_NONCE_LEN,
            });
        }
        Ok(Self(value.to_ascii_lowercase()))
    }

    /// A fresh nonce of 32 hex digits (128 bits from the kernel's `getrandom`).
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            filled += rustix::rand::getrandom(
                &mut bytes[filled..],
                rustix::rand::GetRandomFlags::empty(),
            )?;
        }
        let mut text = String::with_capacity(32);
        for byte in bytes {
            text.push_str(&format!("{byte:02x}"));
        }
        Ok(Self(text))
    }

    /// The nonce as lower-case hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The unit types systemd knows; a unit name must end in one of them.
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// A systemd unit name as systemd itself validates it (`unit_name_is_valid`): a prefix of
/// `[A-Za-z0-9:_.\-]`, an optional `@instance` (which may also hold `@`), a `.type` suffix
/// from [`UNIT_TYPES`], at most 255 bytes. Stricter than systemd in one way: a leading `-` is
/// refused, so a name can never pass for an option even without `--`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName(String);

impl UnitName {
    const WHAT: &'static str = "unit name";
    const GRAMMAR: &'static str = "A-Z a-z 0-9 : _ . \\ - and one @";

    /// Checks `value` against the grammar.
    pub fn new(value: &str) -> Result<Self, NameError> {
        check_common(Self::WHAT, value, MAX_UNIT_NAME_LEN)?;
        let malformed = |why| NameError::Malformed {
            what: Self::WHAT,
            value: value.to_owned(),
            why,
        };
        let Some((stem, suffix)) = value.rsplit_once('.') else {
            return Err(malformed("no .type suffix"));
        };
        if !UNIT_TYPES.contains(&suffix) {
            return Err(malformed("the suffix is not a systemd unit type"));
        }
        let (prefix, instance) = match stem.split_once('@') {
            Some((prefix, instance)) => (prefix, Some(instance)),
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(malformed("the name before the suffix or @ is empty"));
        }
        let valid =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\');
        let bad = |part: &str, offset: usize, at_ok: bool| {
            part.char_indices()
                .find(|(_, c)| !(valid(*c) || (at_ok && *c == '@')))
                .map(|(at, ch)| NameError::BadChar {
                    what: Self::WHAT,
                    value: value.to_owned(),
                    ch,
                    at: at + offset,
                    grammar: Self::GRAMMAR,
                })
        };
        if let Some(err) = bad(prefix, 0, false) {
            return Err(err);
        }
        if let Some(instance) = instance {
            // An empty instance is a template ("foo@.service"): it cannot be restarted.
            if instance.is_empty() {
                return Err(malformed("a template (empty instance) cannot be acted on"));
            }
            if let Some(err) = bad(instance, prefix.len() + 1, true) {
                return Err(err);
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// The unit's type (the suffix after the last `.`).
    pub fn unit_type(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(_, t)| t)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the reactor makes of a directory entry's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryName {
    /// `.`-prefixed: a writer's temp file (or the reactor's own private dir); left alone.
    Hidden,
    /// `[A-Za-z0-9][A-Za-z0-9_.-]*.intent.json`, at most 255 bytes: handled.
    Intent,
    /// Anything else: claimed and quarantined, never left to re-trigger.
    Foreign,
}

/// Classifies a directory entry name (raw bytes: names need not be UTF-8).
pub fn classify_entry_name(name: &[u8]) -> EntryName {
    if name.first() == Some(&b'.') {
        return EntryName::Hidden;
    }
    let suffix = INTENT_FILE_SUFFIX.as_bytes();
    let ok = name.len() <= MAX_FILE_NAME_LEN
        && name.len() > suffix.len()
        && name.ends_with(suffix)
        && name[0].is_ascii_alphanumeric()
        && name[..name.len() - suffix.len()]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        EntryName::Intent
    } else {
        EntryName::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_follow_systemd_grammar() {
        for good in [
            "web.service",
            "vision.target",
            "getty@tty1.service",
            "a:b_c-d.e.socket",
            "x@a@b.service",
            "dev-sda1.device",
            "system-getty\\x2dx.slice",
        ] {
            assert!(UnitName::new(good).is_ok(), "{good}");
        }
        type Check = fn(&NameError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, NameError::Empty { .. })),
            ("-x.service", |e| matches!(e, NameError::LeadingDash { .. })),
            ("--help.service", |e| {
                matches!(e, NameError::LeadingDash { .. })
            }),
            ("a\0b.service", |e| {
                matches!(e, NameError::ControlChar { .. })
            }),
            ("a\nb.service", |e| {
                matches!(e, NameError::ControlChar { .. })
            }),
            ("web;reboot.service", |e| {
                matches!(e, NameError::BadChar { ch: ';', .. })
            }),
            ("$(id).service", |e| {
                matches!(e, NameError::BadChar { ch: '$', .. })
            }),
            ("a b.service", |e| {
                matches!(e, NameError::BadChar { ch: ' ', .. })
            }),
            ("../x.service", |e| {
                matches!(e, NameError::BadChar { ch: '/', .. })
            }),
            ("web", |e| matches!(e, NameError::Malformed { .. })),
            ("web.exe", |e| matches!(e, NameError::Malformed { .. })),
            (".service", |e| matches!(e, NameError::Malformed { .. })),
            ("foo@.service", |e| matches!(e, NameError::Malformed { .. })),
            ("@x.service", |e| matches!(e, NameError::Malformed { .. })),
        ];
        for (bad, check) in cases {
            let err = UnitName::new(bad).expect_err(bad);
            assert!(check(&err), "{bad}: {err:?}");
        }
        let long = format!("{}.service", "a".repeat(250));
        assert!(matches!(
            UnitName::new(&long),
            Err(NameError::TooLong { len: 258, .. })
        ));
    }

    #[test]
    fn intent_ids_and_nonces() {
        assert!(IntentId::new("INTENT_RESTART_UNIT").is_ok());
        assert!(IntentId::new("INTENT_").is_err());
        assert!(IntentId::new("RESTART").is_err());
        assert!(IntentId::new("INTENT_restart").is_err());
        assert!(matches!(
            IntentId::new("INTENT_\u{0}"),
            Err(NameError::ControlChar { .. })
        ));
        assert_eq!(
            Nonce::new("00112233AABBCCDD").map(|n| n.0),
            Ok("00112233aabbccdd".to_owned())
        );
        assert!(matches!(
            Nonce::new("0011"),
            Err(NameError::TooShort { .. })
        ));
        assert!(matches!(
            Nonce::new(&"a".repeat(129)),
            Err(NameError::TooLong { .. })
        ));
        assert!(matches!(
            Nonce::new("zz112233aabbccdd"),
            Err(NameError::BadChar { .. })
        ));
        let a = Nonce::random().expect("getrandom");
        let b = Nonce::random().expect("getrandom");
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, b);
        assert!(Nonce::new(a.as_str()).is_ok());
    }

    #[test]
    fn entry_names() {
        assert_eq!(classify_entry_name(b"1-ab.intent.json"), EntryName::Intent);
        assert_eq!(
            classify_entry_name(b".1-ab.intent.json.tmp"),
            EntryName::Hidden
        );
        assert_eq!(classify_entry_name(b".claimed"), EntryName::Hidden);
        assert_eq!(classify_entry_name(b".intent.json"), EntryName::Hidden);
        assert_eq!(classify_entry_name(b"-x.intent.json"), EntryName::Foreign);
        assert_eq!(classify_entry_name(b"a b.intent.json"), EntryName::Foreign);
        assert_eq!(classify_entry_name(b"x.json"), EntryName::Foreign);
        assert_eq!(
            classify_entry_name(b"\xffx.intent.json"),
            EntryName::Foreign
        );
        let long = format!("{}.intent.json", "a".repeat(250));
        assert_eq!(classify_entry_name(long.as_bytes()), EntryName::Foreign);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn accepted_unit_names_are_safe_as_arguments(s in "\\PC{0,80}") {
                if let Ok(u) = UnitName::new(&s) {
                    prop_assert!(!u.as_str().starts_with('-'));
                    prop_assert!(u.as_str().len() <= MAX_UNIT_NAME_LEN);
                    prop_assert!(u.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b":_.\\-@".contains(&b)));
                    prop_assert!(UNIT_TYPES.contains(&u.unit_type()));
                }
            }

            #[test]
            fn grammatical_unit_names_are_accepted(p in "[A-Za-z0-9:_.][A-Za-z0-9:_.-]{0,30}", i in proptest::option::of("[A-Za-z0-9:_.@-]{1,20}"), t in prop::sample::select(UNIT_TYPES)) {
                let name = match i { Some(i) => format!("{p}@{i}.{t}"), None => format!("{p}.{t}") };
                prop_assert!(UnitName::new(&name).is_ok(), "{}", name);
            }

            #[test]
            fn entry_name_classification_never_panics(name in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = classify_entry_name(&name);
            }
        }
    }
}
