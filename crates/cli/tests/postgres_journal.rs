//! `--journal postgresql://...`: a run journaled in a real PostgreSQL database (the journal's
//! throw-away test server: a cluster under a temporary folder, on a unix socket only) and read
//! back by `history`, `status` and `report`; and the locations refused with a clear error,
//! exit 1, nothing written: a password in the URL (never printed), another scheme, a server
//! that cannot be reached.
#![allow(clippy::unwrap_used)]

use crate::common;

use crate::common::{SIM_HOSTS, Sandbox};
use vmove_journal::pg_server;

const SECRET: &str = "hunter2-never-printed";

/// Every file under `dir`, relative (what a refused command must not have added to).
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn a_password_in_the_journal_url_is_refused_naming_the_rule_and_never_printed() {
    let sb = Sandbox::new("pg-password");
    sb.write("vmove.toml", SIM_HOSTS);
    let before = files(&sb.dir);
    for url in [
        format!("postgresql://vmove:{SECRET}@127.0.0.1:1/journal"),
        format!("postgres://vmove@127.0.0.1:1/journal?password={SECRET}"),
    ] {
        for args in [
            vec!["history", "--journal", url.as_str()],
            vec![
                "evacuate",
                "a",
                "--to",
                "b",
                "--plain",
                "--journal",
                url.as_str(),
            ],
        ] {
            let r = sb.run(&args);
            r.expect_code(1);
            assert!(
                !r.stderr.contains(SECRET) && !r.stdout.contains(SECRET),
                "{r:?}"
            );
            assert!(
                r.stderr.contains("PGPASSWORD") && r.stderr.contains(".pgpass"),
                "{r:?}"
            );
        }
        // The same from the environment variable and from the config.
        let r = sb.run_env(&["history"], &[("VMOVE_JOURNAL", url.as_str())]);
        r.expect_code(1);
        assert!(
            !r.stderr.contains(SECRET) && r.stderr.contains("PGPASSWORD"),
            "{r:?}"
        );
    }
    assert_eq!(files(&sb.dir), before, "a refused command wrote nothing");
}

#[test]
fn a_journal_of_another_scheme_is_refused() {
    let sb = Sandbox::new("pg-scheme");
    sb.write("vmove.toml", SIM_HOSTS);
    let before = files(&sb.dir);
    let r = sb.run(&["history", "--journal", "mysql://db.example/journal"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("`mysql://` location") && r.stderr.contains("postgresql://"),
        "{r:?}"
    );
    assert_eq!(files(&sb.dir), before);
}

#[test]
fn an_unreachable_database_is_a_clear_error_and_nothing_is_written() {
    let sb = Sandbox::new("pg-unreachable");
    sb.write("vmove.toml", SIM_HOSTS);
    let before = files(&sb.dir);
    // A unix-socket folder with no server in it: nothing listens, nothing leaves the machine.
    let url = format!(
        "postgresql://vmove@/journal?host={}",
        sb.dir.join("no-server").display()
    );
    for args in [
        vec!["history", "--journal", url.as_str()],
        vec![
            "evacuate",
            "a",
            "--to",
            "b",
            "--plain",
            "--journal",
            url.as_str(),
        ],
    ] {
        let r = sb.run(&args);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("could not open the journal at postgresql://")
                && r.stderr.contains("error connecting to server"),
            "{r:?}"
        );
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
    assert_eq!(
        files(&sb.dir),
        before,
        "nothing written (the sim hosts untouched)"
    );
}

#[test]
fn a_run_journaled_in_postgresql_is_read_back_by_history_status_and_report() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let url = server.fresh_database("cli_run");
    let sb = Sandbox::new("pg-run");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--journal", &url]);
    r.expect_code(2);
    // The journal is the database: no file journal appeared under HOME.
    assert!(!sb.dir.join("home/.local/share/vmove/journal.db").exists());
    let h = sb.run_env(&["history"], &[("VMOVE_JOURNAL", url.as_str())]);
    h.expect_code(0);
    let rows: Vec<&str> = h.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", h.stdout);
    assert!(rows[0].contains("finished"), "{}", h.stdout);
    let run = rows[0].split_whitespace().next().unwrap();
    sb.run(&["status", run, "--journal", &url]).expect_code(0);
    let rep = sb.run(&["report", "--journal", &url, "--report", "r.json"]);
    rep.expect_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["moved"], 3, "{report:#}");
}

/// A password-protected user: the password from `PGPASSWORD`, from a 0600 file named by
/// `PGPASSFILE`, or from `~/.pgpass`; a password file others may read is refused; the password
/// is never printed.
#[test]
fn the_password_comes_from_pgpassword_pgpassfile_or_pgpass_and_is_never_printed() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let url = server.fresh_password_database("cli_password");
    let sb = Sandbox::new("pg-password-sources");
    sb.write("vmove.toml", SIM_HOSTS);
    let pw = pg_server::PASSWORD;
    let no_secret = |r: &common::Run| {
        assert!(!r.stdout.contains(pw) && !r.stderr.contains(pw), "{r:?}");
    };
    // No password anywhere: the server's refusal, exit 1.
    let r = sb.run(&["history", "--journal", &url]);
    r.expect_code(1);
    assert!(r.stderr.contains("could not open the journal"), "{r:?}");
    no_secret(&r);
    // PGPASSWORD.
    let r = sb.run_env(&["history", "--journal", &url], &[("PGPASSWORD", pw)]);
    r.expect_code(0);
    no_secret(&r);
    // A password file named by PGPASSFILE, 0600; then readable by others: refused.
    let line = format!("*:*:*:{}:{pw}\n", pg_server::PASSWORD_USER);
    let file = sb.write("secrets/pgpass", &line);
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o600);
    let r = sb.run_env(
        &["history", "--journal", &url],
        &[("PGPASSFILE", file.to_str().unwrap())],
    );
    r.expect_code(0);
    no_secret(&r);
    mode(0o644);
    let r = sb.run_env(
        &["history", "--journal", &url],
        &[("PGPASSFILE", file.to_str().unwrap())],
    );
    r.expect_code(1);
    assert!(r.stderr.contains("chmod 0600"), "{r:?}");
    no_secret(&r);
    // ~/.pgpass (the sandbox's HOME), 0600.
    let home_file = sb.write("home/.pgpass", &line);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--journal", &url]);
    r.expect_code(2);
    no_secret(&r);
    let h = sb.run(&["history", "--journal", &url]);
    h.expect_code(0);
    assert_eq!(h.stdout.lines().skip(1).count(), 1, "{}", h.stdout);
}

/// TLS: a run journaled through `sslmode=verify-full` (the journal's throw-away TLS server, on
/// 127.0.0.1) is read back by `history`; a wrong root certificate and an unknown sslmode are
/// refused, exit 1, nothing written.
#[test]
fn a_journal_over_verified_tls_works_and_bad_tls_settings_are_refused() {
    let Some(server) = pg_server::tls_server() else {
        return;
    };
    let db = pg_server::Server::db_of(&server.fresh_database("cli_tls"));
    let url = server.tcp_url(
        "localhost",
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            server.ca_cert().display()
        ),
    );
    let sb = Sandbox::new("pg-tls");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "b", "--plain", "--journal", &url])
        .expect_code(2);
    let h = sb.run(&["history", "--journal", &url]);
    h.expect_code(0);
    let rows: Vec<&str> = h.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", h.stdout);
    assert!(rows[0].contains("finished"), "{}", h.stdout);
    let before = files(&sb.dir);
    let wrong = url.replace(
        &server.ca_cert().display().to_string(),
        &server.wrong_ca_cert().display().to_string(),
    );
    for (bad, says) in [
        (wrong, "invalid peer certificate"),
        (
            url.replace("verify-full", "verify"),
            "unknown sslmode `verify`",
        ),
    ] {
        let r = sb.run(&["history", "--journal", &bad]);
        r.expect_code(1);
        assert!(r.stderr.contains(says), "{r:?}");
    }
    assert_eq!(files(&sb.dir), before);
}
