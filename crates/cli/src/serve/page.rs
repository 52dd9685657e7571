//! The pages: the runs of the journal, and one run. Rendered on the server from the same view
//! the live updates come from (so a page without script still shows the run as it stood), with
//! every value escaped ([`esc`]): VM and host names are user input. The script and the style
//! are in the binary and served from this server (`/assets/...`): the page loads nothing from
//! anywhere else and works offline.

use super::view::RunView;
use vmove_journal::RunSummary;

/// The page's script (live updates: `EventSource` on `/runs/RUN/events`).
pub const APP_JS: &str = include_str!("assets/app.js");
/// The pages' style.
pub const STYLE_CSS: &str = include_str!("assets/style.css");

/// Text made safe for HTML element content and quoted attribute values: the timeline's one
/// escape (hidden characters, control and bidi ones, shown escaped as `\u{202e}`, as the
/// reports' pages and the terminal do).
pub use crate::timeline::escape as esc;

/// A path segment percent-encoded (a run id in a link).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/assets/style.css\">\n</head>\n",
        esc(title)
    )
}

/// Wall-clock milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn wall(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `/`: the runs, newest first.
pub fn index(runs: &[RunSummary], journal: &str) -> String {
    let mut out = head("vmove runs");
    out.push_str("<body>\n<header><h1>vmove runs</h1>");
    out.push_str(&format!(
        "<p class=\"sub\">journal {}</p></header>\n<main>\n",
        esc(journal)
    ));
    if runs.is_empty() {
        out.push_str("<p>No runs in this journal yet.</p>\n");
    } else {
        out.push_str(
            "<table id=\"runs\"><thead><tr><th>run</th><th>state</th><th>created</th><th>VMs</th>\
             <th>moved</th><th>unmigratable</th><th>cancelled</th><th>command</th></tr></thead><tbody>\n",
        );
        for r in runs {
            let n = |p: vmove_core::Phase| r.phases.get(&p).copied().unwrap_or(0);
            out.push_str(&format!(
                "<tr class=\"state-{st}\"><td><a href=\"/runs/{link}\">{id}</a></td><td>{st}</td><td>{created}</td>\
                 <td class=\"num\">{vms}</td><td class=\"num\">{moved}</td><td class=\"num\">{unmig}</td>\
                 <td class=\"num\">{canc}</td><td class=\"cmd\">{cmd}</td></tr>\n",
                link = seg(&r.id),
                id = esc(&r.id),
                st = esc(r.state.as_str()),
                created = esc(&wall(r.created_at.0)),
                vms = r.phases.values().sum::<u32>(),
                moved = n(vmove_core::Phase::Moved),
                unmig = n(vmove_core::Phase::Unmigratable),
                canc = n(vmove_core::Phase::Cancelled),
                cmd = esc(&r.command),
            ));
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str(
        "<p class=\"sub\"><a href=\"/metrics\">metrics</a></p>\n</main>\n</body>\n</html>\n",
    );
    out
}

fn bytes(b: Option<u64>) -> String {
    b.map(vmove_core::fmt_bytes).unwrap_or_default()
}

fn secs(s: Option<u64>) -> String {
    match s {
        None => String::new(),
        Some(s) if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        Some(s) if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        Some(s) => format!("{s}s"),
    }
}

/// `/runs/RUN`: the run as it stands; its script keeps it up to date.
pub fn run(view: &RunView, control: bool) -> String {
    let s = view.summary.as_ref();
    let state = s.map(|s| s.state.as_str()).unwrap_or("");
    let mut out = head(&format!("vmove run {}", view.run));
    out.push_str(&format!(
        "<body data-run=\"{}\" data-control=\"{}\">\n",
        esc(&view.run),
        u8::from(control),
    ));
    out.push_str(&format!(
        "<header><p class=\"sub\"><a href=\"/\">all runs</a></p><h1>run <span id=\"run-id\">{}</span></h1>\n",
        esc(&view.run)
    ));
    out.push_str(&format!(
        "<p id=\"run-line\"><span id=\"run-state\" class=\"state state-{st}\">{st}</span> \
         <span id=\"run-counts\"></span> <span>ETA <b id=\"run-eta\">{eta}</b></span> \
         <span class=\"sub\" id=\"run-eta-basis\" data-basis=\"{basis}\">{basis_text}</span> \
         <span id=\"live\" class=\"sub\">not live</span></p>\n",
        st = esc(state),
        eta = esc(&secs(view.eta_secs())),
        basis = view.eta().1.as_str(),
        basis_text = esc(&view.eta_basis_text()),
    ));
    out.push_str(&format!(
        "<p class=\"sub cmd\" id=\"run-command\">{}</p>\n",
        esc(s.map(|s| s.command.as_str()).unwrap_or(""))
    ));
    if control {
        out.push_str(
            "<p id=\"control\"><button id=\"stop\" type=\"button\">Stop (running moves finish)</button> \
             <button id=\"abort\" type=\"button\">Abort now (running moves are aborted)</button> \
             <span id=\"control-said\" class=\"sub\"></span></p>\n",
        );
    }
    out.push_str("</header>\n<main>\n<h2>Hosts</h2>\n<table id=\"hosts\"><thead><tr><th>host</th>\
        <th>slots (ours out+in / foreign / limit)</th><th>free memory</th><th>free disk</th><th>note</th></tr></thead><tbody>\n");
    for (id, h) in &view.hosts {
        let (o, i) = view.ours(id);
        out.push_str(&format!(
            "<tr data-host=\"{hid}\"><td>{hid}</td><td>{o}+{i} / {f} / {l}</td><td>{m}</td><td>{d}</td><td>{u}</td></tr>\n",
            hid = esc(id.as_str()),
            f = h.foreign,
            l = h.limit,
            m = esc(&bytes(h.free_memory_bytes)),
            d = esc(&bytes(h.free_disk_bytes)),
            u = esc(h.unreachable.as_deref().unwrap_or("")),
        ));
    }
    out.push_str("</tbody></table>\n");
    out.push_str(&format!(
        "<h2>Timeline</h2>\n<div id=\"timeline-box\"><img id=\"timeline\" alt=\"timeline of run {}\" src=\"/runs/{}/timeline.svg\"></div>\n",
        esc(&view.run),
        seg(&view.run)
    ));
    out.push_str(
        "<h2>VMs</h2>\n<table id=\"vms\"><thead><tr><th>VM</th><th>source</th><th>destination</th>\
        <th>state</th><th>attempt</th><th>progress</th><th>speed</th><th>ETA</th><th>why</th>",
    );
    if control {
        out.push_str("<th>control</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in view.rows() {
        let st = &r.status;
        let pct = st
            .progress
            .as_ref()
            .filter(|p| p.bytes_total > 0)
            .map(|p| format!("{:.0}%", p.bytes_done as f64 * 100.0 / p.bytes_total as f64))
            .unwrap_or_default();
        let why = st
            .reason
            .as_ref()
            .map(|r| r.to_string())
            .or_else(|| st.waiting.as_ref().map(|w| w.to_string()))
            .or_else(|| st.last_error.clone())
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr data-vm=\"{vid}\" class=\"phase-{ph}\"><td class=\"name\">{name}</td><td>{src}</td><td>{dst}</td>\
             <td class=\"phase\">{ph}</td><td class=\"num\">{att}</td><td class=\"num\">{pct}</td>\
             <td class=\"num\">{speed}</td><td class=\"num\">{eta}</td><td class=\"why\">{why}</td></tr>\n",
            vid = esc(st.vm.as_str()),
            name = esc(&st.name),
            src = esc(st.source.as_str()),
            dst = esc(st.destination.as_ref().map(|d| d.as_str()).unwrap_or("")),
            ph = esc(&st.phase.to_string()),
            att = st.attempt,
            pct = esc(&pct),
            speed = esc(&r.speed().map(|b| format!("{}/s", vmove_core::fmt_bytes(b))).unwrap_or_default()),
            eta = esc(&secs(r.eta_secs())),
            why = esc(&why),
        ));
    }
    out.push_str(
        "</tbody></table>\n</main>\n<script src=\"/assets/app.js\"></script>\n</body>\n</html>\n",
    );
    out
}
