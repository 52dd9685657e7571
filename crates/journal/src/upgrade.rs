//! Rewrites of stored values whose shape changed (the data work of schema migrations).
//!
//! Schema 5: a command about one attempt carries that attempt's request, and nothing that
//! copies its parts. Journals written before stored `poll_migration`, `abort_migration`,
//! `converge` and `remove_leftover` intents with copies of its parts (`vm`, `attempt`,
//! `source`, `destination`) instead, and `locate`, `verify` and `list_leftovers` intents with
//! `vm` and `attempt` beside their request (those copies are dropped). Each intent of the first
//! kind gets the request its attempt was started with: the one in the `start_migration` intent
//! of the same run, VM and attempt (or else the one a `locate`, `verify` or `list_leftovers`
//! intent of that attempt carries). Under the write protocol (an intent before every action)
//! the start's intent precedes every other command of its attempt, so the request is always
//! found; an intent whose attempt has none is left as written, and loading its run says where
//! (a decode error naming the run and entry) rather than inventing a request for it.

use crate::db::{Db, vals};
use crate::error::Result;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The tags of the commands that carried copies of their request before schema 5.
const CARRY_REQUEST: &[&str] = &[
    "poll_migration",
    "abort_migration",
    "converge",
    "remove_leftover",
];

/// The tags of the commands that always carried their request (with copies of its `vm` and
/// `attempt` beside it).
const HELD_REQUEST: &[&str] = &["locate", "verify", "list_leftovers"];

/// The fields of the old shapes that the request replaces.
const COPIES: &[&str] = &["vm", "attempt", "source", "destination"];

/// Gives every intent of the old shape its attempt's request (schema 5).
pub(crate) fn commands_carry_requests(conn: &Db) -> Result<()> {
    let rows = conn.query_map(
        "SELECT run_id, seq, body FROM entries WHERE kind = 'intent' ORDER BY run_id, seq",
        vals![],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<String>(2)?)),
    )?;
    // Per (run, VM, attempt): its request, from its start (first) or a command holding it.
    let mut requests: HashMap<(String, String, u64), Value> = HashMap::new();
    let mut old: Vec<(String, i64, Map<String, Value>)> = Vec::new();
    let mut copies: Vec<(String, i64, Map<String, Value>)> = Vec::new();
    for (run, seq, body) in rows {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        let tag = fields.get("command").and_then(Value::as_str).unwrap_or("");
        if tag == "start_migration" {
            let mut request = fields.clone();
            request.remove("command");
            if let Some(key) = key_of(&run, &request) {
                requests.insert(key, Value::Object(request));
            }
        } else if HELD_REQUEST.contains(&tag) {
            if let Some(Value::Object(request)) = fields.get("request")
                && let Some(key) = key_of(&run, request)
            {
                requests
                    .entry(key)
                    .or_insert_with(|| Value::Object(request.clone()));
            }
            if COPIES.iter().any(|c| fields.contains_key(*c)) {
                copies.push((run, seq, fields));
            }
        } else if CARRY_REQUEST.contains(&tag) && !fields.contains_key("request") {
            old.push((run, seq, fields));
        }
    }
    for (run, seq, mut fields) in old {
        let Some(request) = key_of(&run, &fields).and_then(|k| requests.get(&k)) else {
            continue;
        };
        fields.insert("request".into(), request.clone());
        rewrite(conn, &run, seq, fields)?;
    }
    for (run, seq, fields) in copies {
        rewrite(conn, &run, seq, fields)?;
    }
    Ok(())
}

/// Stores `fields` without the copies as the body of entry `seq` of `run`.
fn rewrite(conn: &Db, run: &str, seq: i64, mut fields: Map<String, Value>) -> Result<()> {
    for copy in COPIES {
        fields.remove(*copy);
    }
    let body = Value::Object(fields).to_string();
    conn.execute(
        "UPDATE entries SET body = ?1 WHERE run_id = ?2 AND seq = ?3",
        vals![body, run, seq],
    )?;
    Ok(())
}

/// The (run, VM, attempt) a request or an old command's fields name.
fn key_of(run: &str, fields: &Map<String, Value>) -> Option<(String, String, u64)> {
    let vm = fields.get("vm")?.as_str()?;
    let attempt = fields.get("attempt")?.as_u64()?;
    Some((run.to_owned(), vm.to_owned(), attempt))
}
