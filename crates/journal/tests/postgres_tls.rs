//! TLS to a PostgreSQL journal against a real server with `ssl = on` (the throw-away TLS
//! server: a self-signed CA, a certificate for `localhost`/`127.0.0.1`, TCP through TLS only).
#![allow(clippy::unwrap_used)]
#![cfg(feature = "postgres")]

use crate::common::*;
use vmove_core::Selection;
use vmove_journal::{Journal, JournalError};

fn tls_server() -> Option<&'static pg_server::Server> {
    let s = pg_server::tls_server();
    if s.is_none() {
        eprintln!("skipped: no PostgreSQL");
    }
    s
}

/// Whether the server sees an encrypted session of vmove's in database `db`.
fn encrypted_sessions(s: &pg_server::Server, db: &str) -> String {
    s.psql(
        db,
        &format!(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'vmove' AND datname = '{db}'"
        ),
    )
}

#[test]
fn verify_full_with_the_right_root_connects_encrypted_and_the_journal_works() {
    let Some(s) = tls_server() else { return };
    let db = pg_server::Server::db_of(&s.fresh_database("tls_full"));
    for host in ["127.0.0.1", "localhost"] {
        let url = s.tcp_url(
            host,
            &db,
            &format!("sslmode=verify-full&sslrootcert={}", s.ca_cert().display()),
        );
        let clock = clock();
        let mut j = open_as(std::path::Path::new(&url), &clock, other(1));
        if host == "127.0.0.1" {
            j.create_run(&new_run("r1", Selection::All)).unwrap();
        }
        assert_eq!(j.runs().unwrap()[0].id, "r1");
        assert_eq!(encrypted_sessions(s, &db), "1", "{host}");
    }
}

#[test]
fn verify_full_with_a_wrong_root_fails_naming_certificate_verification() {
    let Some(s) = tls_server() else { return };
    let db = pg_server::Server::db_of(&s.fresh_database("tls_wrong"));
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = s.tcp_url(
            "127.0.0.1",
            &db,
            &format!("sslmode={mode}&sslrootcert={}", s.wrong_ca_cert().display()),
        );
        let e = Journal::open(&url).unwrap_err();
        assert!(matches!(e, JournalError::OpenDatabase { .. }), "{e:?}");
        let msg = e.chain();
        assert!(
            msg.contains("invalid peer certificate") && msg.contains("UnknownIssuer"),
            "{mode}: {msg}"
        );
    }
    assert_eq!(
        s.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}

#[test]
fn require_and_prefer_connect_encrypted_without_a_root() {
    let Some(s) = tls_server() else { return };
    for mode in ["require", "prefer"] {
        let db = pg_server::Server::db_of(&s.fresh_database(&format!("tls_{mode}")));
        let url = s.tcp_url("127.0.0.1", &db, &format!("sslmode={mode}"));
        let j = Journal::open(&url).unwrap();
        assert!(j.runs().unwrap().is_empty());
        assert_eq!(encrypted_sessions(s, &db), "1", "{mode}");
    }
}

#[test]
fn verify_ca_accepts_the_chain_whatever_the_name() {
    let Some(s) = tls_server() else { return };
    let db = pg_server::Server::db_of(&s.fresh_database("tls_ca"));
    // Connect to 127.0.0.1 (`hostaddr`) while checking the name `not-in-the-cert`, which the
    // certificate does not carry.
    let url = s.tcp_url(
        "not-in-the-cert",
        &db,
        &format!(
            "hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}",
            s.ca_cert().display()
        ),
    );
    let j = Journal::open(&url).unwrap();
    assert!(j.runs().unwrap().is_empty());
    let full = url.replace("sslmode=verify-ca", "sslmode=verify-full");
    let msg = Journal::open(&full).unwrap_err().chain();
    assert!(msg.contains("certificate not valid for name"), "{msg}");
}

#[test]
fn disable_is_refused_by_a_hostssl_only_server_with_its_message() {
    let Some(s) = tls_server() else { return };
    let db = pg_server::Server::db_of(&s.fresh_database("tls_off"));
    let url = s.tcp_url("127.0.0.1", &db, "sslmode=disable");
    let msg = Journal::open(&url).unwrap_err().chain();
    assert!(
        msg.contains("no pg_hba.conf entry") && msg.contains("no encryption"),
        "{msg}"
    );
}

#[test]
fn bad_tls_settings_are_refused_before_connecting() {
    // Port 1 on loopback: nothing listens; the error must be the settings', not the network's.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    for (params, says) in [
        ("sslmode=verify".to_owned(), "unknown sslmode `verify`"),
        (
            format!("sslmode=verify-full&sslrootcert={}", missing.display()),
            "cannot read the root certificate file",
        ),
    ] {
        let url = format!("postgresql://vmove@127.0.0.1:1/journal?{params}");
        let msg = Journal::open(&url).unwrap_err().chain();
        assert!(msg.contains(says), "{msg}");
        assert!(!msg.contains("error connecting"), "{msg}");
    }
}
