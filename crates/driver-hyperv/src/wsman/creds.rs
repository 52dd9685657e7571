//! Credentials: from the environment or a 0600 file, never from argv, never printed.

use std::fmt;
use std::path::Path;

/// Environment variable holding the user (`DOMAIN\user`, `user@domain` or a local `user`).
pub const ENV_USER: &str = "VMOVE_HYPERV_USER";
/// Environment variable holding the password.
pub const ENV_PASSWORD: &str = "VMOVE_HYPERV_PASSWORD";

/// The most a credentials file may hold: it is two short lines (`user`, `password`); a file far
/// longer is not a credentials file, and is not read whole (a path to a large file by mistake,
/// or one that grows).
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 64 << 10;

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
    /// The file could not be looked at, opened or read; the OS's reason.
    #[error("cannot read the credentials file `{path}`: {reason}")]
    Read {
        path: String,
        /// Why (not a `#[source]`: it is in the message, which is all the driver's error keeps).
        reason: std::io::Error,
    },
    /// Not a regular file (a device, a FIFO, a folder): nothing was read from it.
    #[error("the credentials file `{path}` is not a regular file but {kind}")]
    NotAFile {
        path: String,
        /// What it is instead ("a character device").
        kind: &'static str,
    },
    /// Larger than [`MAX_CREDENTIALS_FILE_BYTES`]: not read whole.
    #[error(
        "the credentials file `{path}` is larger than {MAX_CREDENTIALS_FILE_BYTES} bytes: it is \
         not a credentials file"
    )]
    TooLarge { path: String },
    /// The file can be read by others.
    #[error(
        "the credentials file `{path}` is readable by group or others (mode {mode:o}); chmod 600 it"
    )]
    TooOpen {
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The file's content is not `user = ...` / `password = ...`.
    #[error("the credentials file `{path}` must hold `user = \"...\"` and `password = \"...\"`")]
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
    /// From a TOML file (`user = "..."`, `password = "..."`) that only its owner may read: a
    /// regular file (looked at before it is opened, so a FIFO or a device is not read) of at
    /// most [`MAX_CREDENTIALS_FILE_BYTES`]. What it is comes first, then its size, then who may
    /// read it (on the opened file). No error shows the file's content.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        use vmove_driver::files::{BoundedReadError, read_regular_file_bounded};
        let p = path.display().to_string();
        let (meta, bytes) =
            read_regular_file_bounded(path, MAX_CREDENTIALS_FILE_BYTES).map_err(|e| match e {
                BoundedReadError::Io(reason) => CredentialsError::Read {
                    path: p.clone(),
                    reason,
                },
                BoundedReadError::NotAFile(kind) => CredentialsError::NotAFile {
                    path: p.clone(),
                    kind,
                },
                BoundedReadError::TooLarge => CredentialsError::TooLarge { path: p.clone() },
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CredentialsError::TooOpen { path: p, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text =
            String::from_utf8(bytes).map_err(|_| CredentialsError::Format { path: p.clone() })?;
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
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds.toml");
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
    }

    /// `from_file` on another thread, given up on after `secs` (a FIFO opened by the unbounded
    /// read waited forever for a writer): the error's text, or why there is none.
    #[cfg(unix)]
    fn from_file_err_within(path: &Path, secs: u64) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(Credentials::from_file(&p).map_err(|e| e.to_string()));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(Err(e)) => e,
            Ok(Ok(c)) => format!("read credentials for {}, not refused", c.user),
            Err(_) => format!("no answer within {secs} s (hangs)"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_credentials_file_that_is_a_device_a_fifo_or_too_large_is_refused_without_reading_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private =
            |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A FIFO, mode 0600: opening it to read waited for a writer that never comes.
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // /dev/zero, through a link: a 0600 device made with mknod needs root; the link shows the
        // device's own mode (0666), so before, this was refused as readable by others (the
        // misleading message), and a 0600 one was read until the OOM killer came.
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        // A folder, private: before, "cannot read the credentials file" and no reason.
        let folder = dir.path().join("folder.toml");
        std::fs::create_dir(&folder).unwrap();
        private(&folder);
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (zero.as_path(), "a character device"),
            (folder.as_path(), "a folder"),
        ] {
            let e = from_file_err_within(path, 5);
            assert!(
                e.contains(&format!("the credentials file `{}`", path.display()))
                    && e.contains("is not a regular file but")
                    && e.contains(kind),
                "{e}"
            );
        }
        // A 0600 regular file one byte over the limit, valid TOML (a long comment after the
        // keys): refused on its size, and the password is not in what is said.
        let big = dir.path().join("big.toml");
        let mut text = String::from("user = 'LAB\\ops'\npassword = 'hunter2-secret'\n#");
        let limit = usize::try_from(MAX_CREDENTIALS_FILE_BYTES).unwrap();
        text.push_str(&"x".repeat(limit - text.len()));
        text.push('\n');
        std::fs::write(&big, &text).unwrap();
        private(&big);
        let e = from_file_err_within(&big, 5);
        assert!(
            e.contains(&format!("the credentials file `{}`", big.display()))
                && e.contains(&format!(
                    "is larger than {MAX_CREDENTIALS_FILE_BYTES} bytes: it is not a credentials file"
                ))
                && !e.contains("hunter2"),
            "{e}"
        );
        // One byte less is read.
        text.truncate(text.len() - 2);
        text.push('\n');
        std::fs::write(&big, &text).unwrap();
        assert_eq!(
            Credentials::from_file(&big).unwrap().password(),
            "hunter2-secret"
        );
        // A missing file says the OS's reason.
        let missing = dir.path().join("missing.toml");
        let e = from_file_err_within(&missing, 5);
        assert!(
            e.contains(&format!("`{}`", missing.display())) && e.contains("No such file"),
            "{e}"
        );
    }
}
