//! Credentials: from the environment or a 0600 file, never from argv, never printed.

use std::fmt;
use std::path::Path;

/// Environment variable holding the user (`DOMAIN\user`, `user@domain` or a local `user`).
pub const ENV_USER: &str = "VMOVE_HYPERV_USER";
/// Environment variable holding the password.
pub const ENV_PASSWORD: &str = "VMOVE_HYPERV_PASSWORD";

/// A user and password. `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Neither a file nor the environment variables.
    #[error(
        "no Hyper-V credentials: set {ENV_USER} and {ENV_PASSWORD}, or name a credentials_file"
    )]
    Missing,
    /// The file could not be read.
    #[error("cannot read the credentials file {path}")]
    Read {
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file can be read by others.
    #[error(
        "the credentials file {path} is readable by group or others (mode {mode:o}); chmod 600 it"
    )]
    TooOpen {
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The file's content is not `user = ...` / `password = ...`.
    #[error("the credentials file {path} must hold `user = \"...\"` and `password = \"...\"`")]
    Format { path: String },
}

impl Credentials {
    /// Builds credentials (tests and callers that already hold them).
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
    /// The password (for the authentication code only).
    pub fn password(&self) -> &str {
        &self.password
    }
    /// From a TOML file (`user = "..."`, `password = "..."`) that only its owner may read.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let p = path.display().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|source| CredentialsError::Read {
                path: p.clone(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CredentialsError::TooOpen { path: p, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: p.clone(),
            source,
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|_| CredentialsError::Format { path: p.clone() })?;
        match (
            table.get("user").and_then(|v| v.as_str()),
            table.get("password").and_then(|v| v.as_str()),
        ) {
            (Some(u), Some(pw)) => Ok(Credentials::new(u, pw)),
            _ => Err(CredentialsError::Format { path: p }),
        }
    }
    /// From `VMOVE_HYPERV_USER` / `VMOVE_HYPERV_PASSWORD`.
    pub fn from_env() -> Result<Self, CredentialsError> {
        match (std::env::var(ENV_USER), std::env::var(ENV_PASSWORD)) {
            (Ok(u), Ok(p)) if !u.is_empty() => Ok(Credentials::new(u, p)),
            _ => Err(CredentialsError::Missing),
        }
    }
    /// The file when one is named, else the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, CredentialsError> {
        match file {
            Some(f) => Self::from_file(f),
            None => Self::from_env(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::new("LAB\\ops", "hunter2-secret");
        let d = format!("{c:?}");
        assert!(d.contains("LAB\\\\ops"));
        assert!(!d.contains("hunter2"));
    }

    #[cfg(unix)]
    #[test]
    fn credentials_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vmove-hv-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("creds.toml");
        std::fs::write(&f, "user = \"LAB\\\\ops\"\npassword = \"pw\"\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Credentials::from_file(&f),
            Err(CredentialsError::TooOpen { .. })
        ));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::from_file(&f).unwrap();
        assert_eq!(c.user, "LAB\\ops");
        assert_eq!(c.password(), "pw");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
