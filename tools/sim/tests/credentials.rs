//! The sensor simulator's credentials (`--username`, `--password`, `{id}`)
//! and TLS (`--cafile`) against a real mosquitto (a child process on a
//! generated config, a free loopback port, `allow_anonymous false` and a
//! `password_file` made by `mosquitto_passwd`): with the right credentials
//! every message gets through (counted by a subscriber that logs in too);
//! a wrong password is a [`SimError::Refused`] naming the CONNACK code, at
//! once, not a retry loop; over TLS the broker's certificate (made here with
//! rcgen) is verified against the CA file, and one from another CA is
//! refused.
//!
//! Without mosquitto (`/usr/sbin/mosquitto` or on `PATH`) or
//! `mosquitto_passwd`, each test is skipped with a loud message, unless
//! `TELERING_REQUIRE_MOSQUITTO` is set (not to `0`), which makes it fail.

use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use telering_sim::{self as sim, Format, Rate, SimConfig, SimError};

const SBIN: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// The password of every user in the tests' password files.
const PASSWORD: &str = "s3cret pass";
/// The user the counting subscriber logs in as.
const READER: &str = "reader";

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// mosquitto and mosquitto_passwd, or `None` after saying loudly why the
/// test is skipped (a failure with `TELERING_REQUIRE_MOSQUITTO`).
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (find("mosquitto"), find("mosquitto_passwd")) {
        (Some(m), Some(p)) => Some((m, p)),
        _ => {
            let why = "mosquitto and mosquitto_passwd are not both installed";
            let required = std::env::var("TELERING_REQUIRE_MOSQUITTO")
                .is_ok_and(|v| !v.is_empty() && v != "0");
            if required {
                panic!(
                    "TELERING_REQUIRE_MOSQUITTO is set but {why}; install them \
                     (Debian/Ubuntu: `apt-get install -y mosquitto`)"
                );
            }
            // Past the harness's capture, so a plain `cargo test` shows it.
            let _ = writeln!(
                std::io::stderr(),
                "\n=====================================================================\n\
                 SKIPPED credentials::{test}: {why}.\n\
                 Install `mosquitto`; TELERING_REQUIRE_MOSQUITTO=1 makes this a failure.\n\
                 ====================================================================="
            );
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "telering-sim-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Readable by all: mosquitto started as root drops to its own user before
/// it reads the password file and the key.
fn world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// A mosquitto password file with `users`, each with [`PASSWORD`].
fn password_file(passwd: &Path, dir: &Path, users: &[String]) -> PathBuf {
    let file = dir.join("passwords");
    for (i, user) in users.iter().enumerate() {
        let mut c = Command::new(passwd);
        if i == 0 {
            c.arg("-c");
        }
        let st = c
            .arg("-b")
            .arg(&file)
            .arg(user)
            .arg(PASSWORD)
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_passwd runs");
        assert!(st.success(), "mosquitto_passwd -b {user}: {st}");
    }
    world_readable(&file);
    file
}

/// A CA, and a certificate it issued for `localhost` and 127.0.0.1: the CA
/// certificate, the server certificate and its key, PEM.
fn certificates(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = server
        .signed_by(&key, &issuer)
        .expect("the server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A mosquitto child process; killed on drop.
struct Mosquitto {
    child: Child,
    dir: PathBuf,
    /// The plain listener (the subscriber's; the sim's unless TLS).
    port: u16,
    /// The TLS listener, if any.
    tls_port: Option<u16>,
}

impl Mosquitto {
    /// mosquitto with `allow_anonymous false`, `passwords`, an optional ACL
    /// and, with `tls` (CA, certificate, key PEM), a TLS listener too.
    fn start(
        bin: &Path,
        dir: &Path,
        passwords: &Path,
        acl: Option<&str>,
        tls: Option<&(String, String, String)>,
    ) -> Mosquitto {
        let port = free_port();
        let mut conf = format!(
            "# generated by telering-sim's credentials tests\n\
             per_listener_settings false\n\
             allow_anonymous false\n\
             password_file {}\n\
             persistence false\n\
             max_queued_messages 1000000\n\
             max_queued_bytes 0\n\
             max_inflight_messages 0\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             listener {port} 127.0.0.1\n",
            passwords.display()
        );
        if let Some(acl) = acl {
            let file = dir.join("acl");
            fs::write(&file, acl).expect("the ACL file");
            world_readable(&file);
            conf.insert_str(0, &format!("acl_file {}\n", file.display()));
        }
        let tls_port = tls.map(|(ca, cert, key)| {
            let tls_port = free_port();
            for (name, pem) in [("ca.pem", ca), ("server.pem", cert), ("server.key", key)] {
                let f = dir.join(name);
                fs::write(&f, pem).expect("a PEM file");
                world_readable(&f);
            }
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\n\
                 cafile {}\n\
                 certfile {}\n\
                 keyfile {}\n",
                dir.join("ca.pem").display(),
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ));
            tls_port
        });
        let conf_file = dir.join("mosquitto.conf");
        fs::write(&conf_file, conf).expect("the mosquitto config");
        world_readable(&conf_file);
        let log = fs::File::create(dir.join("mosquitto.log")).expect("the log file");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let mut m = Mosquitto {
            child,
            dir: dir.to_owned(),
            port,
            tls_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for p in std::iter::once(port).chain(tls_port) {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Ok(Some(st)) = m.child.try_wait() {
                    panic!("mosquitto exited ({st}):\n{}", m.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "mosquitto is not listening on {p} after 10 s:\n{}",
                    m.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        m
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn tls_broker(&self) -> String {
        // By name: the certificate is checked against `localhost`.
        format!("localhost:{}", self.tls_port.expect("a TLS listener"))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A subscriber on `sensors/#` (QoS 1) logged in as [`READER`], counting
/// the messages and the ones whose topic's device is not a fleet device.
struct Subscriber {
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(port: u16, devices: Vec<String>) -> Subscriber {
        let mut opts = MqttOptions::new("counting-subscriber", "127.0.0.1", port);
        opts.set_credentials(READER, PASSWORD)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        client
            .subscribe("sensors/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("subscriber: no SUBACK: {other:?}"),
            }
        }
        let received = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&received);
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let device = p.topic.split('/').nth(1).unwrap_or_default();
                        assert!(
                            devices.iter().any(|d| d == device),
                            "a message on {} from no fleet device",
                            p.topic
                        );
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("subscriber: {e}"),
                }
            }
        });
        Subscriber { received, task }
    }

    /// Waits until `n` messages arrived (or 10 s), a little longer to catch
    /// extras, and returns the count.
    async fn wait_for(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.received.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!self.task.is_finished(), "the subscriber stopped");
        self.received.swap(0, Ordering::Relaxed)
    }
}

/// Runs `c` to its end off the runtime's threads.
async fn output(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.stdin(Stdio::null()).output())
        .await
        .expect("the blocking task")
        .expect("sensor-sim runs")
}

fn config(broker: String, prefix: &str, v5: bool, count: u64) -> SimConfig {
    SimConfig {
        broker,
        sensors: 5,
        rate: Rate::Unlimited,
        duration: None,
        count: Some(count),
        qos: 1,
        format: Format::Mixed,
        client_prefix: prefix.to_owned(),
        mqtt_v5: v5,
        username: Some("fleet".to_owned()),
        password: Some(PASSWORD.to_owned()),
        ..SimConfig::default()
    }
}

fn devices(cfg: &SimConfig) -> Vec<String> {
    sim::Fleet::new(&cfg.client_prefix, cfg.sensors, cfg.seed)
        .ids()
        .map(str::to_owned)
        .collect()
}

/// Every device its own user (`--username '{id}'`), an ACL that lets each
/// write only below its own topic (mosquitto's `%u`), and one shared user:
/// every message arrives, under 3.1.1 and 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_credentials_deliver_every_message() {
    let Some((bin, passwd)) = tools("right_credentials_deliver_every_message") else {
        return;
    };
    let dir = temp_dir("cred");
    let mut users = vec![READER.to_owned(), "fleet".to_owned()];
    let own = config(String::new(), "own", false, 0);
    users.extend(devices(&own));
    let passwords = password_file(&passwd, &dir, &users);
    // Each device writes only below its own topic; `fleet` anywhere.
    let acl = format!(
        "user {READER}\ntopic read sensors/#\n\n\
         user fleet\ntopic write sensors/#\n\n\
         pattern write sensors/%u/#\n"
    );
    let m = Mosquitto::start(&bin, &dir, &passwords, Some(&acl), None);

    for (v5, username, prefix) in [
        (false, "{id}", "own"),
        (true, "{id}", "own"),
        (false, "fleet", "shared"),
        (true, "fleet", "shared"),
    ] {
        let cfg = SimConfig {
            username: Some(username.to_owned()),
            ..config(m.broker(), prefix, v5, 1000)
        };
        let sub = Subscriber::start(m.port, devices(&cfg)).await;
        let summary = sim::run(cfg, None)
            .await
            .unwrap_or_else(|e| panic!("v5 {v5} as {username}: {e}\n{}", m.log()));
        assert_eq!(summary.sent, 1000, "{summary:?}");
        assert_eq!(summary.acked, 1000, "{summary:?}");
        assert_eq!(summary.errors, 0, "{summary:?}");
        assert_eq!(summary.refused, 0, "{summary:?}");
        assert_eq!(sub.wait_for(1000).await, 1000, "v5 {v5} as {username}");
        sub.task.abort();
    }
}

/// A wrong password (and an unknown user) is refused in the CONNACK: the
/// run fails at once with [`SimError::Refused`], the code as mosquitto sent
/// it (3.1.1: 0x05 not authorized; 5: 0x87, or 0x04/0x86 from other
/// brokers), and nothing is published. Anonymous clients are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_the_connack_code() {
    let Some((bin, passwd)) = tools("wrong_password_is_refused_with_the_connack_code") else {
        return;
    };
    let dir = temp_dir("refused");
    let passwords = password_file(&passwd, &dir, &[READER.to_owned(), "fleet".to_owned()]);
    let m = Mosquitto::start(&bin, &dir, &passwords, None, None);
    let sub = Subscriber::start(m.port, Vec::new()).await;

    let cases: [(bool, Option<&str>, Option<&str>); 5] = [
        (false, Some("fleet"), Some("wrong")),
        (true, Some("fleet"), Some("wrong")),
        (false, Some("{id}"), Some(PASSWORD)),
        (false, None, None),
        (true, None, None),
    ];
    for (v5, username, password) in cases {
        let cfg = SimConfig {
            username: username.map(str::to_owned),
            password: password.map(str::to_owned),
            ..config(m.broker(), "bad", v5, 100)
        };
        let started = Instant::now();
        let err = sim::run(cfg, None)
            .await
            .expect_err("a refused login fails the run");
        let took = started.elapsed();
        eprintln!("v5 {v5}, {username:?}: {err} ({took:?})");
        let SimError::Refused {
            refused,
            sensors,
            refusal,
            username: as_user,
            client,
            ..
        } = &err
        else {
            panic!("v5 {v5}, {username:?}: not a refusal: {err:?}");
        };
        assert_eq!((*refused, *sensors), (5, 5), "{err}");
        let expected: &[u8] = if v5 { &[0x86, 0x87] } else { &[0x04, 0x05] };
        assert!(expected.contains(&refusal.code), "{err}");
        assert!(refusal.is_login(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("CONNACK {:#04x}", refusal.code)),
            "{text}"
        );
        assert!(
            !text.contains(PASSWORD) && !text.contains("wrong"),
            "{text}"
        );
        if username == Some("{id}") {
            // The user name a device sent is its own id, not the pattern.
            assert!(client.starts_with("bad-"), "{client}");
            assert_eq!(as_user.as_deref(), Some(client.as_str()), "{err}");
        }
        // Not retried until the connect timeout: answered at once.
        assert!(took < Duration::from_secs(3), "{took:?}: {err}");
    }
    assert_eq!(sub.wait_for(0).await, 0, "nothing was published");
}

/// Over TLS with `--cafile`: mosquitto's certificate, issued by a CA made
/// here, verifies, and every message arrives (3.1.1 and 5, with
/// credentials); through the `sensor-sim` binary too. A CA file of another
/// CA fails the run at once with the verification error, and a wrong
/// password over TLS is still a refusal with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_cafile_delivers_and_verifies() {
    let Some((bin, passwd)) = tools("tls_with_cafile_delivers_and_verifies") else {
        return;
    };
    let dir = temp_dir("tls");
    let passwords = password_file(&passwd, &dir, &[READER.to_owned(), "fleet".to_owned()]);
    let pems = certificates("telering-sim");
    let m = Mosquitto::start(&bin, &dir, &passwords, None, Some(&pems));
    let cafile = dir.join("ca.pem");

    for v5 in [false, true] {
        let cfg = SimConfig {
            username: Some("fleet".to_owned()),
            cafile: Some(cafile.clone()),
            ..config(m.tls_broker(), "tls", v5, 1000)
        };
        let sub = Subscriber::start(m.port, devices(&cfg)).await;
        let summary = sim::run(cfg, None)
            .await
            .unwrap_or_else(|e| panic!("TLS, v5 {v5}: {e}\n{}", m.log()));
        assert_eq!(summary.sent, 1000, "{summary:?}");
        assert_eq!(summary.acked, 1000, "{summary:?}");
        assert_eq!(summary.errors, 0, "{summary:?}");
        assert_eq!(sub.wait_for(1000).await, 1000, "TLS, v5 {v5}");
        sub.task.abort();
    }

    // The binary, with every option of the kind.
    let cfg = config(m.tls_broker(), "bin", false, 500);
    let sub = Subscriber::start(m.port, devices(&cfg)).await;
    let mut c = Command::new(env!("CARGO_BIN_EXE_sensor-sim"));
    c.args(["--broker", &m.tls_broker(), "--sensors", "5", "--unlimited"])
        .args(["--count", "500", "--qos", "1", "--client-prefix", "bin"])
        .args(["--username", "fleet", "--password", PASSWORD, "--cafile"])
        .arg(&cafile);
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("a JSON summary on stdout");
    assert_eq!(summary["sent"], 500, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");
    assert_eq!(sub.wait_for(500).await, 500, "the binary over TLS");

    // A wrong password over TLS, through the binary: exit 1, the code on
    // stderr.
    let mut c = Command::new(env!("CARGO_BIN_EXE_sensor-sim"));
    c.args([
        "--broker",
        &m.tls_broker(),
        "--sensors",
        "2",
        "--count",
        "10",
    ])
    .args(["--username", "fleet", "--password", "wrong", "--cafile"])
    .arg(&cafile);
    let out = output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused 2 of 2 sensors: CONNACK 0x05"),
        "{stderr}"
    );
    assert_eq!(sub.wait_for(0).await, 0);
    sub.task.abort();

    // Another CA: the certificate does not verify; no retrying until the
    // connect timeout.
    let other = dir.join("other-ca.pem");
    fs::write(&other, certificates("other").0).expect("the other CA");
    let cfg = SimConfig {
        username: Some("fleet".to_owned()),
        cafile: Some(other),
        ..config(m.tls_broker(), "tls", false, 10)
    };
    let started = Instant::now();
    let err = sim::run(cfg, None).await.expect_err("an unknown CA fails");
    eprintln!("other CA: {err} ({:?})", started.elapsed());
    assert!(
        matches!(err, SimError::Connect { connected: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");

    // A CA file that is no CA file is a configuration error.
    let cfg = SimConfig {
        cafile: Some(dir.join("mosquitto.conf")),
        ..config(m.tls_broker(), "tls", false, 10)
    };
    let err = sim::run(cfg, None).await.expect_err("no certificate");
    assert!(matches!(err, SimError::Config(_)), "{err:?}");
}
