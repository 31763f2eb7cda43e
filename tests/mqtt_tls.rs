//! The TLS listener with real certificates made in the test (rcgen) and a
//! real foreign client (`mosquitto_pub --cafile`, and `--cert`/`--key`
//! for mutual TLS), beside the plaintext listener; a certificate reload
//! serves the new certificate to the connections that come after it.

#![cfg(feature = "mqtt")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use telering::mqtt::{Server, ServerConfig, TlsSection};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and key signed by `ca`, written to `dir/<stem>.pem`
/// and `dir/<stem>.key`: `names` are its subject alternative names, the
/// first also its CN.
fn leaf(dir: &Path, stem: &str, ca: &Ca, names: &[&str]) -> (PathBuf, PathBuf) {
    leaf_cn(dir, stem, ca, names[0], names)
}

/// A leaf certificate whose CN is `cn` and whose subject alternative
/// names are `names`.
fn leaf_cn(dir: &Path, stem: &str, ca: &Ca, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A server CA and a client CA (both written to `dir`), and a server
/// certificate for `localhost` from the first.
struct Mtls {
    ca_file: PathBuf,
    clients: Ca,
    clients_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn mtls(dir: &Path) -> Mtls {
    let server_ca = ca("server CA");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &server_ca.pem).unwrap();
    let clients = ca("client CA");
    let clients_file = dir.join("clients.pem");
    std::fs::write(&clients_file, &clients.pem).unwrap();
    let (cert, key) = leaf(dir, "server", &server_ca, &["localhost"]);
    Mtls {
        ca_file,
        clients,
        clients_file,
        cert,
        key,
    }
}

/// A password file with one user who is none of the test's devices: it
/// puts the default ACL in force (`sensors/<user name>/...`).
fn password_file_for_someone_else(dir: &Path) -> PathBuf {
    let passwords = dir.join("passwords");
    let mut file = telering::mqtt::auth::PasswordFile::new();
    file.set("someone-else", b"pw").unwrap();
    file.save(&passwords).unwrap();
    passwords
}

fn have_mosquitto_pub() -> bool {
    if Command::new("mosquitto_pub").arg("--help").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("TELERING_REQUIRE_MOSQUITTO").is_none(),
        "mosquitto_pub is required"
    );
    eprintln!("SKIPPED: mosquitto_pub not installed");
    false
}

/// `mosquitto_sub` for one message, waiting at most 5 s.
fn subscribe(port: u16, extra: &[&str], filter: &str) -> std::process::Output {
    Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", filter, "-C", "1", "-W", "5"])
        .args(extra)
        .output()
        .unwrap()
}

fn publish(port: u16, extra: &[&str], device: &str) -> std::process::Output {
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", &format!("sensors/{device}/temperature"), "-m", "21.5"])
        .args(extra)
        .output()
        .unwrap()
}

fn start(tls: TlsSection) -> Server {
    start_with(tls, |_| {})
}

fn start_with(tls: TlsSection, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ingest.shards = 2;
    cfg.tls = Some(tls);
    tweak(&mut cfg);
    Server::start(cfg).unwrap()
}

#[test]
fn mosquitto_pub_over_tls_beside_plaintext_and_a_reload() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca("telering test CA 1");
    let ca_file = dir.path().join("ca1.pem");
    std::fs::write(&ca_file, &ca1.pem).unwrap();
    let (cert, key) = leaf(dir.path(), "server", &ca1, &["localhost", "127.0.0.1"]);
    let s = start(TlsSection {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        use_identity_as_username: false,
        identity: Default::default(),
    });
    let tls_port = s.tls_addr().expect("a TLS listener").port();
    let ca_arg = ca_file.to_str().unwrap();
    let ok = publish(tls_port, &["--cafile", ca_arg], "tls-1");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Plaintext beside it.
    let plain = publish(s.local_addr().port(), &[], "plain-1");
    assert!(plain.status.success());
    // A client that does not trust the CA is refused by its own check.
    let other = ca("another CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other.pem).unwrap();
    let refused = publish(
        tls_port,
        &["--cafile", other_file.to_str().unwrap()],
        "tls-x",
    );
    assert!(!refused.status.success());
    // Reload: a certificate from another CA replaces the files; new
    // connections get it.
    let ca2 = ca("telering test CA 2");
    let ca2_file = dir.path().join("ca2.pem");
    std::fs::write(&ca2_file, &ca2.pem).unwrap();
    let (c2, k2) = leaf(dir.path(), "server2", &ca2, &["localhost"]);
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    s.reload_tls().unwrap();
    let new = publish(tls_port, &["--cafile", ca2_file.to_str().unwrap()], "tls-2");
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let old = publish(tls_port, &["--cafile", ca_arg], "tls-3");
    assert!(!old.status.success(), "the old certificate is gone");
    // A broken file on reload keeps the certificate in use.
    std::fs::write(&key, b"not a key").unwrap();
    assert!(s.reload_tls().is_err());
    let still = publish(tls_port, &["--cafile", ca2_file.to_str().unwrap()], "tls-4");
    assert!(still.status.success());
    let stats = s.shutdown();
    assert_eq!(stats.accepted, 4, "{stats:?}");
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_client_ca() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Mtls {
        ca_file,
        clients,
        clients_file,
        cert,
        key,
    } = mtls(dir.path());
    let (ccert, ckey) = leaf(dir.path(), "device", &clients, &["dev-7"]);
    let s = start(TlsSection {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert,
        key,
        client_ca: Some(clients_file),
        use_identity_as_username: false,
        identity: Default::default(),
    });
    let port = s.tls_addr().unwrap().port();
    let ca_arg = ca_file.to_str().unwrap();
    let with = publish(
        port,
        &[
            "--cafile",
            ca_arg,
            "--cert",
            ccert.to_str().unwrap(),
            "--key",
            ckey.to_str().unwrap(),
        ],
        "dev-7",
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let without = publish(port, &["--cafile", ca_arg], "dev-8");
    assert!(!without.status.success());
    let stats = s.shutdown();
    assert_eq!(stats.accepted, 1);
}

#[test]
fn a_bad_certificate_file_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, b"nothing here").unwrap();
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.tls = Some(TlsSection {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert: bogus.clone(),
        key: bogus,
        client_ca: None,
        use_identity_as_username: false,
        identity: Default::default(),
    });
    let err = Server::start(cfg).unwrap_err().to_string();
    assert!(err.contains("bogus.pem"), "{err}");
}

#[test]
fn the_certificate_cn_is_the_user_name_for_the_acl() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Mtls {
        ca_file,
        clients,
        clients_file,
        cert,
        key,
    } = mtls(dir.path());
    let (ccert, ckey) = leaf(dir.path(), "device", &clients, &["dev-7"]);
    // A password file puts the default ACL in force: sensors/<user>/...
    let passwords = password_file_for_someone_else(dir.path());
    let s = start_with(
        TlsSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert,
            key,
            client_ca: Some(clients_file),
            use_identity_as_username: true,
            identity: Default::default(),
        },
        |c| c.auth.password_file = Some(passwords),
    );
    let port = s.tls_addr().unwrap().port();
    let args = [
        "--cafile",
        ca_file.to_str().unwrap(),
        "--cert",
        ccert.to_str().unwrap(),
        "--key",
        ckey.to_str().unwrap(),
    ];
    // No password: the certificate says who it is.
    let own = publish(port, &args, "dev-7");
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let other = publish(port, &args, "dev-8");
    // 3.1.1: acknowledged and dropped, as mosquitto does.
    assert!(other.status.success());
    let stats = s.shutdown();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.dead_letter_reasons.get("not_authorized"), Some(&1));
}

/// `mosquitto_sub` over TLS, with `--cafile` and with a client certificate
/// (mutual TLS): the handshake and the MQTT session work, and its
/// subscription is refused in the SUBACK (the endpoint serves none yet;
/// with the ACL in force, reading other devices is not authorized), which
/// `mosquitto_sub` reports ("All subscription requests were denied") and
/// stops on rather than waiting for messages.
#[test]
fn mosquitto_sub_over_tls_and_mutual_tls_is_answered_with_a_refusal() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Mtls {
        ca_file,
        clients,
        clients_file,
        cert,
        key,
    } = mtls(dir.path());
    let (ccert, ckey) = leaf(dir.path(), "device", &clients, &["dev-7"]);
    let ca_arg = ca_file.to_str().unwrap();
    let client_args = [
        "--cafile",
        ca_arg,
        "--cert",
        ccert.to_str().unwrap(),
        "--key",
        ckey.to_str().unwrap(),
    ];
    // Server-authenticated TLS, no ACL: refused as not served.
    let s = start(TlsSection {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        use_identity_as_username: false,
        identity: Default::default(),
    });
    let port = s.tls_addr().unwrap().port();
    for v in ["mqttv311", "mqttv5"] {
        let out = subscribe(port, &["--cafile", ca_arg, "-V", v], "sensors/#");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("All subscription requests were denied"),
            "{v}: {err}"
        );
    }
    // Not trusting the server's CA: the handshake fails, nothing is said.
    let other = ca("another CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other.pem).unwrap();
    let out = subscribe(port, &["--cafile", other_file.to_str().unwrap()], "a");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("denied"));
    s.shutdown();

    // Mutual TLS, the CN as the user name, the default ACL: refused as not
    // authorized (seen in the counters), and without a certificate the
    // handshake itself fails.
    let s = start_with(
        TlsSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert,
            key,
            client_ca: Some(clients_file),
            use_identity_as_username: true,
            identity: Default::default(),
        },
        |c| {
            c.auth.password_file = Some(password_file_for_someone_else(dir.path()));
        },
    );
    let port = s.tls_addr().unwrap().port();
    let mut args = client_args.to_vec();
    args.extend(["-V", "mqttv5"]);
    let out = subscribe(port, &args, "sensors/dev-8/#");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("All subscription requests were denied"),
        "{err}"
    );
    let without = subscribe(port, &["--cafile", ca_arg], "sensors/dev-8/#");
    assert!(!without.status.success());
    let g = s.guard_stats();
    assert_eq!(
        g.subscribe_not_authorized
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    s.shutdown();
}

/// `identity = "san"`: the client certificate's subject alternative name,
/// not its CN, is the user name the ACL sees.
#[test]
fn the_certificate_san_can_be_the_user_name_instead() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Mtls {
        ca_file,
        clients,
        clients_file,
        cert,
        key,
    } = mtls(dir.path());
    let (ccert, ckey) = leaf_cn(
        dir.path(),
        "device",
        &clients,
        "greenhouse-4",
        &["dev-9.fleet"],
    );
    let passwords = password_file_for_someone_else(dir.path());
    let s = start_with(
        TlsSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert,
            key,
            client_ca: Some(clients_file),
            use_identity_as_username: true,
            identity: telering::mqtt::endpoint::CertIdentity::SubjectAltName,
        },
        |c| c.auth.password_file = Some(passwords),
    );
    let port = s.tls_addr().unwrap().port();
    let args = [
        "--cafile",
        ca_file.to_str().unwrap(),
        "--cert",
        ccert.to_str().unwrap(),
        "--key",
        ckey.to_str().unwrap(),
    ];
    for device in ["dev-9.fleet", "greenhouse-4"] {
        let out = publish(port, &args, device);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stats = s.shutdown();
    assert_eq!(stats.accepted, 1, "only under the SAN: {stats:?}");
    assert_eq!(stats.dead_letter_reasons.get("not_authorized"), Some(&1));
}

/// Connection affinity over TLS: with 2 shards, devices whose client id is
/// their device id end up on the shard that owns their partition, the TLS
/// session moving along with its socket, so none of their records crosses
/// a thread; every QoS 1 message is acknowledged and counted.
#[test]
fn tls_devices_publishing_their_own_id_cross_no_shard() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Mtls {
        ca_file, cert, key, ..
    } = mtls(dir.path());
    let s = start(TlsSection {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert,
        key,
        client_ca: None,
        use_identity_as_username: false,
        identity: Default::default(),
    });
    let port = s.tls_addr().unwrap().port().to_string();
    for d in 0..8 {
        let id = format!("dev-{d}");
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port, "-q", "1", "-i", &id, "-l"])
            .args(["-t", &format!("sensors/{id}/temperature")])
            .args(["--cafile", ca_file.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            for i in 0..25 {
                writeln!(stdin, "{}.5", 20 + i % 5).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{id}");
    }
    let stats = s.shutdown();
    assert_eq!(
        (stats.received, stats.accepted, stats.forwarded),
        (200, 200, 0),
        "{stats:?}"
    );
}
