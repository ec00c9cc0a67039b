//! Phase two: a registry fixed at compile time maps an intent id to its payload type, its
//! validation and its host function.
use std::fmt;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::name::NameError;
use crate::parse::{IntentFile, ParseError};

/// Why an intent was refused (nothing was executed). Each variant has a stable [`code`].
///
/// [`code`]: Rejection::code
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The envelope failed to parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No intent of the registry has this id.
    #[error("unknown intent id {0:?}")]
    UnknownIntent(String),
    /// The payload does not fit the intent's type (unknown/duplicate key, wrong type, …).
    #[error("payload of {intent_id}: {message}")]
    Payload {
        /// The intent id.
        intent_id: &'static str,
        /// serde_json's description (names the key at fault).
        message: String,
    },
    /// A name in the payload is outside its grammar.
    #[error("payload of {intent_id}: {source}")]
    BadName {
        /// The intent id.
        intent_id: &'static str,
        /// The grammar error.
        source: NameError,
    },
    /// The payload is well-formed but the host does not allow it.
    #[error("{intent_id}: {what} {value:?} is not allowed by the host configuration")]
    NotAllowed {
        /// The intent id.
        intent_id: &'static str,
        /// What was refused ("unit", "target").
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The host lacks the configuration this intent needs.
    #[error("{intent_id}: not configured on this host ({what})")]
    NotConfigured {
        /// The intent id.
        intent_id: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// Any other reason an intent's own validation gives.
    #[error("{intent_id}: {reason}")]
    Invalid {
        /// The intent id.
        intent_id: &'static str,
        /// The reason.
        reason: String,
    },
}

impl Rejection {
    /// A short stable code for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Parse(e) => e.code(),
            Self::UnknownIntent(_) => "unknown_intent",
            Self::Payload { message, .. } if message.starts_with("duplicate field") => {
                "duplicate_key"
            }
            Self::Payload { message, .. } if message.starts_with("unknown field") => "unknown_key",
            Self::Payload { .. } => "bad_payload",
            Self::BadName { .. } => "bad_name",
            Self::NotAllowed { .. } => "not_allowed",
            Self::NotConfigured { .. } => "not_configured",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// How an action ended, as audited.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Did not finish within its timeout (it was killed).
    TimedOut,
    /// Could not be started.
    SpawnFailed(String),
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exit status {c}"),
            Self::Signaled(s) => write!(f, "killed by signal {s}"),
            Self::TimedOut => f.write_str("timed out"),
            Self::SpawnFailed(e) => write!(f, "could not start: {e}"),
        }
    }
}

/// The result of one host function: the commands it ran, and the first failure if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionReport {
    /// Each command's argv (program first) and how it ended, in order.
    pub commands: Vec<(Vec<String>, ActionStatus)>,
}

impl ActionReport {
    /// Whether every command exited 0.
    pub fn succeeded(&self) -> bool {
        self.commands
            .iter()
            .all(|(_, s)| *s == ActionStatus::Exited(0))
    }

    /// The first command that did not exit 0.
    pub fn failure(&self) -> Option<&(Vec<String>, ActionStatus)> {
        self.commands
            .iter()
            .find(|(_, s)| *s != ActionStatus::Exited(0))
    }
}

/// One intent: an id, a payload type, a validation and a host function.
///
/// The payload type should be a struct with `#[serde(deny_unknown_fields)]` and no
/// `flatten`/maps, so unknown and duplicate keys are refused by serde's derive.
pub trait Intent {
    /// What the host function acts on (configuration, allow-lists, a command runner).
    type Host;
    /// The payload, parsed strictly from the file's `payload` object.
    type Payload: DeserializeOwned;
    /// The id, `INTENT_…`.
    const ID: &'static str;
    /// A JSON Schema (draft 2020-12) of the payload object, as JSON text.
    const PAYLOAD_SCHEMA: &'static str;

    /// Checks the payload against the host's policy. Nothing may be executed here.
    fn validate(&self, payload: &Self::Payload, host: &Self::Host) -> Result<(), Rejection>;

    /// Two pending intents with the same key do the same thing: the reactor runs one of them
    /// and audits the others as coalesced. `None` (the default) never coalesces.
    fn coalesce_key(&self, payload: &Self::Payload, host: &Self::Host) -> Option<String> {
        let _ = (payload, host);
        None
    }

    /// A one-line description of what [`Intent::execute`] will do, for the audit log.
    fn describe(&self, payload: &Self::Payload, host: &Self::Host) -> String;

    /// The host function. Runs only after validation, the nonce commit and the "started" audit.
    fn execute(&self, payload: &Self::Payload, host: &Self::Host) -> ActionReport;
}

/// A validated intent, ready to run.
pub struct Prepared<'r, H> {
    intent_id: &'static str,
    description: String,
    coalesce_key: Option<String>,
    run: Box<dyn FnOnce(&H) -> ActionReport + 'r>,
}

impl<'r, H> Prepared<'r, H> {
    /// The intent's id.
    pub fn intent_id(&self) -> &'static str {
        self.intent_id
    }

    /// What it will do.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// See [`Intent::coalesce_key`].
    pub fn coalesce_key(&self) -> Option<&str> {
        self.coalesce_key.as_deref()
    }

    /// Runs the host function.
    pub fn execute(self, host: &H) -> ActionReport {
        (self.run)(host)
    }
}

impl<H> fmt::Debug for Prepared<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("intent_id", &self.intent_id)
            .field("description", &self.description)
            .field("coalesce_key", &self.coalesce_key)
            .finish_non_exhaustive()
    }
}

/// Parses and validates one intent's payload (phase two of the parse).
pub fn prepare<'r, I: Intent + 'r>(
    intent: &'r I,
    file: &IntentFile<'_>,
    host: &I::Host,
) -> Result<Prepared<'r, I::Host>, Rejection> {
    let payload: I::Payload =
        serde_json::from_str(file.payload().get()).map_err(|e| Rejection::Payload {
            intent_id: I::ID,
            message: e.to_string(),
        })?;
    intent.validate(&payload, host)?;
    Ok(Prepared {
        intent_id: I::ID,
        description: intent.describe(&payload, host),
        coalesce_key: intent.coalesce_key(&payload, host),
        run: Box::new(move |host| intent.execute(&payload, host)),
    })
}

/// A set of intents fixed at compile time: a tuple of [`Intent`] values sharing one host type.
pub trait Registry {
    /// The host type every intent of the set acts on.
    type Host;

    /// The ids, in registry order.
    fn ids(&self) -> Vec<&'static str>;

    /// `(id, payload schema)` of every intent.
    fn payload_schemas(&self) -> Vec<(&'static str, &'static str)>;

    /// Finds the intent by id, parses its payload and validates it.
    fn prepare<'r>(
        &'r self,
        file: &IntentFile<'_>,
        host: &Self::Host,
    ) -> Result<Prepared<'r, Self::Host>, Rejection>;
}

macro_rules! tuple_registry {
    ($($t:ident $i:tt),+) => {
        impl<H, $($t: Intent<Host = H>),+> Registry for ($($t,)+) {
            type Host = H;

            fn ids(&self) -> Vec<&'static str> {
                vec![$($t::ID),+]
            }

            fn payload_schemas(&self) -> Vec<(&'static str, &'static str)> {
                vec![$(($t::ID, $t::PAYLOAD_SCHEMA)),+]
            }

            fn prepare<'r>(
                &'r self,
                file: &IntentFile<'_>,
                host: &H,
            ) -> Result<Prepared<'r, H>, Rejection> {
                let id = file.intent_id().as_str();
                $(if id == $t::ID {
                    return prepare(&self.$i, file, host);
                })+
                Err(Rejection::UnknownIntent(id.to_owned()))
            }
        }
    };
}

tuple_registry!(A 0);
tuple_registry!(A 0, B 1);
tuple_registry!(A 0, B 1, C 2);
tuple_registry!(A 0, B 1, C 2, D 3);
tuple_registry!(A 0, B 1, C 2, D 3, E 4);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, I 7);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, I 7, J 8);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, I 7, J 8, K 9);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, I 7, J 8, K 9, L 10);
tuple_registry!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, I 7, J 8, K 9, L 10, M 11);

/// Checks a registry for ids outside the grammar or given twice (the reactor does this at start).
pub fn check_registry<R: Registry>(registry: &R) -> Result<(), String> {
    let ids = registry.ids();
    for (n, id) in ids.iter().enumerate() {
        crate::name::IntentId::new(id).map_err(|e| e.to_string())?;
        if ids[..n].contains(id) {
            return Err(format!("intent id {id} is registered twice"));
        }
    }
    Ok(())
}

/// The JSON Schema of every intent file a registry accepts, as pretty JSON text.
pub fn json_schema<R: Registry>(registry: &R) -> String {
    let variants: Vec<String> = registry
        .payload_schemas()
        .into_iter()
        .map(|(id, payload)| {
            format!(
                concat!(
                    "    {{\n      \"type\": \"object\",\n      \"additionalProperties\": false,\n",
                    "      \"required\": [\"intent_id\", \"nonce\", \"payload\"],\n",
                    "      \"properties\": {{\n",
                    "        \"intent_id\": {{ \"const\": \"{id}\" }},\n",
                    "        \"nonce\": {{ \"type\": \"string\", \"pattern\": \"^[0-9a-fA-F]{{16,128}}$\" }},\n",
                    "        \"payload\": {payload}\n      }}\n    }}"
                ),
                id = id,
                payload = payload
            )
        })
        .collect();
    format!(
        concat!(
            "{{\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n",
            "  \"title\": \"intent file (*.intent.json)\",\n",
            "  \"oneOf\": [\n{}\n  ]\n}}\n"
        ),
        variants.join(",\n")
    )
}
