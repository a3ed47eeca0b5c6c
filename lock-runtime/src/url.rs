//! Redis URLs to clients: parsing (without ever showing a password), RESP3 and
//! `TCP_NODELAY`, and TLS (`rediss://`) with the certificates the builder was given.

use crate::LockError;
use crate::driver::{Tls, tuned};

/// `url` parsed, RESP3 with `TCP_NODELAY`; an unparsable URL is a `Config` error that
/// does not show the password.
pub(crate) fn connection_info(url: &str) -> Result<redis::ConnectionInfo, LockError> {
    if url.starts_with("rediss://")
        && !cfg!(any(feature = "tls-rustls", feature = "tls-native-tls"))
    {
        return Err(LockError::Config(format!(
            "`{}` is a TLS URL: enable the `tls-rustls-ring` (or `tls-rustls`, `tls-native-tls`) feature of lock-runtime",
            redact(url)
        )));
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(tuned)
        .map_err(|error| invalid_url(url, &error))
}

fn invalid_url(url: &str, error: &redis::RedisError) -> LockError {
    LockError::Config(format!(
        "invalid Redis URL `{}` ({error}); expected redis://[user:password@]host:port[/db] or rediss://...",
        redact(url)
    ))
}

/// A client for `url`, with `tls`'s certificates for a `rediss://` URL.
pub(crate) fn client(url: &str, tls: &Tls) -> Result<redis::Client, LockError> {
    from_info(connection_info(url)?, tls).map_err(|error| unusable_certificates(&error))
}

/// The certificates given to `tls_certificates` could not be used (the only way a client
/// for a parsed address fails to build).
fn unusable_certificates(error: &redis::RedisError) -> LockError {
    LockError::Config(format!(
        "the certificates given to LockerBuilder::tls_certificates cannot be used ({error}); \
         give PEM: the CA in `root_cert`, the client certificate and key in `client_tls`"
    ))
}

/// Checks the addresses of a Cluster's nodes or of the sentinels (`what`): one set of
/// credentials for all (redis-rs uses one), and certificates only where redis-rs takes
/// them (over rustls). Installs the rustls crypto provider for TLS addresses.
pub(crate) fn check_group(
    infos: &[redis::ConnectionInfo],
    tls: &Tls,
    what: &str,
) -> Result<(), LockError> {
    let credentials = |info: &redis::ConnectionInfo| {
        let settings = info.redis_settings();
        (
            settings.username().map(str::to_owned),
            settings.password().map(str::to_owned),
        )
    };
    if let Some(first) = infos.first()
        && infos
            .iter()
            .any(|info| credentials(info) != credentials(first))
    {
        return Err(LockError::Config(format!(
            "the {what} URLs carry different credentials; one user and password serve them \
             all: give the same in every URL"
        )));
    }
    let secure = infos
        .iter()
        .any(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
    if secure {
        install_crypto_provider();
    }
    #[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
    if tls.certificates.is_some() {
        return Err(LockError::Config(format!(
            "certificates for {what} need a `tls-rustls*` feature: redis-rs takes them over \
             rustls only (with `tls-native-tls`, trust the CA in the operating system's store \
             instead)"
        )));
    }
    let _ = tls;
    Ok(())
}

/// A client for `info`, with `tls`'s certificates when it is a TLS address.
pub(crate) fn from_info(
    info: redis::ConnectionInfo,
    tls: &Tls,
) -> redis::RedisResult<redis::Client> {
    let secure = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    if secure {
        install_crypto_provider();
    }
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    if let (true, Some(certificates)) = (secure, &tls.certificates) {
        return redis::Client::build_with_tls(info, certificates.clone());
    }
    let _ = tls;
    redis::Client::open(info)
}

/// Checks that certificates given to `tls_certificates` are PEM: redis-rs reads anything
/// else as no certificate at all (an empty trust store, so every handshake fails later
/// with a misleading "unknown issuer").
#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
pub(crate) fn check_certificates(certificates: &redis::TlsCertificates) -> Result<(), LockError> {
    let pem = |bytes: &[u8], label: &str| {
        let text = String::from_utf8_lossy(bytes);
        text.contains("-----BEGIN ") && text.contains(label)
    };
    let root = certificates
        .root_cert
        .as_deref()
        .is_none_or(|root| pem(root, "CERTIFICATE-----"));
    let client = certificates.client_tls.as_ref().is_none_or(|client| {
        pem(&client.client_cert, "CERTIFICATE-----") && pem(&client.client_key, "KEY-----")
    });
    if root && client {
        return Ok(());
    }
    Err(LockError::Config(
        "the certificates given to LockerBuilder::tls_certificates are not PEM: give the CA \
         in `root_cert` and the client certificate and key in `client_tls`, each as \
         `-----BEGIN ...-----` text"
            .into(),
    ))
}

/// With a provider feature, makes it rustls's process-wide provider unless the program
/// installed one (without one, rustls cannot choose when both are compiled in).
pub(crate) fn install_crypto_provider() {
    #[cfg(feature = "tls-rustls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[cfg(all(feature = "tls-rustls-aws-lc-rs", not(feature = "tls-rustls-ring")))]
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `url` with any password replaced by `***`, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://:hunter2@host:6379"),
            "redis://***@host:6379"
        );
        assert_eq!(redact("redis://user:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let err = connection_info("redis://:hunter2@[::1:6379").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    fn infos(urls: &[&str]) -> Vec<redis::ConnectionInfo> {
        urls.iter()
            .map(|url| connection_info(url).unwrap())
            .collect()
    }

    #[test]
    fn a_cluster_or_sentinels_with_different_credentials_are_refused() {
        let tls = Tls::default();
        let same = infos(&["redis://u:p@a:1", "redis://u:p@b:2"]);
        assert!(check_group(&same, &tls, "Redis Cluster").is_ok());
        for urls in [
            &["redis://u:p@a:1", "redis://u:other@b:2"][..],
            &["redis://u:p@a:1", "redis://b:2"],
            &["redis://:p@a:1", "redis://u:p@b:2"],
        ] {
            let error = check_group(&infos(urls), &tls, "Redis Cluster").unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, LockError::Config(_)), "{message}");
            assert!(message.contains("different credentials"), "{message}");
            assert!(
                !message.contains(":p@") && !message.contains("other"),
                "{message}"
            );
        }
    }

    #[cfg(feature = "tls-rustls-ring")]
    #[test]
    fn a_tls_cluster_installs_the_crypto_provider() {
        // Without it, rustls panics at the first handshake when it cannot choose one.
        let tls = Tls::default();
        check_group(
            &infos(&["rediss://a:1", "rediss://b:2"]),
            &tls,
            "Redis Cluster",
        )
        .unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    #[test]
    fn unusable_certificates_are_a_config_error_that_says_so() {
        let tls = Tls {
            certificates: Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(b"not a certificate".to_vec()),
            }),
        };
        let error = check_certificates(tls.certificates.as_ref().unwrap()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, LockError::Config(_)), "{message}");
        assert!(message.contains("tls_certificates"), "{message}");
        assert!(!message.contains("invalid Redis URL"), "{message}");
        let pem = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(
                b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            ),
        };
        assert!(check_certificates(&pem).is_ok());
    }

    #[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
    #[test]
    fn native_tls_refuses_certificates_for_a_cluster() {
        let tls = Tls {
            certificates: Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: None,
            }),
        };
        let error = check_group(&infos(&["rediss://a:1"]), &tls, "Redis Cluster").unwrap_err();
        assert!(error.to_string().contains("tls-rustls"), "{error}");
    }

    #[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
    #[test]
    fn a_tls_url_without_a_tls_feature_names_the_feature() {
        let err = connection_info("rediss://:secret@cache.example:6380").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("tls-rustls-ring") && !message.contains("secret"),
            "{message}"
        );
    }
}
