//! The writer side: atomic, fresh nonce, never a partial file under an intent name.
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, RenameFlags};
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::name::{IntentId, NameError, Nonce};
use crate::parse::{DEFAULT_MAX_INTENT_BYTES, IntentFile, ParseError};

/// Why an intent could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The intent directory could not be opened.
    #[error("cannot open intent directory {path}: {source}")]
    OpenDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The id is outside the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The payload is not a JSON object, or the file would not parse back.
    #[error("the intent would not parse: {0}")]
    Invalid(#[from] ParseError),
    /// The payload could not be serialized.
    #[error("cannot serialize the payload: {0}")]
    Serialize(String),
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentIntent {
    /// The file's name inside the intent directory.
    pub file_name: String,
    /// The fresh nonce it carries.
    pub nonce: Nonce,
    /// The intent id.
    pub intent_id: IntentId,
}

/// Writes intent files into one directory, held open by fd.
///
/// Each file is written under a hidden temporary name (`.NAME.tmp`, which a reactor ignores),
/// fsynced, renamed into place without replacing anything, and the directory is fsynced: a
/// reactor sees either nothing or the whole file.
#[derive(Debug)]
pub struct IntentWriter {
    dir: OwnedFd,
    path: PathBuf,
    max_bytes: usize,
}

impl IntentWriter {
    /// Opens the intent directory (not following a symlink at its last component).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, WriteError> {
        let path = dir.as_ref().to_path_buf();
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| WriteError::OpenDir {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(Self {
            dir: fd,
            path,
            max_bytes: DEFAULT_MAX_INTENT_BYTES,
        })
    }

    /// Sets the size bound checked before writing (match the reactor's `max_intent_bytes`).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Writes an intent whose payload is any serializable value (it must serialize to an object).
    pub fn send<P: Serialize>(
        &self,
        intent_id: &str,
        payload: &P,
    ) -> Result<SentIntent, WriteError> {
        let json =
            serde_json::to_string(payload).map_err(|e| WriteError::Serialize(e.to_string()))?;
        self.send_json(intent_id, &json)
    }

    /// Writes an intent whose payload is given as JSON text (it must be an object).
    pub fn send_json(&self, intent_id: &str, payload_json: &str) -> Result<SentIntent, WriteError> {
        let intent_id = IntentId::new(intent_id)?;
        let payload: Box<RawValue> =
            serde_json::from_str(payload_json).map_err(|e| ParseError::Json {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let nonce = Nonce::random().map_err(|source| WriteError::Io {
            op: "getrandom for",
            path: self.path.clone(),
            source,
        })?;
        #[derive(Serialize)]
        struct Out<'a> {
            intent_id: &'a str,
            nonce: &'a str,
            payload: &'a RawValue,
        }
        let body = serde_json::to_vec(&Out {
            intent_id: intent_id.as_str(),
            nonce: nonce.as_str(),
            payload: &payload,
        })
        .map_err(|e| WriteError::Serialize(e.to_string()))?;
        // What the reactor will check, checked here first: never write a file it must refuse.
        IntentFile::parse_bounded(&body, self.max_bytes)?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let file_name = format!("{millis}-{}.intent.json", &nonce.as_str()[..16]);
        self.write_atomically(&file_name, &body)?;
        Ok(SentIntent {
            file_name,
            nonce,
            intent_id,
        })
    }

    fn write_atomically(&self, name: &str, body: &[u8]) -> Result<(), WriteError> {
        let temp = format!(".{name}.tmp");
        let io = |op, source: std::io::Error| WriteError::Io {
            op,
            path: self.path.join(if op == "rename" { name } else { &temp }),
            source,
        };
        let fd = rustix::fs::openat(
            &self.dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| io("create", e.into()))?;
        let mut file = std::fs::File::from(fd);
        let result = file
            .write_all(body)
            .map_err(|e| io("write", e))
            .and_then(|()| file.sync_all().map_err(|e| io("fsync", e)))
            .and_then(|()| {
                rustix::fs::renameat_with(
                    &self.dir,
                    temp.as_str(),
                    &self.dir,
                    name,
                    RenameFlags::NOREPLACE,
                )
                .map_err(|e| io("rename", e.into()))
            });
        if let Err(e) = result {
            let _ = rustix::fs::unlinkat(&self.dir, temp.as_str(), rustix::fs::AtFlags::empty());
            return Err(e);
        }
        rustix::fs::fsync(&self.dir).map_err(|e| WriteError::Io {
            op: "fsync",
            path: self.path.clone(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_file_that_parses_back_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = IntentWriter::open(dir.path()).expect("open");
        let a = w
            .send_json("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#)
            .expect("send");
        let b = w
            .send(
                "INTENT_DAEMON_RELOAD",
                &std::collections::BTreeMap::<String, u8>::new(),
            )
            .expect("send");
        assert_ne!(a.nonce, b.nonce);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let bytes = std::fs::read(dir.path().join(&a.file_name)).expect("read");
        let file = IntentFile::parse(&bytes).expect("parses");
        assert_eq!(file.nonce(), &a.nonce);
        assert_eq!(file.payload().get(), r#"{"unit":"web.service"}"#);
        assert_eq!(
            crate::name::classify_entry_name(a.file_name.as_bytes()),
            crate::name::EntryName::Intent
        );
    }

    #[test]
    fn refuses_what_the_reactor_would_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = IntentWriter::open(dir.path())
            .expect("open")
            .with_max_bytes(100);
        assert!(matches!(
            w.send_json("restart", "{}"),
            Err(WriteError::Name(_))
        ));
        assert!(matches!(
            w.send_json("INTENT_X", "[1]"),
            Err(WriteError::Invalid(ParseError::PayloadNotObject))
        ));
        assert!(matches!(
            w.send_json("INTENT_X", "{"),
            Err(WriteError::Invalid(ParseError::Json { .. }))
        ));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(100));
        assert!(matches!(
            w.send_json("INTENT_X", &big),
            Err(WriteError::Invalid(ParseError::Oversize { .. }))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).expect("read_dir").count(), 0);
    }
}
