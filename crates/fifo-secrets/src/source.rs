//! Where a secret comes from: `env:VAR`, `file:PATH`, `stdin`, `prompt`, `cmd:PROGRAM ARG…`.

use std::fmt;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::termios::{LocalModes, OptionalActions, SpecialCodeIndex};

use crate::error::bounded;
use crate::memory::{SecretBuf, wipe_vec};
use crate::{SecretBytes, SecretError};

/// Longest accepted source specification, in bytes.
pub const MAX_SOURCE_SPEC: usize = 8192;
/// Most arguments accepted after `cmd:PROGRAM`.
pub const MAX_CMD_ARGS: usize = 256;
/// Longest accepted environment variable name in `env:VAR`.
const MAX_VAR_NAME: usize = 255;
/// Longest accepted path in `file:PATH` (Linux `PATH_MAX`).
const MAX_PATH: usize = 4096;
/// How much of a specification an error message repeats.
const ECHO_CHARS: usize = 80;

/// Where to read a secret from. Parse one with [`str::parse`]:
///
/// | spec | source |
/// |---|---|
/// | `env:VAR` | the environment variable `VAR` (name: no `=`, no NUL, ≤ 255 bytes) |
/// | `file:PATH` | the whole file at `PATH` (relative paths are relative to the cwd) |
/// | `stdin` | standard input, read to end of file |
/// | `prompt` | the controlling terminal (`/dev/tty`), echo off, one line (Ctrl-C → [`SecretError::Interrupted`]) |
/// | `cmd:PROGRAM ARG…` | the standard output of `PROGRAM ARG…` |
///
/// `cmd:` is split on ASCII whitespace (space, tab, newline, carriage return, form feed) and
/// nothing else: **no shell, no quoting, no escapes, no globbing, no variables**. An argument
/// cannot contain whitespace; wrap such a command in a script. `PROGRAM` is looked up in
/// `PATH` when it has no `/`.
///
/// ```
/// use fifo_secrets::SecretSource;
/// let s: SecretSource = "cmd:pass show  tailscale/key".parse()?;
/// assert_eq!(
///     s,
///     SecretSource::Cmd { program: "pass".into(), args: vec!["show".into(), "tailscale/key".into()] }
/// );
/// assert_eq!(s.to_string(), "cmd:pass show tailscale/key");
/// # Ok::<(), fifo_secrets::SecretError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `env:VAR`.
    Env(String),
    /// `file:PATH`.
    File(PathBuf),
    /// `stdin`.
    Stdin,
    /// `prompt`.
    Prompt,
    /// `cmd:PROGRAM ARG…`.
    Cmd {
        /// The program (looked up in `PATH` when it has no `/`).
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// How to read a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Longest secret accepted, in bytes (default 16 MiB). Longer input is
    /// [`SecretError::TooLarge`]; a `cmd:` program that writes more is killed.
    pub max_bytes: usize,
    /// Text written to the terminal before reading a `prompt` (default `"Secret: "`).
    pub prompt_text: String,
    /// Terminal device for `prompt` (default `/dev/tty`).
    pub tty_path: PathBuf,
    /// Remove one trailing `\n` (or `\r\n`) from `file`, `stdin` and `cmd` secrets.
    ///
    /// Default **false**: those sources are passed byte-exact, so binary keys survive. Most
    /// consumers (ansible-core's vault password file, `tailscale --auth-key=file:`) strip
    /// surrounding whitespace themselves. `prompt` always drops the line terminator (it is not
    /// part of what was typed); `env` is always byte-exact.
    pub trim_trailing_newline: bool,
    /// Accept an empty secret (default false: [`SecretError::Empty`]).
    pub allow_empty: bool,
    /// Environment variables removed from a `cmd:` program's environment (default none).
    ///
    /// A caller that holds other secrets in `env:` variables lists them here, so a helper such
    /// as `cmd:bw get password x` never sees them.
    pub cmd_env_remove: Vec<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            prompt_text: "Secret: ".to_owned(),
            tty_path: PathBuf::from("/dev/tty"),
            trim_trailing_newline: false,
            allow_empty: false,
            cmd_env_remove: Vec::new(),
        }
    }
}

/// A `BadSource` error that repeats at most `ECHO_CHARS` characters of the (escaped) input.
fn bad(input: &str, reason: impl Into<String>) -> SecretError {
    let mut shown: String = input.escape_debug().take(ECHO_CHARS).collect();
    if input.escape_debug().nth(ECHO_CHARS).is_some() {
        shown.push('…');
    }
    SecretError::BadSource {
        input: format!("\"{shown}\""),
        reason: reason.into(),
    }
}

impl FromStr for SecretSource {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_SOURCE_SPEC {
            return Err(bad(s, format!("longer than {MAX_SOURCE_SPEC} bytes")));
        }
        if s.contains('\0') {
            return Err(bad(s, "contains a NUL byte"));
        }
        if s == "stdin" {
            return Ok(Self::Stdin);
        }
        if s == "prompt" {
            return Ok(Self::Prompt);
        }
        if let Some(var) = s.strip_prefix("env:") {
            if var.is_empty() {
                return Err(bad(s, "empty variable name"));
            }
            if var.len() > MAX_VAR_NAME {
                return Err(bad(
                    s,
                    format!("variable name longer than {MAX_VAR_NAME} bytes"),
                ));
            }
            if let Some((name, _)) = var.split_once('=') {
                // `env:NAME=VALUE`: the value may be the secret itself. Never repeat it.
                return Err(bad(
                    &format!("env:{name}="),
                    "variable name contains '=' (what follows it is not shown)",
                ));
            }
            return Ok(Self::Env(var.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad(s, "empty path"));
            }
            if path.len() > MAX_PATH {
                return Err(bad(s, format!("path longer than {MAX_PATH} bytes")));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(cmd) = s.strip_prefix("cmd:") {
            let mut words = cmd.split_ascii_whitespace();
            let Some(program) = words.next() else {
                return Err(bad(s, "empty command"));
            };
            let args: Vec<String> = words
                .by_ref()
                .take(MAX_CMD_ARGS + 1)
                .map(str::to_owned)
                .collect();
            if args.len() > MAX_CMD_ARGS {
                return Err(bad(s, format!("more than {MAX_CMD_ARGS} arguments")));
            }
            return Ok(Self::Cmd {
                program: program.to_owned(),
                args,
            });
        }
        // Not a known kind: perhaps the secret itself was pasted here. Never repeat it.
        Err(SecretError::BadSource {
            input: format!("<{} bytes, not shown>", s.len()),
            reason: "expected env:VAR, file:PATH, stdin, prompt or cmd:PROGRAM ARG…".to_owned(),
        })
    }
}

impl fmt::Display for SecretSource {
    /// The specification that parses back to this source (never secret bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "env:{var}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Stdin => f.write_str("stdin"),
            Self::Prompt => f.write_str("prompt"),
            Self::Cmd { program, args } => {
                write!(f, "cmd:{program}")?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                Ok(())
            }
        }
    }
}

impl SecretSource {
    /// Reads the secret with [`ReadOptions::default`].
    ///
    /// # Errors
    /// See [`SecretSource::read_with`].
    pub fn read(&self) -> Result<SecretBytes, SecretError> {
        self.read_with(&ReadOptions::default())
    }

    /// Reads the secret straight into protected memory (no copy on the ordinary heap, except
    /// for `env:`, whose value already sits in the process environment).
    ///
    /// # Errors
    /// [`SecretError::NotSet`], [`SecretError::TooLarge`], [`SecretError::Empty`],
    /// [`SecretError::CommandFailed`], [`SecretError::Interrupted`] (Ctrl-C at a prompt), [`SecretError::Io`] (open/read/spawn/terminal failures,
    /// with the path) and [`SecretError::Memory`].
    pub fn read_with(&self, opts: &ReadOptions) -> Result<SecretBytes, SecretError> {
        let mut buf = match self {
            Self::Env(var) => {
                let value = std::env::var_os(var)
                    .ok_or_else(|| SecretError::NotSet { var: var.clone() })?;
                let bytes = value.into_encoded_bytes();
                if bytes.len() > opts.max_bytes {
                    wipe_vec(bytes);
                    return Err(SecretError::TooLarge {
                        limit: opts.max_bytes,
                    });
                }
                let mut buf = SecretBuf::with_capacity(bytes.len())?;
                let copied = buf.extend_from_slice(&bytes, opts.max_bytes);
                // Zero our heap copy whatever happened.
                wipe_vec(bytes);
                copied?;
                buf
            }
            Self::File(path) => read_file(path, opts.max_bytes)?,
            Self::Stdin => {
                let stdin = std::io::stdin();
                read_fd(stdin.as_fd(), Path::new("<stdin>"), opts.max_bytes)?
            }
            Self::Prompt => return finish(self, read_prompt(opts)?, opts),
            Self::Cmd { program, args } => {
                read_cmd(program, args, opts.max_bytes, &opts.cmd_env_remove)?
            }
        };
        if opts.trim_trailing_newline {
            trim_newline(&mut buf);
        }
        finish(self, buf, opts)
    }
}

fn finish(
    source: &SecretSource,
    buf: SecretBuf,
    opts: &ReadOptions,
) -> Result<SecretBytes, SecretError> {
    if buf.len() == 0 && !opts.allow_empty {
        return Err(SecretError::Empty {
            source_spec: bounded(&source.to_string(), ECHO_CHARS),
        });
    }
    Ok(buf.finish())
}

fn trim_newline(buf: &mut SecretBuf) {
    let bytes = buf.as_slice();
    let cut = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        0
    };
    buf.truncate(buf.len() - cut);
}

/// Reads `fd` to end of file into protected memory, bounded by `limit`. Uses raw `read(2)`
/// (not `std::io::Stdin`, whose buffer would keep a heap copy).
fn read_fd(fd: BorrowedFd<'_>, what: &Path, limit: usize) -> Result<SecretBuf, SecretError> {
    let mut buf = SecretBuf::with_capacity(4096.min(limit.saturating_add(1)))?;
    loop {
        let spare = buf.spare(4096, limit)?;
        if spare.is_empty() {
            return Err(SecretError::TooLarge { limit });
        }
        match rustix::io::read(fd, spare) {
            Ok(0) => break,
            Ok(n) => buf.advance(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(SecretError::io(what, "read", e)),
        }
        if buf.len() > limit {
            return Err(SecretError::TooLarge { limit });
        }
    }
    Ok(buf)
}

fn read_file(path: &Path, limit: usize) -> Result<SecretBuf, SecretError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| SecretError::io(path, "open", e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| SecretError::io(path, "fstat", e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        return Err(SecretError::io(path, "read", Errno::ISDIR));
    }
    if u64::try_from(st.st_size).unwrap_or(0) > limit as u64 {
        return Err(SecretError::TooLarge { limit });
    }
    read_fd(fd.as_fd(), path, limit)
}

fn read_cmd(
    program: &str,
    args: &[String],
    limit: usize,
    env_remove: &[String],
) -> Result<SecretBuf, SecretError> {
    let mut command = Command::new(program);
    for var in env_remove {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| SecretError::io(program, "spawn", e))?;
    let read = match child.stdout.take() {
        Some(mut out) => read_child(&mut out, program, limit),
        None => Err(SecretError::io(
            program,
            "capture stdout of",
            std::io::ErrorKind::BrokenPipe,
        )),
    };
    if read.is_err() {
        // Too much output, or a read error: stop the program rather than wait for it.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| SecretError::io(program, "wait for", e))?;
    let buf = read?;
    if !status.success() {
        return Err(SecretError::CommandFailed {
            program: bounded(program, ECHO_CHARS),
            status,
        });
    }
    Ok(buf)
}

fn read_child(
    out: &mut std::process::ChildStdout,
    program: &str,
    limit: usize,
) -> Result<SecretBuf, SecretError> {
    let mut buf = SecretBuf::with_capacity(4096.min(limit.saturating_add(1)))?;
    loop {
        let spare = buf.spare(4096, limit)?;
        if spare.is_empty() {
            return Err(SecretError::TooLarge { limit });
        }
        match out.read(spare) {
            Ok(0) => break,
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecretError::io(program, "read output of", e)),
        }
        if buf.len() > limit {
            return Err(SecretError::TooLarge { limit });
        }
    }
    Ok(buf)
}

/// Restores the terminal's attributes on every path out of [`read_prompt`].
struct EchoGuard<'a> {
    fd: BorrowedFd<'a>,
    saved: rustix::termios::Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

/// Reads one line from the terminal with echo off, byte by byte in non-canonical mode with
/// signals off, so that Ctrl-C ends the prompt through this code (terminal restored, then
/// [`SecretError::Interrupted`]) instead of killing the process with echo still off.
/// Line editing is done here: erase (Backspace/DEL) removes one character, kill (Ctrl-U)
/// clears the line, EOF (Ctrl-D) on an empty line ends input; other control bytes are ignored.
fn read_prompt(opts: &ReadOptions) -> Result<SecretBuf, SecretError> {
    let tty = &opts.tty_path;
    let fd = rustix::fs::open(
        tty,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SecretError::io(tty, "open terminal", e))?;
    let saved =
        rustix::termios::tcgetattr(&fd).map_err(|e| SecretError::io(tty, "tcgetattr", e))?;
    let code = |index| match saved.special_codes[index] {
        // _POSIX_VDISABLE: the function is switched off.
        0 => None,
        c => Some(c),
    };
    let keys = Keys {
        intr: code(SpecialCodeIndex::VINTR),
        quit: code(SpecialCodeIndex::VQUIT),
        erase: code(SpecialCodeIndex::VERASE),
        kill: code(SpecialCodeIndex::VKILL),
        eof: code(SpecialCodeIndex::VEOF),
    };
    let mut quiet = saved.clone();
    quiet.local_modes.remove(
        LocalModes::ECHO
            | LocalModes::ECHOE
            | LocalModes::ECHOK
            | LocalModes::ECHONL
            | LocalModes::ICANON
            | LocalModes::ISIG
            | LocalModes::IEXTEN,
    );
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    let guard = EchoGuard {
        fd: fd.as_fd(),
        saved,
    };
    // FLUSH drops anything typed ahead while echo was still on.
    rustix::termios::tcsetattr(&fd, OptionalActions::Flush, &quiet)
        .map_err(|e| SecretError::io(tty, "tcsetattr", e))?;
    write_all(fd.as_fd(), opts.prompt_text.as_bytes())
        .map_err(|e| SecretError::io(tty, "write prompt to", e))?;

    let limit = opts.max_bytes;
    let mut buf = SecretBuf::with_capacity(256.min(limit.saturating_add(1)))?;
    let mut interrupted = false;
    loop {
        let spare = buf.spare(1, limit)?;
        if spare.is_empty() {
            return Err(SecretError::TooLarge { limit });
        }
        match rustix::io::read(&fd, &mut spare[..1]) {
            // End of file: the terminal hung up.
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SecretError::io(tty, "read", e)),
        }
        let byte = spare[0];
        let key = keys.classify(byte);
        if key != Key::Text {
            spare[0] = 0;
        }
        match key {
            Key::Text => buf.advance(1),
            Key::Enter => break,
            Key::Interrupt => {
                interrupted = true;
                break;
            }
            Key::Erase => {
                // Remove one UTF-8 character: continuation bytes, then the lead byte.
                let mut len = buf.len();
                while len > 0 && buf.as_slice()[len - 1] & 0xc0 == 0x80 {
                    len -= 1;
                }
                buf.truncate(len.saturating_sub(1));
            }
            Key::Kill => buf.truncate(0),
            Key::Eof if buf.len() == 0 => break,
            Key::Eof | Key::Ignored => {}
        }
        if buf.len() > limit {
            return Err(SecretError::TooLarge { limit });
        }
    }
    drop(guard);
    // Echo was off, so the user's Enter left the cursor on the prompt line.
    let _ = write_all(fd.as_fd(), b"\n");
    if interrupted {
        return Err(SecretError::Interrupted { path: tty.clone() });
    }
    Ok(buf)
}

/// The terminal's editing keys, as configured (`stty -a`), `None` when disabled.
struct Keys {
    intr: Option<u8>,
    quit: Option<u8>,
    erase: Option<u8>,
    kill: Option<u8>,
    eof: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Text,
    Enter,
    Interrupt,
    Erase,
    Kill,
    Eof,
    Ignored,
}

impl Keys {
    fn classify(&self, byte: u8) -> Key {
        let is = |code: Option<u8>| code == Some(byte);
        if byte == b'\n' || byte == b'\r' {
            Key::Enter
        } else if is(self.intr) || is(self.quit) {
            Key::Interrupt
        } else if is(self.erase) || byte == 0x7f || byte == 0x08 {
            Key::Erase
        } else if is(self.kill) {
            Key::Kill
        } else if is(self.eof) {
            Key::Eof
        } else if byte < 0x20 {
            Key::Ignored
        } else {
            Key::Text
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
