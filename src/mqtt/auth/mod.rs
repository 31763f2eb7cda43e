//! Authentication files of the MQTT endpoint, in Eclipse Mosquitto 2's
//! formats, so that an operator can reuse the files (and the
//! `mosquitto_passwd` tool) of a Mosquitto deployment.
//!
//! # The password file ([`PasswordFile`])
//!
//! One user a line, `username:hash`, where `hash` is one of
//!
//! - `$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512 of
//!   the password with the salt, `iterations` rounds, a 64-byte hash
//!   (Mosquitto 2's `sha512-pbkdf2`, its default; `mosquitto_passwd` writes
//!   101 iterations and a 12-byte salt, and so does
//!   [`PasswordFile::set`]);
//! - `$6$<base64 salt>$<base64 hash>`: SHA-512 of the password followed by
//!   the salt (Mosquitto 1.x's `sha512`), read but never written.
//!
//! Base64 is the standard alphabet with padding. As in Mosquitto the salt
//! must decode to 12 bytes and the hash to 64. Blank lines and lines whose
//! first non-blank character is `#` are skipped (and kept when the file is
//! saved again); blanks around the username and the hash are ignored. Any
//! other malformed line, a plain-text password, or a user listed twice, is
//! an [`AuthFileError::Line`] naming the file and the line (Mosquitto only
//! logs and skips such lines; a refused start is easier to notice than a
//! user who silently cannot log in). Usernames cannot contain `:` or a line
//! break.
//!
//! # The ACL file ([`Acl`])
//!
//! Mosquitto's `acl_file`:
//!
//! ```text
//! # Lines before any `user` line apply to clients without a username.
//! topic read public/#
//!
//! user alice
//! topic readwrite sensors/alice/#
//! topic deny sensors/alice/secret
//!
//! # Every client, with %c its client id and %u its username.
//! pattern write sensors/%u/#
//! ```
//!
//! - `user <name>` starts the section of that user (the rest of the line,
//!   trimmed, is the name);
//! - `topic [read|write|readwrite|deny] <filter>` grants (or denies) the
//!   current section access to the topics that an MQTT topic filter matches
//!   (`+` one level, `#` any number of levels, the parent included); the
//!   access defaults to `readwrite`;
//! - `pattern [read|write|readwrite|deny] <filter>` is the same for every
//!   client, wherever it stands in the file, with `%c` replaced by the
//!   client id and `%u` by the username (a pattern with `%u` does not apply
//!   to a client without a username);
//! - `#` starts a comment line.
//!
//! A check runs as Mosquitto's: the rules of the client's own section first
//! (a matching `deny` refuses, then a matching grant allows), then the
//! patterns the same way; nothing matching means refused. A topic starting
//! with `$` is matched only by a filter whose first level is literally
//! `$...` (wildcards in the first level never match `$` topics, as in
//! MQTT). A pattern never grants anything when the value it would insert
//! (client id or username) is empty or contains `+`, `#` or `/`, so that a
//! client cannot reach other clients' topics by its choice of id; a `deny`
//! pattern in that case refuses (it fails closed). Mosquitto refuses such
//! clients every pattern; here only the patterns that insert the value.
//!
//! Publishing needs write access to the topic name. Subscribing needs read
//! access to every topic the filter can match: the filter must be *covered*
//! by one granted filter (every topic it matches, that one matches too; a
//! level-by-level check: `#` covers anything below, `+` covers `+` or any
//! one literal level, a literal covers only itself), and it must not
//! overlap any matching `deny` filter (no topic may match both). This is
//! stricter than Mosquitto 2, which accepts every subscription and filters
//! each delivered message.
//!
//! # The default
//!
//! With authentication on and no ACL file, [`Acl::default_policy`]: a
//! client may publish only below `sensors/<its username>/` (its client id
//! when it has no username), i.e. `pattern write sensors/%u/#`, and may
//! read nothing.

pub mod acl;
pub mod password;

pub use acl::Acl;
pub use password::{PasswordFile, DEFAULT_ITERATIONS, HASH_LEN, SALT_LEN};

use std::path::PathBuf;

/// Reads a password or ACL file, naming it in the error.
fn read_file(path: &std::path::Path) -> Result<String, AuthFileError> {
    std::fs::read_to_string(path).map_err(|source| AuthFileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// An error loading or saving a password or ACL file.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line of the file is malformed.
    #[error("{}:{line}: {problem}", file.as_deref().map_or_else(|| "<text>".into(), |p| p.display().to_string()))]
    Line {
        /// The file, when the text came from one (not [`Acl::parse`]).
        file: Option<PathBuf>,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: LineError,
    },
    /// The system's random source failed (salting a new entry).
    #[error("no random salt: {0}")]
    Random(String),
    /// A username that the password file cannot hold.
    #[error("invalid username {0:?}: it must be non-empty, contain no ':' nor line break, not start with '#' nor start or end with a blank")]
    InvalidUsername(String),
}

/// What is wrong with one line of a password or ACL file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A password line without `:` between the username and the hash.
    #[error("expected `username:hash`")]
    MissingColon,
    /// A password line with an empty username.
    #[error("empty username")]
    EmptyUsername,
    /// The same user on two lines of a password file.
    #[error("user {0:?} is listed twice")]
    DuplicateUser(String),
    /// A hash that is not `$6$...` nor `$7$...` (a plain-text password, or
    /// another scheme).
    #[error("unsupported password hash (expected `$7$<iterations>$<salt>$<hash>` or `$6$<salt>$<hash>`)")]
    UnsupportedHash,
    /// A `$6$`/`$7$` hash with the wrong number of `$` fields.
    #[error("malformed password hash: wrong number of `$` fields")]
    HashFields,
    /// A `$7$` iteration count that is not a positive integer.
    #[error("invalid iteration count {0:?}")]
    Iterations(String),
    /// A salt or hash field that is not base64.
    #[error("the {0} is not valid base64")]
    Base64(&'static str),
    /// A salt or hash of the wrong length.
    #[error("the {field} is {got} bytes, expected {expected}")]
    Length {
        /// `salt` or `hash`.
        field: &'static str,
        /// The decoded length.
        got: usize,
        /// The length Mosquitto requires.
        expected: usize,
    },
    /// An ACL line starting with a keyword other than `user`, `topic`,
    /// `pattern`.
    #[error("unknown keyword {0:?} (expected `user`, `topic` or `pattern`)")]
    UnknownKeyword(String),
    /// `user` without a name.
    #[error("`user` without a username")]
    MissingUsername,
    /// `topic` or `pattern` without a filter.
    #[error("`{0}` without a topic filter")]
    MissingTopic(&'static str),
    /// An access other than `read`, `write`, `readwrite`, `deny`.
    #[error("invalid access {0:?} (expected read, write, readwrite or deny)")]
    InvalidAccess(String),
    /// A topic filter that MQTT does not allow.
    #[error("invalid topic filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as written.
        filter: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}
