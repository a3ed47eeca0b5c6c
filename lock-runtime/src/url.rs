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
    from_info(connection_info(url)?, tls).map_err(|error| invalid_url(url, &error))
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

/// With a provider feature, makes it rustls's process-wide provider unless the program
/// installed one (without one, rustls cannot choose when both are compiled in).
fn install_crypto_provider() {
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
