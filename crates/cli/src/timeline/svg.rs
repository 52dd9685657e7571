//! The timeline as one self-contained SVG: no script, no outside style sheet or font (its one
//! `<style>` is inside it), every name escaped.
//!
//! What it holds, top to bottom: the title and time axis; per host its outbound and inbound
//! slot lanes (`rect.slot.out` / `rect.slot.in`, one per attempt each) and a lane of foreign
//! migrations (`rect.foreign`); per VM a row with its waits (`rect.wait.w-KIND`), its attempts
//! (`rect.attempt.o-OUTCOME`, one per attempt, `data-vm` and `data-attempt` naming it) and,
//! when a plan was made, its predicted bar (`rect.predicted`); then a legend. Every shape has a
//! `<title>` (the tooltip).

use super::escape;
use super::model::{AttemptOutcome, Timeline, WaitKind};
use crate::output::fmt_time;
use std::fmt::Write;
use vmove_core::Time;

const LABEL_W: f64 = 220.0;
const CHART_W: f64 = 960.0;
const ROW_H: f64 = 16.0;
const PAD: f64 = 10.0;

/// The colour of an outcome's bars.
pub fn outcome_colour(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Moved => "#2e7d32",
        AttemptOutcome::Failed => "#c62828",
        AttemptOutcome::Aborted => "#ef6c00",
        AttemptOutcome::Refused => "#6a1b9a",
        AttemptOutcome::Interrupted => "#795548",
        AttemptOutcome::Running => "#1565c0",
        AttemptOutcome::Unfinished => "#9e9e9e",
    }
}

/// The colour of a wait.
pub fn wait_colour(k: WaitKind) -> &'static str {
    match k {
        WaitKind::Queued => "#e0e0e0",
        WaitKind::Backup => "#fbc02d",
        WaitKind::ForeignMigration => "#8d6e63",
        WaitKind::OtherJob => "#bcaaa4",
        WaitKind::PowerChanging => "#90a4ae",
        WaitKind::OfflineAfterLive => "#cfd8dc",
        WaitKind::HostUnreachable => "#e57373",
        WaitKind::NoRoom => "#ffcc80",
        WaitKind::Searching => "#ce93d8",
        WaitKind::BackOff => "#ffab91",
        WaitKind::Preflight => "#4dd0e1",
        WaitKind::MayPass => "#ffb74d",
    }
}

fn style() -> String {
    let mut s = String::from(
        "text{font-family:sans-serif;font-size:11px;fill:#212121}\
         .head{font-weight:bold;font-size:12px}.title{font-size:14px;font-weight:bold}\
         .lane{fill:#f5f5f5;fill-opacity:0.5;stroke:#eeeeee}.tick{stroke:#e0e0e0}\
         .foreign{fill:#616161;fill-opacity:0.6}\
         .predicted{fill:none;stroke:#1565c0;stroke-dasharray:4 2}\
         .wait{fill-opacity:0.9}.sub{fill:#616161}\
         .slot,.attempt{stroke:#ffffff;stroke-width:1}\
         .e-unmigratable{fill:#b71c1c}.e-cancelled{fill:#ef6c00}",
    );
    for o in AttemptOutcome::ALL {
        let _ = write!(s, ".o-{}{{fill:{}}}", o.as_str(), outcome_colour(o));
    }
    for k in WaitKind::ALL {
        let _ = write!(s, ".w-{}{{fill:{}}}", k.as_str(), wait_colour(k));
    }
    s
}

/// Run time `ms` on the wall clock, RFC 3339 to the second.
pub fn wall(t: &Timeline, ms: u64) -> String {
    crate::output::wall_ms(t.epoch_unix_ms.saturating_add(ms))
}

/// A tick step for a span: 1, 2 or 5 times a power of ten seconds (or minutes, hours), about
/// eight ticks.
fn tick_step(span_ms: u64) -> u64 {
    const STEPS: [u64; 19] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_ms / s <= 8)
        .unwrap_or(86_400_000)
}

struct Canvas<'a> {
    t: &'a Timeline,
    out: String,
    y: f64,
    end: u64,
}

impl Canvas<'_> {
    fn x(&self, ms: u64) -> f64 {
        LABEL_W + (ms.min(self.end) as f64) * CHART_W / (self.end as f64)
    }

    /// `[from, to)` as an x and a width (at least 1 px, so a refusal at once still shows).
    fn span(&self, from: u64, to: Option<u64>) -> (f64, f64) {
        let x0 = self.x(from);
        let x1 = self.x(to.unwrap_or(self.t.end_ms).max(from));
        (x0, (x1 - x0).max(1.0))
    }

    fn label(&mut self, text: &str, class: &str) {
        let _ = write!(
            self.out,
            r#"<text class="{class}" x="{PAD}" y="{:.1}">{}</text>"#,
            self.y + ROW_H - 4.0,
            escape(&clip(text, 34))
        );
    }

    fn lane_bg(&mut self) {
        let _ = write!(
            self.out,
            r#"<rect class="lane" x="{LABEL_W}" y="{:.1}" width="{CHART_W}" height="{ROW_H}"/>"#,
            self.y
        );
    }

    fn rect(
        &mut self,
        class: &str,
        attrs: &str,
        from: u64,
        to: Option<u64>,
        inset: f64,
        title: &str,
    ) {
        let (x, w) = self.span(from, to);
        let _ = write!(
            self.out,
            r#"<rect class="{class}"{attrs} x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"><title>{}</title></rect>"#,
            self.y + inset,
            ROW_H - 2.0 * inset,
            escape(title)
        );
    }
}

/// A name cut to `n` characters (the tooltip has it whole).
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    }
}

fn during(from: u64, to: Option<u64>) -> String {
    match to {
        Some(to) => format!(
            "{} to {} ({})",
            fmt_time(Time(from)),
            fmt_time(Time(to)),
            fmt_time(Time(to.saturating_sub(from)))
        ),
        None => format!("from {}, not over", fmt_time(Time(from))),
    }
}

/// The timeline as a self-contained SVG document (no XML declaration, so it can also be put
/// inline in HTML).
pub fn svg(t: &Timeline) -> String {
    let end = t.span_ms();
    let mut c = Canvas {
        t,
        out: String::new(),
        y: PAD,
        end,
    };
    // Title and axis.
    c.y += 4.0;
    let _ = write!(
        c.out,
        r#"<text class="title" x="{PAD}" y="{:.1}">vmove run {}</text>"#,
        c.y + 10.0,
        escape(&t.run_id)
    );
    c.y += 18.0;
    let clock = if t.simulated {
        "simulated time"
    } else {
        "wall clock"
    };
    let _ = write!(
        c.out,
        r#"<text class="sub" x="{PAD}" y="{:.1}">from {} ({clock}), {}{}; {} attempts, {} VMs</text>"#,
        c.y + 10.0,
        wall(t, 0),
        fmt_time(Time(t.end_ms)),
        if t.over { "" } else { " so far" },
        t.attempts.len(),
        t.vms.len()
    );
    c.y += 22.0;
    let axis_y = c.y;
    let step = tick_step(end);
    let mut ticks = String::new();
    let mut ms = 0;
    while ms <= end {
        let x = c.x(ms);
        let _ = write!(
            ticks,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            axis_y + 10.0,
            fmt_time(Time(ms))
        );
        ms += step;
    }
    c.out.push_str(&ticks);
    c.y += 16.0;
    let chart_top = c.y;

    // Host slot lanes.
    c.label("host slots", "head");
    c.y += ROW_H + 2.0;
    for h in &t.hosts {
        let limit = h.limit.map(|l| format!(" (limit {l})")).unwrap_or_default();
        c.label(&format!("{}{limit}", h.name), "head");
        c.y += ROW_H + 2.0;
        for (dir, lanes) in [("out", &h.outbound), ("in", &h.inbound)] {
            for (n, lane) in lanes.iter().enumerate() {
                c.label(&format!("  {dir} {}", n + 1), "sub");
                c.lane_bg();
                for b in &lane.bars {
                    let a = &t.attempts[b.attempt];
                    let title = format!(
                        "{} attempt {}: {} -> {} ({}), {}, holding the slot {}",
                        a.name,
                        a.attempt,
                        a.source,
                        a.destination,
                        a.mode,
                        a.outcome,
                        during(b.from_ms, b.to_ms)
                    );
                    let attrs = format!(
                        r#" data-vm="{}" data-attempt="{}""#,
                        escape(&a.vm),
                        a.attempt
                    );
                    c.rect(
                        &format!("slot {dir} o-{}", a.outcome.as_str()),
                        &attrs,
                        b.from_ms,
                        b.to_ms,
                        1.0,
                        &title,
                    );
                }
                c.y += ROW_H + 2.0;
            }
        }
        if !h.foreign.is_empty() {
            c.label("  foreign", "sub");
            c.lane_bg();
            for s in &h.foreign {
                let title = format!(
                    "{} migration(s) on {} that this run did not start, holding its slots, {}",
                    s.count,
                    h.name,
                    during(s.from_ms, s.to_ms)
                );
                c.rect("foreign", "", s.from_ms, s.to_ms, 1.0, &title);
            }
            c.y += ROW_H + 2.0;
        }
    }

    // VM rows.
    c.y += 6.0;
    c.label("VMs", "head");
    c.y += ROW_H + 2.0;
    let predicted: std::collections::HashMap<&str, &super::Predicted> =
        t.predicted.iter().map(|p| (p.vm.as_str(), p)).collect();
    for v in &t.vms {
        c.label(&v.name, "");
        c.lane_bg();
        for w in &v.waits {
            let title = format!("{}: {}, {}", v.name, w.label, during(w.from_ms, w.to_ms));
            c.rect(
                &format!("wait w-{}", w.kind.as_str()),
                "",
                w.from_ms,
                w.to_ms,
                4.0,
                &title,
            );
        }
        for &i in &v.attempts {
            let a = &t.attempts[i];
            let mut title = format!(
                "{} attempt {}: {} -> {} ({}), {}, {}",
                a.name,
                a.attempt,
                a.source,
                a.destination,
                a.mode,
                a.outcome,
                during(a.start_ms, a.end_ms)
            );
            if let Some(d) = &a.detail {
                let _ = write!(title, ": {d}");
            }
            let attrs = format!(
                r#" data-vm="{}" data-attempt="{}""#,
                escape(&a.vm),
                a.attempt
            );
            c.rect(
                &format!("attempt o-{}", a.outcome.as_str()),
                &attrs,
                a.start_ms,
                a.end_ms,
                1.0,
                &title,
            );
        }
        // A VM given up or cancelled: a mark where its move ended, with the reason.
        if let (Some(end), "unmigratable" | "cancelled") = (v.ended_ms, v.outcome.as_str()) {
            let title = format!(
                "{}: {} at {}: {}",
                v.name,
                v.outcome,
                fmt_time(Time(end)),
                v.reason.as_deref().unwrap_or("")
            );
            let attrs = format!(r#" data-vm="{}""#, escape(&v.id));
            let x = c.x(end);
            let _ = write!(
                c.out,
                r#"<rect class="end e-{}"{attrs} x="{:.1}" y="{:.1}" width="4" height="{:.1}"><title>{}</title></rect>"#,
                v.outcome,
                (x - 2.0).max(LABEL_W),
                c.y + 1.0,
                ROW_H - 2.0,
                escape(&title)
            );
        }
        if let Some(p) = predicted.get(v.id.as_str()) {
            let title = format!(
                "{} as planned: {} -> {}, {}",
                p.name,
                p.source,
                p.destination,
                match p.end_ms {
                    Some(_) => during(p.start_ms, p.end_ms),
                    None => format!("from {}, not expected to move", fmt_time(Time(p.start_ms))),
                }
            );
            let attrs = format!(r#" data-vm="{}""#, escape(&p.vm));
            c.rect("predicted", &attrs, p.start_ms, p.end_ms, 0.5, &title);
        }
        c.y += ROW_H + 2.0;
    }
    let chart_bottom = c.y;

    // Legend.
    c.y += 10.0;
    let mut x = PAD;
    for o in AttemptOutcome::ALL {
        let _ = write!(
            c.out,
            r#"<rect class="o-{0}" x="{x:.1}" y="{1:.1}" width="12" height="12"/><text x="{2:.1}" y="{3:.1}">{0}</text>"#,
            o.as_str(),
            c.y,
            x + 16.0,
            c.y + 10.0
        );
        x += 100.0;
    }
    if !t.predicted.is_empty() {
        let _ = write!(
            c.out,
            r#"<rect class="predicted" x="{x:.1}" y="{0:.1}" width="12" height="12"/><text x="{1:.1}" y="{2:.1}">as planned</text>"#,
            c.y,
            x + 16.0,
            c.y + 10.0
        );
    }
    c.y += 18.0;
    x = PAD;
    for (n, k) in WaitKind::ALL.iter().enumerate() {
        if n == 6 {
            x = PAD;
            c.y += 18.0;
        }
        let _ = write!(
            c.out,
            r#"<rect class="w-{}" x="{x:.1}" y="{:.1}" width="12" height="12"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            k.as_str(),
            c.y,
            x + 16.0,
            c.y + 10.0,
            k.label()
        );
        x += 200.0;
    }
    c.y += 18.0;
    x = PAD;
    for (class, label) in [
        ("e-unmigratable", "given up (unmigratable)"),
        ("e-cancelled", "cancelled (the run stopped)"),
    ] {
        let _ = write!(
            c.out,
            r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="4" height="12"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            c.y,
            x + 10.0,
            c.y + 10.0
        );
        x += 200.0;
    }
    let _ = write!(
        c.out,
        r#"<rect class="foreign" x="{x:.1}" y="{:.1}" width="12" height="12"/><text x="{:.1}" y="{:.1}">foreign migrations on a host</text>"#,
        c.y,
        x + 16.0,
        c.y + 10.0
    );
    c.y += 24.0;

    // Tick lines behind the bars.
    let mut lines = String::new();
    ms = 0;
    while ms <= end {
        let x = c.x(ms);
        let _ = write!(
            lines,
            r#"<line class="tick" x1="{x:.1}" y1="{chart_top:.1}" x2="{x:.1}" y2="{chart_bottom:.1}"/>"#
        );
        ms += step;
    }
    let width = LABEL_W + CHART_W + 2.0 * PAD + 40.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="vmove-timeline" width="{width:.0}" height="{h:.0}" viewBox="0 0 {width:.0} {h:.0}" data-run="{run}"><title>vmove run {run}</title><style>{style}</style><rect x="0" y="0" width="{width:.0}" height="{h:.0}" fill="#ffffff"/>{lines}{body}</svg>"##,
        h = c.y,
        run = escape(&t.run_id),
        style = style(),
        body = c.out
    )
}
