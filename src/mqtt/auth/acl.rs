//! Access control lists in Mosquitto's `acl_file` format (see the [module
//! docs](super)).

use std::collections::HashMap;
use std::path::Path;

use super::{AuthFileError, LineError};

/// What a `topic` or `pattern` line grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

/// The access a check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// What a check is about.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// A topic name, published to.
    Topic(&'a str),
    /// A topic filter, subscribed to.
    Filter(&'a str),
}

/// A `topic` line: a filter for one section.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// One piece of a `pattern` line's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    /// `%c`.
    ClientId,
    /// `%u`.
    Username,
    /// The username, or the client id of a client without one (only in
    /// [`Acl::default_policy`]; no file syntax).
    UsernameOrClientId,
}

/// A `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    access: Access,
    pieces: Vec<Piece>,
}

/// A pattern's filter for one client.
enum Substituted {
    /// The filter to match.
    Filter(String),
    /// The pattern does not apply (`%u` and no username).
    Skip,
    /// The value to insert is empty or holds `+`, `#` or `/`.
    Dangerous,
}

/// Whether a value may stand in a pattern (one level, no wildcard).
fn safe_value(v: &str) -> bool {
    !v.is_empty() && !v.contains(['+', '#', '/'])
}

impl Pattern {
    fn parse(template: &str, access: Access) -> Pattern {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            let var = match (c, chars.peek()) {
                ('%', Some('c')) => Piece::ClientId,
                ('%', Some('u')) => Piece::Username,
                _ => {
                    lit.push(c);
                    continue;
                }
            };
            chars.next();
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(var);
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Pattern { access, pieces }
    }

    fn substitute(&self, client_id: &str, username: Option<&str>) -> Substituted {
        let mut out = String::new();
        for p in &self.pieces {
            let value = match p {
                Piece::Lit(s) => {
                    out.push_str(s);
                    continue;
                }
                Piece::ClientId => client_id,
                Piece::Username => match username {
                    Some(u) => u,
                    None => return Substituted::Skip,
                },
                Piece::UsernameOrClientId => username.unwrap_or(client_id),
            };
            if !safe_value(value) {
                return Substituted::Dangerous;
            }
            out.push_str(value);
        }
        Substituted::Filter(out)
    }
}

/// An access control list: which client may publish and subscribe where.
/// Mosquitto's `acl_file` format, checked as Mosquitto checks it (see the
/// [module docs](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// `topic` lines before any `user` line: clients without a username.
    anonymous: Vec<Rule>,
    /// `topic` lines of each `user` section (sections of one name add up).
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines, wherever they stand.
    patterns: Vec<Pattern>,
}

impl Acl {
    /// Reads and parses the ACL file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Acl, AuthFileError> {
        let path = path.as_ref();
        Self::parse_text(&super::read_file(path)?, Some(path))
    }

    /// Parses the text of an ACL file (errors name no file).
    pub fn parse(text: &str) -> Result<Acl, AuthFileError> {
        Self::parse_text(text, None)
    }

    /// The ACL when authentication is on and no ACL file is given: a client
    /// may publish below `sensors/<its username>/` (its client id when it
    /// has no username), as `pattern write sensors/%u/#` does, and may read
    /// nothing.
    pub fn default_policy() -> Acl {
        Acl {
            anonymous: Vec::new(),
            users: HashMap::new(),
            patterns: vec![Pattern {
                access: Access::Write,
                pieces: vec![
                    Piece::Lit("sensors/".into()),
                    Piece::UsernameOrClientId,
                    Piece::Lit("/#".into()),
                ],
            }],
        }
    }

    fn parse_text(text: &str, file: Option<&Path>) -> Result<Acl, AuthFileError> {
        let mut acl = Acl {
            anonymous: Vec::new(),
            users: HashMap::new(),
            patterns: Vec::new(),
        };
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let err = |problem| AuthFileError::Line {
                file: file.map(Path::to_path_buf),
                line: i + 1,
                problem,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err(LineError::MissingUsername));
                    }
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let keyword = if keyword == "topic" {
                        "topic"
                    } else {
                        "pattern"
                    };
                    if rest.is_empty() {
                        return Err(err(LineError::MissingTopic(keyword)));
                    }
                    let (first, filter) = split_word(rest);
                    let (access, filter) = if filter.is_empty() {
                        (Access::ReadWrite, first)
                    } else {
                        let access = Access::parse(first)
                            .ok_or_else(|| err(LineError::InvalidAccess(first.to_string())))?;
                        (access, filter)
                    };
                    check_filter(filter).map_err(|reason| {
                        err(LineError::InvalidFilter {
                            filter: filter.to_string(),
                            reason,
                        })
                    })?;
                    if keyword == "pattern" {
                        acl.patterns.push(Pattern::parse(filter, access));
                    } else {
                        let rule = Rule {
                            access,
                            filter: filter.to_string(),
                        };
                        match &user {
                            Some(u) => acl.users.entry(u.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                other => return Err(err(LineError::UnknownKeyword(other.to_string()))),
            }
        }
        Ok(acl)
    }

    /// Whether the client may publish to the topic name `topic` (write
    /// access). A topic name with a wildcard, or empty, is refused.
    pub fn can_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        if topic.is_empty() || topic.contains(['+', '#']) {
            return false;
        }
        self.check(client_id, username, Target::Topic(topic), Want::Write)
    }

    /// Whether the client may subscribe to the topic filter `filter`: one
    /// granted filter with read access covers it (matches every topic it
    /// matches), and no applicable `deny` filter overlaps it. An invalid
    /// filter is refused.
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        if check_filter(filter).is_err() {
            return false;
        }
        self.check(client_id, username, Target::Filter(filter), Want::Read)
    }

    fn check(&self, client_id: &str, username: Option<&str>, target: Target, want: Want) -> bool {
        let own = match username {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous,
        };
        // The client's own section: a deny refuses, then a grant allows.
        if own
            .iter()
            .any(|r| r.access == Access::Deny && denies(&r.filter, target))
        {
            return false;
        }
        if own
            .iter()
            .any(|r| r.access.grants(want) && grants(&r.filter, target))
        {
            return true;
        }
        // Then the patterns, the same way.
        for p in self.patterns.iter().filter(|p| p.access == Access::Deny) {
            match p.substitute(client_id, username) {
                Substituted::Filter(f) if denies(&f, target) => return false,
                Substituted::Filter(_) | Substituted::Skip => {}
                Substituted::Dangerous => return false,
            }
        }
        self.patterns
            .iter()
            .filter(|p| p.access.grants(want))
            .any(|p| match p.substitute(client_id, username) {
                Substituted::Filter(f) => grants(&f, target),
                Substituted::Skip | Substituted::Dangerous => false,
            })
    }
}

/// The first blank-separated word of `s` and the rest, trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Whether `filter` is a valid MQTT topic filter (wildcards whole levels,
/// `#` last, not empty).
pub fn valid_filter(filter: &str) -> bool {
    check_filter(filter).is_ok()
}

/// Why `filter` is not a valid MQTT topic filter, if it is not.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("empty");
    }
    if filter.len() > 65535 {
        return Err("longer than 65535 bytes");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("`#` must be a whole level, the last one");
        }
        if level.contains('+') && level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

/// Whether the first level of `s` is a wildcard.
fn wild_first(s: &str) -> bool {
    s.starts_with('+') || s.starts_with('#')
}

/// Whether the filter matches the topic name (MQTT 3.1.1 §4.7): `+` is one
/// level, `#` any number of levels including none (`a/#` matches `a`), and
/// a wildcard first level never matches a topic starting with `$`.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && wild_first(filter) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic that `sub` matches, `granted` matches too.
///
/// Level by level: `#` in `granted` covers whatever is left of `sub`
/// (nothing left included); `+` covers a `+` or any literal level; a
/// literal covers only the same literal; `#` in `sub` is covered only by
/// `#`. A `$` topic is covered only by a filter that names its first level.
/// For valid filters this is exact, not an approximation.
pub(crate) fn covers(granted: &str, sub: &str) -> bool {
    if sub.starts_with('$') && wild_first(granted) {
        return false;
    }
    let (mut g, mut s) = (granted.split('/'), sub.split('/'));
    loop {
        match (g.next(), s.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(b)) if b != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic name matches both filters.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    if (a.starts_with('$') && wild_first(b)) || (b.starts_with('$') && wild_first(a)) {
        return false;
    }
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a `deny` filter refuses the target.
fn denies(filter: &str, target: Target) -> bool {
    match target {
        Target::Topic(t) => matches(filter, t),
        Target::Filter(f) => overlaps(filter, f),
    }
}

/// Whether a granting filter allows the target.
fn grants(filter: &str, target: Target) -> bool {
    match target {
        Target::Topic(t) => matches(filter, t),
        Target::Filter(f) => covers(filter, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (f, t, want) in [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
        ] {
            assert_eq!(matches(f, t), want, "{f} ~ {t}");
        }
    }

    #[test]
    fn covering() {
        for (g, s, want) in [
            ("a/#", "a/#", true),
            ("a/#", "a", true),
            ("a/#", "a/+/c", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/b", "a/+", false),
            ("a/+/#", "a/#", false),
            ("a/+/#", "a/b/#", true),
            ("#", "#", true),
            ("#", "$SYS/#", false),
            ("$SYS/#", "$SYS/a", true),
            ("a", "a/#", false),
            ("a/b", "a/b/c", false),
        ] {
            assert_eq!(covers(g, s), want, "{g} covers {s}");
        }
    }

    #[test]
    fn overlapping() {
        for (a, b, want) in [
            ("a/b", "a/+", true),
            ("a/#", "a", true),
            ("a", "a/#", true),
            ("a/+", "a", false),
            ("a/b", "a/c", false),
            ("+/b", "a/+", true),
            ("#", "$SYS/a", false),
            ("$SYS/#", "+/a", false),
            ("a/+/c", "a/b/d", false),
        ] {
            assert_eq!(overlaps(a, b), want, "{a} overlaps {b}");
            assert_eq!(overlaps(b, a), want, "{b} overlaps {a}");
        }
    }

    #[test]
    fn filters() {
        for ok in ["a", "#", "+", "a/+/b", "a/#", "/", "%c/%u"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "#/a"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
