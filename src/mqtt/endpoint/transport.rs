//! What a connection runs over: plain TCP, or TLS (rustls) on TCP.
//!
//! The connection loop reads and writes through [`Transport`]. Plain TCP
//! also has the non-blocking fast paths (`try_read`, `try_write`) the loop
//! uses to skip a wait when bytes are already there; TLS has none (its
//! records are decrypted inside `poll_read`), so it always takes the async
//! path.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A connection's byte stream.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Reads what is waiting now, without waiting; `WouldBlock` if nothing.
    fn try_read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes what fits now, without waiting; `WouldBlock` if nothing.
    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Whether writes are buffered and need a flush (TLS).
    const BUFFERED: bool;
}

impl Transport for TcpStream {
    fn try_read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.try_read_buf(buf)
    }
    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
    const BUFFERED: bool = false;
}

/// The TCP stream under a TLS session. It can leave the runtime of the
/// shard that accepted it ([`Relocatable::detach`]) and join another's
/// ([`Relocatable::attach`]) while the TLS session above it, with whatever
/// it has buffered, moves along unchanged: TLS connections get the same
/// connection affinity as plain ones.
#[derive(Debug)]
pub(crate) enum Relocatable {
    /// Registered with the current runtime's reactor.
    Attached(TcpStream),
    /// Between runtimes (no I/O possible).
    Detached(Option<std::net::TcpStream>),
}

impl Relocatable {
    /// Leaves this runtime's reactor (on the shard that accepted it).
    pub(crate) fn detach(&mut self) -> io::Result<()> {
        if let Relocatable::Attached(_) = self {
            let Relocatable::Attached(s) = std::mem::replace(self, Relocatable::Detached(None))
            else {
                unreachable!("matched just above")
            };
            *self = Relocatable::Detached(Some(s.into_std()?));
        }
        Ok(())
    }

    /// Joins the current runtime's reactor (on the shard that adopts it).
    pub(crate) fn attach(&mut self) -> io::Result<()> {
        if let Relocatable::Detached(s) = self {
            let std = s
                .take()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
            *self = Relocatable::Attached(TcpStream::from_std(std)?);
        }
        Ok(())
    }

    fn attached(self: std::pin::Pin<&mut Self>) -> io::Result<std::pin::Pin<&mut TcpStream>> {
        match self.get_mut() {
            Relocatable::Attached(s) => Ok(std::pin::Pin::new(s)),
            Relocatable::Detached(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for Relocatable {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.attached() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Relocatable {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.attached() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.attached() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.attached() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

/// A TLS connection as the endpoint serves it.
pub(crate) type TlsConn = tokio_rustls::server::TlsStream<Relocatable>;

impl Transport for TlsConn {
    fn try_read_now(&mut self, _: &mut BytesMut) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn try_write_now(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    const BUFFERED: bool = true;
}

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("tls: {path}: {what}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not become a verifier.
    #[error("tls: client_ca: {0}")]
    Verifier(String),
}

/// The TLS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Address of the TLS listener (8883 by convention).
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
    /// PEM CA whose certificates clients must present (mutual TLS).
    pub client_ca: Option<std::path::PathBuf>,
    /// With mutual TLS: the client certificate names the user, and no
    /// password is asked for (mosquitto's `use_identity_as_username`).
    pub use_identity_as_username: bool,
    /// Which name of the certificate that is.
    pub identity: CertIdentity,
}

/// The name of a client certificate that serves as its user name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum CertIdentity {
    /// The subject's common name (CN), as mosquitto takes it.
    #[default]
    #[serde(rename = "cn")]
    CommonName,
    /// The first subject alternative name: a DNS name, else a URI, else an
    /// e-mail address (the names X.509 intends for identities).
    #[serde(rename = "san")]
    SubjectAltName,
}

/// The name `which` of the certificate a TLS client presented, if it has
/// one.
pub(crate) fn peer_identity(stream: &TlsConn, which: CertIdentity) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let der = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    match which {
        CertIdentity::CommonName => {
            let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
            Some(cn.to_owned())
        }
        CertIdentity::SubjectAltName => {
            let san = cert.subject_alternative_name().ok()??;
            // The first of the most preferred kind present.
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((0, *d)),
                    GeneralName::URI(u) => Some((1, *u)),
                    GeneralName::RFC822Name(e) => Some((2, *e)),
                    _ => None,
                })
                .min_by_key(|(rank, _)| *rank)
                .map(|(_, name)| name.to_owned())
        }
    }
}

fn pem_err(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

impl TlsConfig {
    /// Reads the files and builds the acceptor.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| pem_err(&self.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&self.cert, e))?;
        if certs.is_empty() {
            return Err(pem_err(&self.cert, "no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| pem_err(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let config = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
                    roots
                        .add(c.map_err(|e| pem_err(ca, e))?)
                        .map_err(|e| pem_err(ca, e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)?
            }
            None => builder.with_no_client_auth().with_single_cert(certs, key)?,
        };
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// The acceptor in use; replaced on reload, so new connections get the
/// new certificate while the old ones keep theirs.
#[derive(Clone)]
pub(crate) struct TlsAcceptors {
    pub(crate) config: TlsConfig,
    current: Arc<RwLock<tokio_rustls::TlsAcceptor>>,
}

impl std::fmt::Debug for TlsAcceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptors")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptors {
    pub(crate) fn new(config: TlsConfig) -> Result<Self, TlsError> {
        let a = config.acceptor()?;
        Ok(Self {
            config,
            current: Arc::new(RwLock::new(a)),
        })
    }

    pub(crate) fn get(&self) -> tokio_rustls::TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; on error the old certificate stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let a = self.config.acceptor()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = a;
        Ok(())
    }
}
