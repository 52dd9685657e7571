//! Where a journal is: an SQLite file (a path) or a PostgreSQL database (a `postgresql://` or
//! `postgres://` URL), and, for the latter, connecting with the password from the environment
//! (`PGPASSWORD`), a file only its owner can read (`PGPASSFILE`, or `~/.pgpass`): never from
//! the location, which is written to logs, errors and the process's command line.

use crate::error::{JournalError, Result};
use std::path::Path;

/// Whether `location` names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres(location: &str) -> bool {
    let l = location.trim_start();
    l.starts_with("postgresql://") || l.starts_with("postgres://")
}

/// `location` with a URL's user information and its secret query parameters' values
/// (`?password=`) hidden (what every message shows): the one URI redaction of vmove.
pub fn redact(location: &str) -> String {
    vmove_driver::redact_uris(location).into_owned()
}

/// Whether a PostgreSQL URL carries a password: in its user information
/// (`postgresql://user:secret@host/db`) or as a `password=` parameter, its name written in any
/// case or percent-encoded (`%70assword=`: tokio-postgres decodes keys).
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let in_query = query.split('&').any(|kv| {
        kv.split('=')
            .next()
            .is_some_and(|k| vmove_driver::redact::query_key(k).eq_ignore_ascii_case("password"))
    });
    in_userinfo || in_query
}

/// Checks a PostgreSQL location before anything connects: no password in it.
pub fn check_postgres_location(location: &str) -> Result<()> {
    if url_has_password(location) {
        return Err(JournalError::PasswordInLocation {
            location: redact(location),
        });
    }
    Ok(())
}

/// One line of a password file: `hostname:port:database:username:password`, `*` matching
/// anything, `\` escaping `:` and `\` (the format libpq reads).
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(s)) = (chars.next(), out.last_mut()) {
                    s.push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    out
}

/// The password a password file gives for this host, port, database and user, if any. A file
/// that others may read is not used (libpq's rule), and said so.
pub fn pgpass_lookup(
    file: &Path,
    host: &str,
    port: u16,
    db: &str,
    user: &str,
) -> Result<Option<String>> {
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(JournalError::OpenDatabase {
                location: format!("password file {}", file.display()),
                why: "the password file may be read by others: make it readable by its owner only (chmod 0600)".to_owned(),
            });
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| JournalError::OpenDatabase {
        location: format!("password file {}", file.display()),
        why: e.to_string(),
    })?;
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f = pgpass_fields(line);
        if f.len() != 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        let host_ok = m(&f[0], host) || (f[0] == "localhost" && host.starts_with('/'));
        if host_ok && m(&f[1], &port) && m(&f[2], db) && m(&f[3], user) {
            return Ok(Some(f[4].clone()));
        }
    }
    Ok(None)
}

#[cfg(feature = "postgres")]
pub(crate) mod connect {
    use super::*;
    use postgres::config::Host;
    use std::time::Duration;

    /// How long connecting to the server may take before the journal says it is unreachable.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connects to the database `location` names, the password (if any) from the environment
    /// or a password file, and sets the session up for the journal: `synchronous_commit = on`,
    /// `lock_timeout` = the busy timeout.
    pub(crate) fn open(location: &str, busy_timeout: Duration) -> Result<postgres::Client> {
        check_postgres_location(location)?;
        let shown = redact(location);
        let fail = |why: String| JournalError::OpenDatabase {
            location: shown.clone(),
            why,
        };
        // `sslmode`/`sslrootcert` are read here (tokio-postgres's parser knows neither
        // `verify-*` nor `sslrootcert`): an unknown mode or a bad root file stops before connecting.
        let (url, tls) = crate::tls::split_tls_params(location.trim(), |k| std::env::var(k).ok())
            .map_err(&fail)?;
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| fail(format!("not a PostgreSQL URL ({e})")))?;
        if config.get_hosts().is_empty() {
            config.host(&std::env::var("PGHOST").unwrap_or_else(|_| "localhost".to_owned()));
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .or_else(|_| std::env::var("LOGNAME"))
                .map_err(|_| fail("no user named (add `user@` to the URL or set PGUSER)".into()))?;
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or_default().to_owned();
            config.dbname(&user);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("vmove");
        if let Some(password) = password_for(&config)? {
            config.password(password);
        }
        // Unix sockets never use TLS (libpq); otherwise the mode decides.
        let over_tcp = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
        let connector = if over_tcp {
            crate::tls::connector(&tls).map_err(&fail)?
        } else {
            None
        };
        let connected = match connector {
            None => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                config.connect(postgres::NoTls)
            }
            Some(c) => {
                config.ssl_mode(match tls.effective_mode() {
                    crate::tls::SslMode::Prefer => postgres::config::SslMode::Prefer,
                    _ => postgres::config::SslMode::Require,
                });
                config.connect(c)
            }
        };
        let mut client = connected.map_err(|e| fail(crate::error::pg_cause(&e)))?;
        client
            .batch_execute(&format!(
                "SET synchronous_commit = on; SET lock_timeout = {}; SET client_min_messages = warning",
                busy_timeout.as_millis().max(1)
            ))
            .map_err(|e| fail(crate::error::pg_cause(&e)))?;
        Ok(client)
    }

    /// `PGPASSWORD`, else the first matching line of `PGPASSFILE` or `~/.pgpass`.
    fn password_for(config: &postgres::Config) -> Result<Option<String>> {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            return Ok(Some(p));
        }
        let file = match std::env::var_os("PGPASSFILE") {
            Some(f) => std::path::PathBuf::from(f),
            None => match std::env::var_os("HOME") {
                Some(h) => Path::new(&h).join(".pgpass"),
                None => return Ok(None),
            },
        };
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        pgpass_lookup(
            &file,
            &host,
            port,
            config.get_dbname().unwrap_or_default(),
            config.get_user().unwrap_or_default(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_location_is_found_and_never_shown() {
        for url in [
            "postgresql://vmove:s3cret@db.example/journal",
            "postgres://vmove:s3cret@db.example:5432/journal?sslmode=disable",
            "postgresql://vmove@db.example/journal?password=s3cret",
            // The key percent-encoded, or in capitals: tokio-postgres reads it as `password`.
            "postgresql://vm@/vj?host=/tmp/pgsock&%70assword=s3cret",
            "postgresql://vm@/vj?PASS%57ORD=s3cret",
        ] {
            assert!(url_has_password(url), "{url}");
            let e = check_postgres_location(url).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("PGPASSWORD"), "{e}");
        }
        for url in [
            "postgresql://vmove@db.example/journal",
            "postgresql:///journal?host=/run/postgresql&user=vmove",
            "postgres://db.example/journal",
        ] {
            assert!(!url_has_password(url), "{url}");
        }
    }

    #[test]
    fn a_location_is_postgres_by_its_scheme_only() {
        assert!(is_postgres("postgresql://h/db"));
        assert!(is_postgres("postgres://h/db"));
        assert!(!is_postgres("/var/lib/vmove/journal.sqlite"));
        assert!(!is_postgres("journal.sqlite"));
        assert!(!is_postgres("mysql://h/db"));
    }

    #[test]
    fn a_password_file_matches_like_libpq_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:*:no\ndb.example:5432:journal:vmove:pa\\:ss\n*:*:*:*:any\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let got = pgpass_lookup(&f, "db.example", 5432, "journal", "vmove").unwrap();
        assert_eq!(got.as_deref(), Some("pa:ss"));
        let got = pgpass_lookup(&f, "elsewhere", 1, "x", "y").unwrap();
        assert_eq!(got.as_deref(), Some("any"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = pgpass_lookup(&f, "db.example", 5432, "journal", "vmove").unwrap_err();
            assert!(e.to_string().contains("0600"), "{e}");
        }
    }
}
