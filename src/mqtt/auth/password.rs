//! The password file, in Mosquitto 2's format (see the [module
//! docs](super)).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use super::{AuthFileError, LineError};

/// PBKDF2 rounds of a new `$7$` entry: `mosquitto_passwd`'s default.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length in bytes (Mosquitto writes and requires 12).
pub const SALT_LEN: usize = 12;
/// Hash length in bytes: one SHA-512 output.
pub const HASH_LEN: usize = 64;

/// Standard alphabet, padding written, padding optional when reading.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One user's stored hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 {
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
}

impl Hash {
    /// The hash of `password` under this entry's scheme, salt and rounds.
    fn compute(&self, password: &[u8]) -> [u8; HASH_LEN] {
        let mut out = [0u8; HASH_LEN];
        match self {
            Hash::Pbkdf2 {
                iterations, salt, ..
            } => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out),
            Hash::Sha512 { salt, .. } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                out.copy_from_slice(&h.finalize());
            }
        }
        out
    }

    fn stored(&self) -> &[u8; HASH_LEN] {
        match self {
            Hash::Pbkdf2 { hash, .. } | Hash::Sha512 { hash, .. } => hash,
        }
    }

    /// Whether `password` hashes to the stored hash; the comparison takes
    /// the same time wherever the hashes differ.
    fn verify(&self, password: &[u8]) -> bool {
        let got = self.compute(password);
        bool::from(got.ct_eq(self.stored()))
    }

    /// Parses the part after `username:`.
    fn parse(s: &str) -> Result<Hash, LineError> {
        let fields: Vec<&str> = s.split('$').collect();
        match fields.as_slice() {
            ["", "7", rest @ ..] => {
                let [iterations, salt, hash] = rest else {
                    return Err(LineError::HashFields);
                };
                let iterations = match iterations.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(LineError::Iterations((*iterations).to_string())),
                };
                Ok(Hash::Pbkdf2 {
                    iterations,
                    salt: decode(salt, "salt")?,
                    hash: decode(hash, "hash")?,
                })
            }
            ["", "6", rest @ ..] => {
                let [salt, hash] = rest else {
                    return Err(LineError::HashFields);
                };
                Ok(Hash::Sha512 {
                    salt: decode(salt, "salt")?,
                    hash: decode(hash, "hash")?,
                })
            }
            _ => Err(LineError::UnsupportedHash),
        }
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                B64.encode(salt),
                B64.encode(hash)
            ),
            Hash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", B64.encode(salt), B64.encode(hash))
            }
        }
    }
}

/// Decodes a base64 field that must be exactly `N` bytes.
fn decode<const N: usize>(s: &str, field: &'static str) -> Result<[u8; N], LineError> {
    let bytes = B64.decode(s).map_err(|_| LineError::Base64(field))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| LineError::Length {
        field,
        got: bytes.len(),
        expected: N,
    })
}

/// The blanks Mosquitto trims around the username and the hash.
fn is_blank(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// One line of the file, kept in order so that saving keeps comments.
#[derive(Clone, PartialEq, Eq)]
enum Line {
    /// A blank or comment line, as it was.
    Other(String),
    User {
        name: String,
        hash: Hash,
    },
}

/// A password file: usernames and their salted hashes, in Mosquitto 2's
/// format (`username:$7$<iterations>$<salt>$<hash>`, or Mosquitto 1.x's
/// `$6$` for reading). See the [module docs](super).
///
/// `Debug` shows the usernames only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// Username to its index in `lines`.
    index: HashMap<String, usize>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish()
    }
}

/// A stand-in entry hashed for unknown users, so that refusing one costs
/// what refusing a known user with a default entry costs.
const DUMMY: Hash = Hash::Pbkdf2 {
    iterations: DEFAULT_ITERATIONS,
    salt: [0x5a; SALT_LEN],
    hash: [0; HASH_LEN],
};

impl PasswordFile {
    /// An empty password file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AuthFileError> {
        let path = path.as_ref();
        Self::parse_text(&super::read_file(path)?, Some(path))
    }

    /// Parses the text of a password file (errors name no file).
    pub fn parse(text: &str) -> Result<Self, AuthFileError> {
        Self::parse_text(text, None)
    }

    fn parse_text(text: &str, file: Option<&Path>) -> Result<Self, AuthFileError> {
        let mut pf = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |problem| AuthFileError::Line {
                file: file.map(Path::to_path_buf),
                line: i + 1,
                problem,
            };
            let trimmed = raw.trim_matches(is_blank);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                pf.lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let (name, hash) = trimmed
                .split_once(':')
                .ok_or_else(|| err(LineError::MissingColon))?;
            let name = name.trim_matches(is_blank);
            if name.is_empty() {
                return Err(err(LineError::EmptyUsername));
            }
            let hash = Hash::parse(hash.trim_matches(is_blank)).map_err(err)?;
            if pf.index.contains_key(name) {
                return Err(err(LineError::DuplicateUser(name.to_string())));
            }
            pf.index.insert(name.to_string(), pf.lines.len());
            pf.lines.push(Line::User {
                name: name.to_string(),
                hash,
            });
        }
        Ok(pf)
    }

    /// Whether `password` is `user`'s. Unknown users cost a PBKDF2 of the
    /// default rounds too, and the hash comparison is constant-time, so the
    /// time taken tells neither which users exist nor how close a guess was.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.entry(user) {
            Some(hash) => hash.verify(password),
            None => {
                // Same work as a default entry; the result is discarded.
                let _ = DUMMY.verify(password);
                false
            }
        }
    }

    fn entry(&self, user: &str) -> Option<&Hash> {
        match &self.lines[*self.index.get(user)?] {
            Line::User { hash, .. } => Some(hash),
            Line::Other(_) => None,
        }
    }

    /// Adds `user`, or replaces its password, with a `$7$` entry: a fresh
    /// random 12-byte salt and [`DEFAULT_ITERATIONS`] rounds.
    ///
    /// The username must be non-empty and contain no `:`, `\n` or `\r`;
    /// since the file trims blanks and skips `#` lines, it also may not
    /// start or end with a blank nor start with `#`
    /// ([`AuthFileError::InvalidUsername`]).
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), AuthFileError> {
        self.set_with_iterations(user, password, DEFAULT_ITERATIONS)
    }

    /// [`set`](Self::set) with another PBKDF2 round count (at least 1).
    pub fn set_with_iterations(
        &mut self,
        user: &str,
        password: &[u8],
        iterations: u32,
    ) -> Result<(), AuthFileError> {
        if !valid_username(user) {
            return Err(AuthFileError::InvalidUsername(user.to_string()));
        }
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| AuthFileError::Random(e.to_string()))?;
        let mut entry = Hash::Pbkdf2 {
            iterations: iterations.max(1),
            salt,
            hash: [0; HASH_LEN],
        };
        let computed = entry.compute(password);
        if let Hash::Pbkdf2 { hash, .. } = &mut entry {
            *hash = computed;
        }
        match self.index.get(user) {
            Some(&i) => {
                self.lines[i] = Line::User {
                    name: user.to_string(),
                    hash: entry,
                }
            }
            None => {
                self.index.insert(user.to_string(), self.lines.len());
                self.lines.push(Line::User {
                    name: user.to_string(),
                    hash: entry,
                });
            }
        }
        Ok(())
    }

    /// Removes `user`; whether it was there.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        true
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// The usernames, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::User { name, .. } => Some(name.as_str()),
            Line::Other(_) => None,
        })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The file's text: the lines in order (comments and blank lines kept),
    /// each ending in `\n`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            match l {
                Line::Other(raw) => s.push_str(raw),
                Line::User { name, hash } => {
                    s.push_str(name);
                    s.push(':');
                    s.push_str(&hash.to_string());
                }
            }
            s.push('\n');
        }
        s
    }

    /// Writes the file atomically: a temporary file beside `path` (mode
    /// 0600 on Unix), synced, then renamed over `path`. A reader sees the
    /// old file or the new one, never a part.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), AuthFileError> {
        let path = path.as_ref();
        let io = |source| AuthFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io(std::io::Error::other("not a file path")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        // Unique within this process too (two threads saving at once).
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = dir.join(tmp_name);

        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = (|| {
            // A leftover of a crashed process that had this pid.
            let _ = std::fs::remove_file(&tmp);
            let mut f = opts.open(&tmp)?;
            // `mode` is filtered by the umask; 0600 whatever it is.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            // The rename itself, durable (best effort: not every platform
            // can open a directory).
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// Whether `user` can be written to the file and read back as itself.
fn valid_username(user: &str) -> bool {
    !user.is_empty()
        && !user.contains([':', '\n', '\r'])
        && !user.starts_with('#')
        && user.trim_matches(is_blank) == user
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `mosquitto_passwd -b` 2.0.11 (password `secret`), and by
    /// `mosquitto_passwd -H sha512 -b` (password `hunter2`).
    const MOSQUITTO: &str = "alice:$7$101$GcNdZ9BvxBl15Qx6$fGlcA9716ivhE5AJF0T5SvUMSpCVi07ydamPaNxVNH/PKB70ssnyMnHjITZQje5cqHlPCc45yLjbfDg6G48S4g==\n\
        bob:$6$FVwlq/6bdzfeHYa9$P46MkzhwBLFs/Mv5UUJZv1E1zveIQKY72go7f0bMOWSphiivWHHiPydkIP8HEQw803Zgyuef01Y08SQY+IAdVg==\n";

    #[test]
    fn mosquitto_entries_verify() {
        let pf = PasswordFile::parse(MOSQUITTO).unwrap();
        assert!(pf.verify("alice", b"secret"));
        assert!(!pf.verify("alice", b"secreT"));
        assert!(pf.verify("bob", b"hunter2"));
        assert!(!pf.verify("bob", b"secret"));
        assert!(!pf.verify("carol", b"secret"));
        assert_eq!(pf.to_text(), MOSQUITTO, "written back as read");
    }

    #[test]
    fn set_replace_remove() {
        let mut pf = PasswordFile::new();
        pf.set("a", b"1").unwrap();
        pf.set("b", b"2").unwrap();
        pf.set("a", b"3").unwrap();
        assert_eq!(pf.users().collect::<Vec<_>>(), ["a", "b"]);
        assert!(pf.verify("a", b"3") && !pf.verify("a", b"1"));
        assert!(pf.remove("a") && !pf.remove("a"));
        assert!(pf.verify("b", b"2"));
        assert_eq!(pf.len(), 1);
    }

    #[test]
    fn bad_usernames() {
        let mut pf = PasswordFile::new();
        for u in ["", "a:b", "a\nb", "a\r", "#a", " a", "a "] {
            assert!(
                matches!(pf.set(u, b"x"), Err(AuthFileError::InvalidUsername(_))),
                "{u:?}"
            );
        }
        assert!(pf.is_empty());
    }

    #[test]
    fn line_errors() {
        let cases: &[(&str, LineError)] = &[
            ("alice", LineError::MissingColon),
            (":$6$AAAAAAAAAAAAAAAA$x", LineError::EmptyUsername),
            ("alice:secret", LineError::UnsupportedHash),
            ("alice:$5$abc$def", LineError::UnsupportedHash),
            ("alice:$7$101$AAAAAAAAAAAAAAAA", LineError::HashFields),
            ("alice:$7$0$a$b", LineError::Iterations("0".into())),
            ("alice:$7$x$a$b", LineError::Iterations("x".into())),
            ("alice:$6$!!!!$b", LineError::Base64("salt")),
            (
                "alice:$6$AAAA$AAAA",
                LineError::Length {
                    field: "salt",
                    got: 3,
                    expected: SALT_LEN,
                },
            ),
        ];
        for (text, want) in cases {
            let text = format!("# comment\n\n{text}\n");
            match PasswordFile::parse(&text) {
                Err(AuthFileError::Line {
                    line: 3, problem, ..
                }) => assert_eq!(&problem, want, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let dup = format!(
            "{0}{0}",
            MOSQUITTO.lines().next().unwrap().to_owned() + "\n"
        );
        assert!(matches!(
            PasswordFile::parse(&dup),
            Err(AuthFileError::Line {
                line: 2,
                problem: LineError::DuplicateUser(_),
                ..
            })
        ));
    }
}
