//! How `vmove check` (and the pre-flight section of `vmove plan`) prints what it found: the
//! host findings first, then a table per VM (destination, verdict, each finding `code:
//! message` and its remedy), then one summary line; or, with `--json`, one JSON document
//! (docs/cli.md, "vmove check").

use crate::check::{CheckReport, VmCheck};
use crate::stdio::escaped;
use serde_json::{Value, json};
use vmove_core::{Finding, Preflight};

/// `s` padded with spaces on the right to `w` characters (by hand: a `{:<w$}` width over
/// 65,535 panics, and a host name may be longer).
fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_owned();
    out.extend(std::iter::repeat_n(
        ' ',
        w.saturating_sub(s.chars().count()),
    ));
    out
}

/// `ok`, `warnings`, `may_pass` or `blocked`.
fn verdict(p: &Preflight) -> &'static str {
    if p.only_may_pass() {
        "may_pass"
    } else if !p.blockers.is_empty() {
        "blocked"
    } else if !p.warnings.is_empty() {
        "warnings"
    } else {
        "ok"
    }
}

/// The findings of `p`, blockers first, as lines indented by `indent` (the first one is not:
/// it goes after the columns).
fn findings(p: &Preflight, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut one = |f: &Finding, warning: bool| {
        lines.push(format!(
            "{}{}: {}",
            if warning {
                "warning "
            } else if f.may_pass {
                "may pass "
            } else {
                ""
            },
            f.code,
            escaped(&f.message)
        ));
        if !f.remedy.is_empty() {
            lines.push(format!("{indent}  remedy: {}", escaped(&f.remedy)));
        }
    };
    for f in &p.blockers {
        one(f, false);
    }
    for f in &p.warnings {
        one(f, true);
    }
    // Every finding line after the first is indented to the findings' column.
    for l in lines.iter_mut().skip(1) {
        if !l.starts_with(indent) {
            *l = format!("{indent}{l}");
        }
    }
    lines
}

/// The pre-flight as text: hosts, a table per VM, and the summary line.
pub fn text(r: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&hosts_text(r));
    for v in &r.vms {
        out.push('\n');
        out.push_str(&vm_text(v));
    }
    out.push('\n');
    out.push_str(&escaped(&summary_line(r)));
    out.push('\n');
    out
}

/// The host findings.
pub fn hosts_text(r: &CheckReport) -> String {
    let mut out = String::from("hosts:\n");
    let w = r
        .hosts
        .iter()
        .map(|h| escaped(h.host.as_str()).chars().count())
        .max()
        .unwrap_or(0);
    let role_w = r.hosts.iter().map(|h| h.role.len() + 2).max().unwrap_or(0);
    for h in &r.hosts {
        let role = format!("({})", h.role);
        let head = format!(
            "  {}  {}  ",
            pad(&escaped(h.host.as_str()), w),
            pad(&role, role_w)
        );
        let lines = findings(&h.found, &" ".repeat(head.chars().count() + 9));
        match lines.first() {
            Some(first) => out.push_str(&format!("{head}{:<8} {first}\n", verdict(&h.found))),
            None => out.push_str(&format!("{head}{}\n", verdict(&h.found))),
        }
        for l in lines.iter().skip(1) {
            out.push_str(&format!("{l}\n"));
        }
    }
    out
}

/// One VM's table.
pub fn vm_text(v: &VmCheck) -> String {
    let mode = v
        .routes
        .first()
        .map(|r| r.mode.to_string())
        .unwrap_or_else(|| "live".into());
    let head = format!(
        "{} (on {}, {mode}): {}",
        v.name,
        v.source,
        if v.can_move() {
            "can move".to_owned()
        } else if v.may_move_later() {
            format!("not now, may pass ({})", v.waits_for())
        } else {
            format!("cannot move ({})", v.why_not())
        }
    );
    let mut out = format!("{}\n", escaped(&head));
    let w = v
        .routes
        .iter()
        .map(|r| escaped(r.destination.as_str()).chars().count())
        .max()
        .unwrap_or(0)
        .max("DESTINATION".len());
    out.push_str(&format!(
        "  {}  {:<8}  FINDINGS\n",
        pad("DESTINATION", w),
        "VERDICT"
    ));
    for r in &v.routes {
        let head = format!(
            "  {}  {:<8}  ",
            pad(&escaped(r.destination.as_str()), w),
            r.verdict()
        );
        let lines = findings(&r.found, &" ".repeat(head.chars().count()));
        match lines.first() {
            Some(first) => out.push_str(&format!("{head}{first}\n")),
            None => out.push_str(&format!("{}\n", head.trim_end())),
        }
        for l in lines.iter().skip(1) {
            out.push_str(&format!("{l}\n"));
        }
    }
    out
}

/// "12 VMs: 9 can move, 2 cannot (db-01: snapshots; web-3: no allowed destination takes
/// it), 1 not now (big: memory on b)": the last part only when some VM waits for findings
/// that may pass.
pub fn summary_line(r: &CheckReport) -> String {
    let n = r.vms.len();
    let blocked: Vec<&VmCheck> = r.blocked().collect();
    let later: Vec<&VmCheck> = r.later().collect();
    let mut s = format!(
        "{n} {}: {} can move, {} cannot",
        if n == 1 { "VM" } else { "VMs" },
        n - blocked.len() - later.len(),
        blocked.len()
    );
    if !blocked.is_empty() {
        s.push_str(&format!(
            " ({})",
            blocked
                .iter()
                .map(|v| format!("{}: {}", v.name, v.why_not()))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !later.is_empty() {
        s.push_str(&format!(
            ", {} not now ({})",
            later.len(),
            later
                .iter()
                .map(|v| format!("{}: {}", v.name, v.waits_for()))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    s
}

/// One VM as JSON: `{vm, name, source, routes[{destination, mode, verdict, blockers,
/// warnings}], can_move, may_pass, reason}` (`reason` only when it cannot move now;
/// `may_pass: true` only when it cannot now but some route is blocked only by findings that
/// may pass, and then `reason` names them).
pub fn vm_json(v: &VmCheck) -> Value {
    let mut o = json!({
        "vm": v.vm.as_str(),
        "name": v.name,
        "source": v.source.as_str(),
        "routes": v.routes.iter().map(|r| json!({
            "destination": r.destination.as_str(),
            "mode": r.mode.to_string(),
            "verdict": r.verdict(),
            "blockers": r.found.blockers,
            "warnings": r.found.warnings,
        })).collect::<Vec<_>>(),
        "can_move": v.can_move(),
    });
    if v.may_move_later() {
        o["may_pass"] = json!(true);
        o["reason"] = json!(v.waits_for());
    } else if !v.can_move() {
        o["reason"] = json!(v.why_not());
    }
    o
}

/// The whole check as one JSON document: `{hosts[{host, role, verdict, blockers, warnings}],
/// vms[...], summary{vms, can_move, cannot_move, not_now, blocked[{name, reason}],
/// waiting[{name, reason}], line}}`.
pub fn json(r: &CheckReport) -> Value {
    let blocked: Vec<&VmCheck> = r.blocked().collect();
    let later: Vec<&VmCheck> = r.later().collect();
    json!({
        "hosts": r.hosts.iter().map(|h| json!({
            "host": h.host.as_str(),
            "role": h.role,
            "verdict": verdict(&h.found),
            "blockers": h.found.blockers,
            "warnings": h.found.warnings,
        })).collect::<Vec<_>>(),
        "vms": r.vms.iter().map(vm_json).collect::<Vec<_>>(),
        "summary": {
            "vms": r.vms.len(),
            "can_move": r.vms.len() - blocked.len() - later.len(),
            "cannot_move": blocked.len(),
            "not_now": later.len(),
            "blocked": blocked.iter().map(|v| json!({"name": v.name, "reason": v.why_not()})).collect::<Vec<_>>(),
            "waiting": later.iter().map(|v| json!({"name": v.name, "reason": v.waits_for()})).collect::<Vec<_>>(),
            "line": summary_line(r),
        },
    })
}
