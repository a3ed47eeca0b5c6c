//! [`TlsRedisServer`]: a private `redis-server` that only speaks TLS, with certificates
//! made at test time.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::{fs, io};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::redis::Mode;
use super::{RedisServer, RedisServerBuilder, scratch_dir};

/// A private `redis-server` listening with TLS only (`--port 0 --tls-port {port}`), its
/// certificate signed by a certificate authority made for it at start, and a second,
/// unrelated authority for wrong-CA tests. Clients need not present a certificate
/// (`--tls-auth-clients no`). Dereferences to the [`RedisServer`] (stop, restart, pause,
/// log...); its [`url`](RedisServer::url) is `rediss://127.0.0.1:{port}`, and the server
/// certificate names `127.0.0.1` and `localhost`.
///
/// ```no_run
/// use lock_runtime::testing::TlsRedisServer;
///
/// let server = TlsRedisServer::start()?;
/// let trusted = server.ca_pem()?; // PEM bytes for the client's root store
/// let url = server.url(); // rediss://127.0.0.1:{port}
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TlsRedisServer {
    server: RedisServer,
    certificates: PathBuf,
}

impl TlsRedisServer {
    /// Makes the certificates and starts the server; waits until it listens.
    pub fn start() -> io::Result<Self> {
        Self::start_with(RedisServer::builder())
    }

    /// Like [`start`](Self::start), with the options of `builder` (a password, memory
    /// limits...).
    pub fn start_with(builder: RedisServerBuilder) -> io::Result<Self> {
        let certificates = scratch_dir("tls-certificates")?;
        let made = make_certificates(&certificates);
        let server = made.and_then(|()| {
            builder
                .mode(Mode::Tls)
                .kind("tls")
                .arg("--tls-cert-file", certificates.join("server.pem"))
                .arg("--tls-key-file", certificates.join("server.key"))
                .arg("--tls-ca-cert-file", certificates.join("ca.pem"))
                .arg("--tls-auth-clients", "no")
                .start()
        });
        match server {
            Ok(server) => Ok(Self {
                server,
                certificates,
            }),
            Err(error) => {
                let _ = fs::remove_dir_all(&certificates);
                Err(error)
            }
        }
    }

    /// The PEM file of the authority that signed the server's certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.certificates.join("ca.pem")
    }

    /// The contents of [`ca_pem_path`](Self::ca_pem_path).
    pub fn ca_pem(&self) -> io::Result<Vec<u8>> {
        fs::read(self.ca_pem_path())
    }

    /// The PEM file of an unrelated authority: a client that trusts only it must refuse
    /// the server.
    pub fn wrong_ca_pem_path(&self) -> PathBuf {
        self.certificates.join("wrong-ca.pem")
    }

    /// The contents of [`wrong_ca_pem_path`](Self::wrong_ca_pem_path).
    pub fn wrong_ca_pem(&self) -> io::Result<Vec<u8>> {
        fs::read(self.wrong_ca_pem_path())
    }

    /// The directory of the certificates and keys (`ca.pem`, `server.pem`, `server.key`,
    /// `wrong-ca.pem`).
    pub fn certificates_dir(&self) -> &Path {
        &self.certificates
    }
}

impl Deref for TlsRedisServer {
    type Target = RedisServer;

    fn deref(&self) -> &RedisServer {
        &self.server
    }
}

impl DerefMut for TlsRedisServer {
    fn deref_mut(&mut self) -> &mut RedisServer {
        &mut self.server
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.certificates);
    }
}

/// Writes `ca.pem`, `server.pem`, `server.key` and `wrong-ca.pem` into `dir`.
fn make_certificates(dir: &Path) -> io::Result<()> {
    let tls_error = |error: rcgen::Error| io::Error::other(format!("making certificates: {error}"));
    let (ca_pem, issuer) = authority("lock-runtime test CA").map_err(tls_error)?;
    let (wrong_ca_pem, _) = authority("lock-runtime unrelated CA").map_err(tls_error)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(tls_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "lock-runtime test server");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(tls_error)?;
    let certificate = params.signed_by(&key, &issuer).map_err(tls_error)?;
    fs::write(dir.join("ca.pem"), ca_pem)?;
    fs::write(dir.join("wrong-ca.pem"), wrong_ca_pem)?;
    fs::write(dir.join("server.pem"), certificate.pem())?;
    fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

/// A new self-signed authority: its PEM and what signs with it.
fn authority(name: &str) -> Result<(String, Issuer<'static, KeyPair>), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), Issuer::new(params, key)))
}
