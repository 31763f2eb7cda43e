//! The MQTT authentication files on disk: password files made by the real
//! `mosquitto_passwd` are read as they are, files written by
//! [`PasswordFile`] are accepted by the real `mosquitto` broker, `telering
//! passwd` writes files that verify, and ACL files check as Mosquitto's.
//!
//! Without `mosquitto_passwd` (or `mosquitto`/`mosquitto_pub`) on `PATH`
//! those tests are skipped with a loud message, unless
//! `TELERING_REQUIRE_MOSQUITTO` is set, which makes them fail instead (CI).
#![cfg(feature = "mqtt")]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use telering::mqtt::auth::{Acl, AuthFileError, LineError, PasswordFile};

/// Whether `tool` runs; when it does not, a loud skip message (`false`), or
/// a panic under `TELERING_REQUIRE_MOSQUITTO`.
fn have(tool: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !runs {
        if std::env::var_os("TELERING_REQUIRE_MOSQUITTO").is_some() {
            panic!("`{tool}` cannot be run and TELERING_REQUIRE_MOSQUITTO is set");
        }
        eprintln!(
            "\n!!! SKIPPED: `{tool}` is not on PATH (Debian: apt-get install mosquitto \
             mosquitto-clients); set TELERING_REQUIRE_MOSQUITTO=1 to fail instead !!!\n"
        );
    }
    runs
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn mosquitto_passwd(args: &[&str]) {
    run_ok(Command::new("mosquitto_passwd").args(args));
}

// ---------------------------------------------------------------------------
// Password files

#[test]
fn mosquitto_passwd_files_are_read_as_they_are() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();
    // The default (sha512-pbkdf2, `$7$`), a second user added to the file,
    // and Mosquitto 1.x's sha512 (`$6$`).
    mosquitto_passwd(&["-c", "-b", f, "dev-1", "s3cret pass"]);
    mosquitto_passwd(&["-b", f, "dev-2", "other"]);
    mosquitto_passwd(&["-H", "sha512", "-b", f, "legacy", "old-one"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("dev-1:$7$101$"), "{text}");
    assert!(text.contains("legacy:$6$"), "{text}");

    let pf = PasswordFile::load(&file).expect("mosquitto_passwd's file loads");
    assert_eq!(pf.users().collect::<Vec<_>>(), ["dev-1", "dev-2", "legacy"]);
    assert!(pf.verify("dev-1", b"s3cret pass"));
    assert!(pf.verify("dev-2", b"other"));
    assert!(pf.verify("legacy", b"old-one"));
    assert!(!pf.verify("dev-1", b"other"), "another user's password");
    assert!(!pf.verify("dev-1", b"s3cret pas"), "a prefix");
    assert!(!pf.verify("dev-1", b""), "empty");
    assert!(!pf.verify("legacy", b"old-onE"));
    assert!(!pf.verify("dev-3", b"other"), "unknown user");
    assert_eq!(pf.to_text(), text, "saved back unchanged");

    // Deleted with `mosquitto_passwd -D`: gone.
    mosquitto_passwd(&["-D", f, "dev-2"]);
    let pf = PasswordFile::load(&file).unwrap();
    assert!(!pf.contains("dev-2") && !pf.verify("dev-2", b"other"));
    assert!(pf.verify("dev-1", b"s3cret pass"));
}

/// The fields of a `$7$` line: iterations, salt, hash (decoded).
fn fields_7(line: &str) -> (String, u32, Vec<u8>, Vec<u8>) {
    let (user, hash) = line.split_once(':').expect("user:hash");
    let f: Vec<&str> = hash.split('$').collect();
    assert_eq!(f.len(), 5, "{line}");
    assert_eq!((f[0], f[1]), ("", "7"), "{line}");
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        user.to_string(),
        f[2].parse().unwrap(),
        b64.decode(f[3]).expect("salt is padded standard base64"),
        b64.decode(f[4]).expect("hash is padded standard base64"),
    )
}

#[test]
fn set_and_save_round_trip_in_mosquitto_format() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let mut pf = PasswordFile::new();
    pf.set("dev-1", b"pw-one").unwrap();
    pf.set("dev-2", b"pw-two").unwrap();
    pf.save(&file).unwrap();

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let (u1, it1, salt1, hash1) = fields_7(lines[0]);
    let (u2, it2, salt2, hash2) = fields_7(lines[1]);
    assert_eq!((u1.as_str(), u2.as_str()), ("dev-1", "dev-2"));
    assert_eq!((it1, it2), (101, 101));
    assert_eq!((salt1.len(), hash1.len()), (12, 64));
    assert_eq!((salt2.len(), hash2.len()), (12, 64));
    assert_ne!(salt1, salt2, "a fresh salt per entry");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let back = PasswordFile::load(&file).unwrap();
    assert_eq!(back, pf);
    assert!(back.verify("dev-1", b"pw-one") && back.verify("dev-2", b"pw-two"));
    assert!(!back.verify("dev-1", b"pw-two") && !back.verify("nobody", b"pw-one"));

    // Updating keeps the order and re-salts; removing drops the line.
    let mut pf = back;
    pf.set("dev-1", b"new").unwrap();
    assert!(pf.remove("dev-2"));
    pf.save(&file).unwrap();
    let back = PasswordFile::load(&file).unwrap();
    assert!(back.verify("dev-1", b"new") && !back.verify("dev-1", b"pw-one"));
    assert!(!back.contains("dev-2"));
    let (_, _, salt, _) = fields_7(std::fs::read_to_string(&file).unwrap().trim());
    assert_ne!(salt, salt1);
}

#[test]
fn mosquitto_passwd_updates_a_file_we_wrote() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let mut pf = PasswordFile::new();
    pf.set("ours", b"from-telering").unwrap();
    pf.save(&file).unwrap();
    // mosquitto_passwd parses the file and rewrites it around its own line.
    mosquitto_passwd(&["-b", file.to_str().unwrap(), "theirs", "from-mosquitto"]);
    let back = PasswordFile::load(&file).unwrap();
    assert!(back.verify("ours", b"from-telering"));
    assert!(back.verify("theirs", b"from-mosquitto"));
}

/// A `mosquitto` broker on a free loopback port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(dir: &Path, password_file: &Path) -> Broker {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("mosquitto.conf");
    let mut c = std::fs::File::create(&conf).unwrap();
    // `user root`: when run as root, stay root (the file is 0600).
    writeln!(
        c,
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root",
        password_file.display()
    )
    .unwrap();
    drop(c);
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let broker = Broker { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

/// Whether `mosquitto_pub` connects (and publishes) with these credentials.
fn mosquitto_login(port: u16, user: &str, password: &str) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-u", user, "-P", password, "-t", "sensors/x/t", "-m", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_pub runs")
        .success()
}

#[test]
fn the_mosquitto_broker_accepts_a_file_we_wrote() {
    if !have("mosquitto") || !have("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let mut pf = PasswordFile::new();
    pf.set("dev-1", b"right").unwrap();
    pf.set("dev-2", b"p\xc3\xa4ss w:rd").unwrap();
    pf.save(&file).unwrap();
    let broker = start_broker(dir.path(), &file);
    assert!(mosquitto_login(broker.port, "dev-1", "right"));
    assert!(mosquitto_login(broker.port, "dev-2", "päss w:rd"));
    assert!(!mosquitto_login(broker.port, "dev-1", "wrong"));
    assert!(!mosquitto_login(broker.port, "dev-2", "right"));
    assert!(!mosquitto_login(broker.port, "dev-3", "right"));
}

// ---------------------------------------------------------------------------
// `telering passwd`

fn telering_passwd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_telering"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("telering runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

#[test]
fn telering_passwd_creates_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();

    let out = telering_passwd(&[f, "dev-1", "--password", "first"], None);
    assert!(out.status.success(), "{out:?}");
    // From standard input (not a terminal): one line, its end dropped.
    let out = telering_passwd(&[f, "dev-2"], Some("piped pw\r\n"));
    assert!(out.status.success(), "{out:?}");
    let pf = PasswordFile::load(&file).unwrap();
    assert!(pf.verify("dev-1", b"first"));
    assert!(pf.verify("dev-2", b"piped pw"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Update.
    let out = telering_passwd(&[f, "dev-1"], Some("second\n"));
    assert!(out.status.success(), "{out:?}");
    let pf = PasswordFile::load(&file).unwrap();
    assert!(pf.verify("dev-1", b"second") && !pf.verify("dev-1", b"first"));
    assert!(pf.verify("dev-2", b"piped pw"));

    // Delete, then deleting again fails.
    let out = telering_passwd(&[f, "dev-2", "--delete"], None);
    assert!(out.status.success(), "{out:?}");
    let pf = PasswordFile::load(&file).unwrap();
    assert_eq!(pf.users().collect::<Vec<_>>(), ["dev-1"]);
    let out = telering_passwd(&[f, "dev-2", "--delete"], None);
    assert!(!out.status.success());

    // Refused: a bad username, an empty password; the file is unchanged.
    let before = std::fs::read_to_string(&file).unwrap();
    let out = telering_passwd(&[f, "a:b", "--password", "x"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid username"));
    let out = telering_passwd(&[f, "dev-3"], Some("\n"));
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn telering_passwd_output_is_read_by_mosquitto_passwd_and_back() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();
    mosquitto_passwd(&["-c", "-b", f, "theirs", "m-pass"]);
    let out = telering_passwd(&[f, "ours", "--password", "t-pass"], None);
    assert!(out.status.success(), "{out:?}");
    mosquitto_passwd(&["-b", f, "third", "3-pass"]);
    let pf = PasswordFile::load(&file).unwrap();
    assert!(pf.verify("theirs", b"m-pass"));
    assert!(pf.verify("ours", b"t-pass"));
    assert!(pf.verify("third", b"3-pass"));
}

// ---------------------------------------------------------------------------
// Malformed password files

#[test]
fn malformed_password_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "# users\n\nalice:plaintext\n").unwrap();
    match PasswordFile::load(&file) {
        Err(e @ AuthFileError::Line { .. }) => {
            let AuthFileError::Line {
                file: f,
                line,
                problem,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(f.as_deref(), Some(file.as_path()));
            assert_eq!(*line, 3);
            assert_eq!(*problem, LineError::UnsupportedHash);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{}:3: ", file.display())), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        PasswordFile::load(dir.path().join("missing")),
        Err(AuthFileError::Io { .. })
    ));
}

// ---------------------------------------------------------------------------
// ACL files

fn acl_file(text: &str) -> (tempfile::TempDir, Acl) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl");
    std::fs::write(&file, text).unwrap();
    let acl = Acl::load(&file).expect("the ACL file loads");
    (dir, acl)
}

#[test]
fn default_policy_own_sensor_topics_only() {
    let acl = Acl::default_policy();
    // With a username: its username counts, not its client id.
    assert!(acl.can_publish("x", Some("dev-1"), "sensors/dev-1/temperature"));
    assert!(!acl.can_publish("x", Some("dev-1"), "sensors/dev-2/temperature"));
    assert!(!acl.can_publish("dev-2", Some("dev-1"), "sensors/dev-2/temperature"));
    // Without one: its client id.
    assert!(acl.can_publish("dev-1", None, "sensors/dev-1/temperature"));
    assert!(!acl.can_publish("dev-1", None, "sensors/dev-2/temperature"));
    assert!(!acl.can_publish("dev-1", None, "other/dev-1/temperature"));
    // Ids that would widen the pattern get nothing.
    // (Substituted as they are, `+` and `#` would match `sensors/x/t`,
    // `a/b` would reach a level down, and "" would grant `sensors//...`.)
    for id in ["+", "#"] {
        assert!(!acl.can_publish(id, None, "sensors/x/t"), "{id}");
        assert!(!acl.can_publish("x", Some(id), "sensors/x/t"), "{id}");
    }
    assert!(!acl.can_publish("a/b", None, "sensors/a/b/t"));
    assert!(!acl.can_publish("x", Some("a/b"), "sensors/a/b/t"));
    assert!(!acl.can_publish("", None, "sensors//t"));
    assert!(!acl.can_publish("x", Some(""), "sensors//t"));
    // Reads nothing.
    assert!(!acl.can_subscribe("dev-1", Some("dev-1"), "sensors/dev-1/temperature"));
    assert!(!acl.can_subscribe("dev-1", None, "#"));
}

#[test]
fn pattern_file_like_the_default() {
    let (_d, acl) = acl_file("# own topics\npattern write sensors/%u/#\n");
    assert!(acl.can_publish("c", Some("dev-1"), "sensors/dev-1/temperature"));
    assert!(!acl.can_publish("c", Some("dev-1"), "sensors/dev-2/temperature"));
    // `%u` and no username: the pattern does not apply.
    assert!(!acl.can_publish("dev-1", None, "sensors/dev-1/temperature"));
    assert!(!acl.can_subscribe("c", Some("dev-1"), "sensors/dev-1/#"));
    // A username with a wildcard or a level separator never matches.
    assert!(!acl.can_publish("c", Some("+"), "sensors/x/temperature"));
    assert!(!acl.can_publish("c", Some("dev-1/x"), "sensors/dev-1/x/t"));

    let (_d, acl) = acl_file("pattern readwrite devices/%c/%u\n");
    assert!(acl.can_publish("c1", Some("u1"), "devices/c1/u1"));
    assert!(!acl.can_publish("c2", Some("u1"), "devices/c1/u1"));
    assert!(acl.can_subscribe("c1", Some("u1"), "devices/c1/u1"));
    assert!(!acl.can_subscribe("c1", Some("u1"), "devices/c1/+"));
}

#[test]
fn user_sections_and_anonymous_lines() {
    let (_d, acl) = acl_file(
        "topic read public/#\n\
         \n\
         user alice\n\
         topic sensors/alice/#\n\
         topic read fleet/+/status\n\
         \n\
         user bob\n\
         topic write sensors/bob/#\n\
         \n\
         user alice\n\
         topic write commands/alice\n",
    );
    // Lines before any `user`: clients without a username only.
    assert!(acl.can_subscribe("anon", None, "public/news"));
    assert!(acl.can_subscribe("anon", None, "public/#"));
    assert!(!acl.can_publish("anon", None, "public/news"));
    assert!(!acl.can_subscribe("c", Some("alice"), "public/news"));
    // alice: readwrite by default, both of her sections add up.
    assert!(acl.can_publish("c", Some("alice"), "sensors/alice/t"));
    assert!(acl.can_subscribe("c", Some("alice"), "sensors/alice/#"));
    assert!(acl.can_publish("c", Some("alice"), "commands/alice"));
    assert!(!acl.can_subscribe("c", Some("alice"), "commands/alice"));
    assert!(!acl.can_publish("c", Some("alice"), "sensors/bob/t"));
    // bob: write only.
    assert!(acl.can_publish("c", Some("bob"), "sensors/bob/t"));
    assert!(!acl.can_subscribe("c", Some("bob"), "sensors/bob/t"));
    // A user without a section: nothing.
    assert!(!acl.can_publish("c", Some("carol"), "sensors/carol/t"));
    assert!(!acl.can_subscribe("c", Some("carol"), "public/news"));
}

#[test]
fn wildcard_matching_and_subscription_cover() {
    let (_d, acl) = acl_file("user u\ntopic read fleet/+/status\ntopic readwrite a/#\n");
    let sub = |f: &str| acl.can_subscribe("c", Some("u"), f);
    let publ = |t: &str| acl.can_publish("c", Some("u"), t);
    assert!(sub("fleet/d1/status"));
    assert!(sub("fleet/+/status"));
    assert!(!sub("fleet/#"), "wider than the grant");
    assert!(!sub("fleet/d1/+"));
    assert!(!sub("fleet/d1/status/x"));
    assert!(!publ("fleet/d1/status"), "read only");
    assert!(publ("a"), "`#` takes in the parent level");
    assert!(publ("a/b/c/d"));
    assert!(sub("a/+/c") && sub("a/#"));
    assert!(!sub("#") && !sub("+/b"));
    // Topic names with wildcards are not topic names; bad filters are refused.
    assert!(!publ("a/+") && !publ("a/#") && !publ(""));
    assert!(!sub("a/#/b") && !sub("a+") && !sub(""));
    // `$` topics only match a filter naming them.
    let (_d, acl) = acl_file("topic read #\ntopic read $SYS/broker/#\n");
    assert!(acl.can_subscribe("c", None, "x/y"));
    assert!(!acl.can_subscribe("c", None, "$SYS/load"));
    assert!(acl.can_subscribe("c", None, "$SYS/broker/uptime"));
}

#[test]
fn deny_lines_win() {
    let (_d, acl) = acl_file(
        "user u\n\
         topic readwrite sensors/#\n\
         topic deny sensors/secret/#\n\
         pattern deny sensors/%c/blocked\n\
         pattern readwrite own/%c/#\n",
    );
    let publ = |c: &str, t: &str| acl.can_publish(c, Some("u"), t);
    let sub = |f: &str| acl.can_subscribe("c", Some("u"), f);
    assert!(publ("c", "sensors/d1/t"));
    assert!(!publ("c", "sensors/secret/t"), "deny before the grant");
    assert!(!publ("c", "sensors/secret"));
    assert!(sub("sensors/d1/#"));
    assert!(!sub("sensors/#"), "overlaps the denied topics");
    assert!(!sub("sensors/+/t"), "could receive sensors/secret/t");
    // As in Mosquitto, the user's own grant is decided before the patterns:
    // the deny pattern does not take back `sensors/#`.
    assert!(publ("c", "sensors/c/blocked"));
    // Patterns: own/<client id>/#.
    assert!(publ("c", "own/c/x") && !publ("c", "own/d/x"));
    // Patterns apply to clients without a section too, deny first.
    let (_d, acl) = acl_file("pattern deny own/%c/ro\npattern readwrite own/%c/#\n");
    assert!(acl.can_publish("c", Some("nobody"), "own/c/x"));
    assert!(!acl.can_publish("c", Some("nobody"), "own/c/ro"));
    assert!(acl.can_subscribe("c", None, "own/c/x/#"));
    assert!(!acl.can_subscribe("c", None, "own/c/#"));
    // A deny pattern that cannot be evaluated (a dangerous client id)
    // fails closed, even for a grant that inserts nothing.
    let (_d, acl) = acl_file("pattern deny own/%c/ro\npattern read public/#\n");
    assert!(acl.can_subscribe("c", None, "public/x"));
    assert!(!acl.can_subscribe("c+", None, "public/x"));
    assert!(!acl.can_subscribe("c/d", None, "public/x"));
}

#[test]
fn malformed_acl_lines_are_typed_errors_naming_the_line() {
    let cases: &[(&str, LineError)] = &[
        ("topicx read a", LineError::UnknownKeyword("topicx".into())),
        ("user", LineError::MissingUsername),
        ("topic", LineError::MissingTopic("topic")),
        ("pattern   ", LineError::MissingTopic("pattern")),
        ("topic reed a/b", LineError::InvalidAccess("reed".into())),
        (
            "topic read a/#/b",
            LineError::InvalidFilter {
                filter: "a/#/b".into(),
                reason: "`#` must be a whole level, the last one",
            },
        ),
        (
            "pattern write sensors/%u+",
            LineError::InvalidFilter {
                filter: "sensors/%u+".into(),
                reason: "`+` must be a whole level",
            },
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl");
    for (bad, want) in cases {
        std::fs::write(&file, format!("# header\ntopic read ok/#\n\n{bad}\n")).unwrap();
        match Acl::load(&file) {
            Err(e @ AuthFileError::Line { .. }) => {
                let AuthFileError::Line {
                    file: f,
                    line,
                    problem,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(f.as_deref(), Some(file.as_path()), "{bad}");
                assert_eq!(*line, 4, "{bad}");
                assert_eq!(problem, want, "{bad}");
                assert!(e.to_string().contains(":4: "), "{e}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
        // The same text without a file names no file.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(matches!(
            Acl::parse(&text),
            Err(AuthFileError::Line {
                file: None,
                line: 4,
                ..
            })
        ));
    }
    // `topic read` alone: `read` is the filter, as in Mosquitto.
    let acl = Acl::parse("topic read\n").unwrap();
    assert!(acl.can_publish("c", None, "read"));
}
