// vmove serve: keeps a run's page up to date from /runs/RUN/events (server-sent events).
// Every value is put in the page as text (textContent), never as markup: names are user input.
"use strict";
(function () {
  const body = document.body;
  const run = body.dataset.run;
  if (!run) { return; }
  const base = "/runs/" + encodeURIComponent(run);
  const PHASES = ["queued", "starting", "confirming", "migrating", "aborting", "locating",
    "discarding", "backing_off", "verifying", "cleaning_up", "moved", "unmigratable", "cancelled"];

  function units(b) {
    if (b === null || b === undefined) { return ""; }
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = b, i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? v + " B" : v.toFixed(1) + " " + u[i];
  }
  function secs(s) {
    if (s === null || s === undefined) { return ""; }
    if (s >= 3600) { return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m"; }
    if (s >= 60) { return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s"; }
    return s + "s";
  }
  // Text as shown: tab and newline a space, every other control, format (the bidi overrides
  // and isolates, zero-width characters) or line/paragraph separator escaped as \u{202e}, as
  // the server's pages do (a name cannot reorder or hide what follows it).
  function shown(text) {
    return String(text).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) =>
      c === "\t" || c === "\n" ? " " : "\\u{" + c.codePointAt(0).toString(16) + "}");
  }
  function cell(tr, i, text) {
    while (tr.cells.length <= i) { tr.insertCell(-1); }
    tr.cells[i].textContent = text === null || text === undefined ? "" : shown(text);
    return tr.cells[i];
  }
  function rowFor(tbody, attr, key) {
    for (const tr of tbody.rows) {
      if (tr.getAttribute(attr) === key) { return tr; }
    }
    const tr = tbody.insertRow(-1);
    tr.setAttribute(attr, key);
    return tr;
  }

  function showRun(r) {
    const st = document.getElementById("run-state");
    st.textContent = r.state || "";
    st.className = "state state-" + (r.state || "");
    const counts = [];
    for (const p of PHASES) {
      const n = r.phases && r.phases[p];
      if (n) { counts.push(n + " " + p.replace("_", " ")); }
    }
    document.getElementById("run-counts").textContent = r.vms + " VMs: " + counts.join(", ");
    document.getElementById("run-eta").textContent = r.state === "running" ? secs(r.eta_seconds) : "over";
    const basis = document.getElementById("run-eta-basis");
    basis.textContent = shown(r.eta_basis_text || "");
    basis.setAttribute("data-basis", r.eta_basis || "");
    const ctl = document.getElementById("control");
    if (ctl && r.state !== "running") {
      for (const b of ctl.querySelectorAll("button")) { b.disabled = true; }
    }
  }
  function showHosts(hosts) {
    const tbody = document.querySelector("#hosts tbody");
    for (const h of hosts) {
      const tr = rowFor(tbody, "data-host", h.host);
      cell(tr, 0, h.host);
      cell(tr, 1, h.ours_out + "+" + h.ours_in + " / " + h.foreign + " / " + h.limit);
      cell(tr, 2, units(h.free_memory_bytes));
      cell(tr, 3, units(h.free_disk_bytes));
      cell(tr, 4, h.unreachable || "");
    }
  }
  function showVm(v) {
    const tbody = document.querySelector("#vms tbody");
    const tr = rowFor(tbody, "data-vm", v.vm);
    tr.className = "phase-" + v.phase;
    cell(tr, 0, v.name).className = "name";
    cell(tr, 1, v.source);
    cell(tr, 2, v.destination || "");
    cell(tr, 3, v.phase).className = "phase";
    cell(tr, 4, v.attempt).className = "num";
    const pct = v.bytes_total ? Math.round(v.bytes_done * 100 / v.bytes_total) + "%" : "";
    cell(tr, 5, pct).className = "num";
    cell(tr, 6, v.speed_bytes_per_second ? units(v.speed_bytes_per_second) + "/s" : "").className = "num";
    cell(tr, 7, secs(v.eta_seconds)).className = "num";
    cell(tr, 8, v.reason || v.waiting || v.last_error || "").className = "why";
    if (body.dataset.control === "1") { vmControl(tr, v); }
  }
  // Per VM (with --allow-control): skip one not started, abort one whose migration runs.
  const SKIPPABLE = ["queued", "backing_off"];
  const ABORTABLE = ["starting", "confirming", "migrating"];
  function vmControl(tr, v) {
    const td = cell(tr, 9, "");
    const what = SKIPPABLE.includes(v.phase) ? "skip" : ABORTABLE.includes(v.phase) ? "abort" : null;
    if (!what) { return; }
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = what;
    b.className = "vm-" + what;
    b.addEventListener("click", () => vmStop(v.vm, v.name, what));
    td.appendChild(b);
  }
  function vmStop(vm, name, what) {
    post("/vms/" + encodeURIComponent(vm) + "/" + what,
      what === "skip" ? "Skip VM " + shown(name) + " (it is not moved)?" : "Abort the move of VM " + shown(name) + " (it stays on its source)?");
  }

  // The timeline is fetched again when it changed, at most once per second.
  let timelineDue = false, timelineAt = 0;
  function refreshTimeline() {
    const img = document.getElementById("timeline");
    if (!img) { return; }
    const wait = 1000 - (Date.now() - timelineAt);
    if (wait > 0) {
      if (!timelineDue) { timelineDue = true; setTimeout(() => { timelineDue = false; refreshTimeline(); }, wait); }
      return;
    }
    timelineAt = Date.now();
    img.src = base + "/timeline.svg?seq=" + timelineAt;
  }

  let updates = 0;
  function apply(msg) {
    updates++;
    body.dataset.updates = String(updates);
    if (msg.run) { showRun(msg.run); }
    if (msg.hosts) { showHosts(msg.hosts); }
    for (const v of msg.vms || []) { showVm(v); }
    if (msg.kind === "snapshot" || msg.timeline_changed) { refreshTimeline(); }
  }

  const live = document.getElementById("live");
  const es = new EventSource(base + "/events");
  es.addEventListener("snapshot", (e) => apply(JSON.parse(e.data)));
  es.addEventListener("delta", (e) => apply(JSON.parse(e.data)));
  es.onopen = () => { live.textContent = "live"; live.className = "live"; };
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "sub"; };

  // Control (only when the server was started with --allow-control): the token comes from the
  // address's fragment (#token=..., never sent to the server in the address), or is asked for.
  function token() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem("vmove-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);
    }
    let t = sessionStorage.getItem("vmove-token");
    if (!t) {
      t = prompt("The control token vmove serve printed when it started:") || "";
      if (t) { sessionStorage.setItem("vmove-token", t); }
    }
    return t;
  }
  function control(now) {
    post("/abort" + (now ? "?now=1" : ""),
      now ? "Abort run " + run + " now (running migrations are aborted)?" : "Stop run " + run + " (no new moves; running ones finish)?");
  }
  // One control request (POST under the run's path) with the token, once confirmed; the answer
  // is said beside the buttons.
  function post(path, question) {
    const said = document.getElementById("control-said");
    const t = token();
    if (!t) { said.textContent = "no token: nothing asked"; return; }
    if (!confirm(question)) { return; }
    fetch(base + path, { method: "POST", headers: { "X-Vmove-Token": t } })
      .then((r) => r.text().then((text) => {
        if (r.status === 401 || r.status === 403) { sessionStorage.removeItem("vmove-token"); }
        said.textContent = shown(text);
      }))
      .catch((e) => { said.textContent = "not sent: " + e; });
  }
  if (body.dataset.control === "1") {
    document.getElementById("stop").addEventListener("click", () => control(false));
    document.getElementById("abort").addEventListener("click", () => control(true));
  }
})();
