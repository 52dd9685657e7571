//! The HTML report: one self-contained file (no script, no outside style sheet, font or
//! image: it works offline) with the facts of the Markdown report and the timeline's SVG inline.
//! Every text from a run (VM and host names, errors, the command) is escaped.

use super::escape;
use super::model::Timeline;
use crate::output::{Record, fmt_downtime, fmt_time};
use std::fmt::Write;
use vmove_core::{Time, fmt_bytes};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#212121}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #e0e0e0;padding:2px 8px;text-align:left;font-size:13px}\
th{background:#f5f5f5}td.num{text-align:right}\
.moved{color:#2e7d32}.unmigratable{color:#c62828}.cancelled{color:#ef6c00}\
.timeline{overflow-x:auto}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}\
dt{font-weight:bold}dd{margin:0}";

/// The report of `r` with the timeline `t`, as one HTML document whose `<title>` names the run.
pub fn html(r: &Record, t: &Timeline) -> String {
    let e = |s: &str| escape(s);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>vmove run {id}</title><style>{STYLE}</style></head><body>\n\
         <h1>vmove run <span id=\"run-id\">{id}</span></h1>\n<dl>",
        id = e(&r.run_id)
    );
    let mut fact = |k: &str, v: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", e(k), e(v));
    };
    fact("command", &r.command);
    fact("outcome", r.outcome.as_str());
    fact("started", &r.started);
    fact("ended", r.ended.as_deref().unwrap_or("(not yet)"));
    fact(
        "duration",
        &fmt_time(Time((r.duration_secs * 1000.0) as u64)),
    );
    fact("ran on", &r.host);
    fact("vmove", &r.vmove_version);
    fact(
        "moved, unmigratable, cancelled",
        &format!("{}, {}, {}", r.moved, r.unmigratable, r.cancelled),
    );
    if let Some(err) = &r.error {
        fact("error", err);
    }
    if t.simulated {
        fact(
            "times",
            "simulated: the run's start plus simulated time, as the reports say",
        );
    }
    out.push_str("</dl>\n");

    let actions = r.actions();
    if !actions.is_empty() {
        out.push_str(
            "<h2>Action needed</h2>\n<table><tr><th>VM</th><th>Outcome</th><th>Why</th><th>What to do</th></tr>\n",
        );
        for (name, outcome, why, todo) in actions {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{o}\">{o}</td><td>{}</td><td>{}</td></tr>",
                e(&name),
                e(&why),
                e(&todo),
                o = e(&outcome)
            );
        }
        out.push_str("</table>\n");
    }

    let _ = write!(
        out,
        "<h2>Timeline</h2>\n<div class=\"timeline\">{}</div>\n",
        super::svg(t)
    );

    out.push_str(
        "<h2>VMs</h2>\n<table><tr><th>VM</th><th>Source</th><th>Destination</th><th>Outcome</th>\
         <th>Attempts</th><th>Started</th><th>Ended</th><th>Size</th><th>Copied</th>\
         <th>Downtime</th><th>Reason / notes</th></tr>\n",
    );
    for v in &r.vms {
        let mut why: Vec<String> = v.reason.iter().cloned().collect();
        why.extend(v.notes.iter().cloned());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{o}\">{o}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            e(&v.name),
            e(v.source.as_deref().unwrap_or("-")),
            e(v.destination.as_deref().unwrap_or("-")),
            v.attempts,
            e(v.started.as_deref().unwrap_or("-")),
            e(v.ended.as_deref().unwrap_or("-")),
            fmt_bytes(v.memory_bytes + v.disk_bytes),
            fmt_bytes(v.bytes_copied),
            fmt_downtime(v.downtime_ms),
            e(&why.join("; ")),
            o = e(v.outcome.as_str()),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
