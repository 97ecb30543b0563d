// Environment view: source status with live sync progress, tabs, password history dialog.
"use strict";

(function () {
  const P = window.Portal;
  const el = P.el;
  const root = document.getElementById("environment");
  if (!root) return;
  const envId = root.dataset.environmentId;
  const isAdmin = root.dataset.admin === "true";
  const watching = new Set();
  let credentials = null;

  function renderStatus(env) {
    document.querySelectorAll(".source-card").forEach(function (card) {
      const source = card.dataset.source;
      const endpoint = env[source];
      const status = env.status[source] || { state: "never" };
      if (!endpoint) return;
      card.querySelector(".status-badge").replaceChildren(P.badge(status.state));
      card.querySelector(".source-host").replaceChildren(P.bidi(endpoint.host + ":" + endpoint.port));
      card.querySelector(".fact-last").replaceChildren(P.timeEl(status.last_sync_at, "Never"));
      card.querySelector(".fact-success").replaceChildren(P.timeEl(status.last_success_at, "Never"));
      card.querySelector(".fact-count").textContent = String(status.credential_count || 0);
      card.querySelector(".fact-absent").textContent = String(status.absent_count || 0);
      const next = card.querySelector(".fact-next");
      if (!endpoint.sync_enabled) next.replaceChildren(el("span", { className: "muted" }, "Sync off"));
      else if (endpoint.sync_paused) next.replaceChildren(P.badge("paused"));
      else next.replaceChildren(P.timeEl(status.next_run_at, "Pending"));
      const errorSlot = card.querySelector(".fact-error");
      const wasOpen = errorSlot.querySelector("details") && errorSlot.querySelector("details").open;
      errorSlot.replaceChildren();
      if (status.last_error) {
        const details = el("details", { className: "error" }, el("summary", {}, "Last error"), el("pre", {}, status.last_error));
        details.open = Boolean(wasOpen);
        errorSlot.append(details);
      }
      if (status.active_run) follow(source, status.active_run.id);
    });
  }

  // The outcome of the latest run of each source, with its counts, until a new one starts.
  async function loadLastRuns() {
    try {
      const data = await P.api("GET", "/api/v1/environments/" + encodeURIComponent(envId) + "/sync-runs");
      const seen = new Set();
      data.items.forEach(function (run) {
        if (seen.has(run.source)) return;
        seen.add(run.source);
        const slot = document.getElementById("progress-" + run.source);
        if (!slot) return;
        if (P.runIsFinal(run)) {
          if (!watching.has(run.source)) slot.replaceChildren(P.progressEl(run));
        } else {
          follow(run.source, run.id);
        }
      });
    } catch (e) { /* the status cards still show the outcome */ }
  }

  async function loadStatus(background) {
    try {
      renderStatus(await P.api("GET", "/api/v1/environments/" + encodeURIComponent(envId),
        undefined, { background: background === true }));
    } catch (e) {
      P.toast("Could not load the environment status: " + e.message, "error");
    }
  }

  function setSyncButton(source, busy) {
    const button = document.querySelector('[data-sync-source="' + source + '"]');
    if (button) button.disabled = busy;
  }

  function follow(source, runId) {
    if (watching.has(source)) return;
    watching.add(source);
    setSyncButton(source, true);
    const slot = document.getElementById("progress-" + source);
    P.watchRun(runId, function (run) { slot.replaceChildren(P.progressEl(run)); }).then(function (run) {
      watching.delete(source);
      setSyncButton(source, false);
      P.toast(P.sourceLabel(source) + ": " + P.describeRun(run), run.state === "failed" ? "error" : "info");
      loadStatus();
      if (credentials) credentials.reload();
    });
  }

  document.querySelectorAll("[data-sync-source]").forEach(function (button) {
    button.addEventListener("click", async function () {
      const source = button.dataset.syncSource;
      button.disabled = true;
      try {
        const run = await P.api("POST", "/api/v1/environments/" + encodeURIComponent(envId) + "/sync", { source: source });
        document.getElementById("progress-" + source).replaceChildren(P.progressEl(run));
        follow(source, run.id);
      } catch (e) {
        button.disabled = false;
        P.toast("Sync could not start: " + e.message, "error");
      }
    });
  });

  // Tabs: arrow keys move between them (WAI-ARIA tabs pattern); #age opens the second one.
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  function select(tab) {
    tabs.forEach(function (t) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
    history.replaceState(null, "", window.location.pathname + window.location.search + (tab.id === "tab-age" ? "#age" : ""));
    if (tab.id === "tab-age" && window.PortalAge) window.PortalAge.show(envId);
  }
  tabs.forEach(function (tab, index) {
    tab.addEventListener("click", function () { select(tab); });
    tab.addEventListener("keydown", function (event) {
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(index + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });

  // Password history: each former value is revealed on demand and hidden again.
  const dialog = document.getElementById("history-dialog");
  const list = document.getElementById("history-list");
  dialog.addEventListener("close", function () { list.replaceChildren(); });

  async function openHistory(item) {
    document.getElementById("history-subject").replaceChildren(P.bidi(item.hostname), " / ", P.bidi(item.username), " (" + item.credential_type + ")");
    list.replaceChildren(el("p", { className: "muted" }, "Loading…"));
    dialog.showModal();
    try {
      const data = await P.api("GET", "/api/v1/credentials/" + encodeURIComponent(item.id) + "/history");
      const body = el("tbody");
      data.items.forEach(function (entry) {
        const out = el("span", { className: "secret-out", "aria-live": "polite" });
        const button = el("button", { type: "button", className: "small" }, "Reveal");
        let timer = null;
        button.addEventListener("click", async function () {
          if (timer) { clearTimeout(timer); timer = null; out.replaceChildren(); button.textContent = "Reveal"; return; }
          try {
            const result = await P.api("POST", "/api/v1/credentials/" + encodeURIComponent(item.id) + "/history/" + encodeURIComponent(entry.id) + "/reveal", {});
            out.replaceChildren(el("span", { className: "secret" }, result.password));
            button.textContent = "Hide";
            timer = setTimeout(function () { timer = null; out.replaceChildren(); button.textContent = "Reveal"; }, P.revealSeconds() * 1000);
          } catch (e) { P.toast("Could not reveal: " + e.message, "error"); }
        });
        body.append(el("tr", { className: "history-entry" },
          el("td", {}, P.timeEl(entry.first_seen_at)),
          el("td", {}, entry.current ? P.badge("active", "Current") : P.timeEl(entry.changed_at)),
          el("td", {}, entry.changed_by || ""),
          el("td", { className: "row-actions" }, button, out)));
      });
      list.replaceChildren(data.items.length ? el("table", { className: "data" },
        el("thead", {}, el("tr", {}, ...["First seen", "Replaced", "By", "Password"].map(function (t) { return el("th", { scope: "col" }, t); }))),
        body) : el("p", { className: "muted" }, "No history yet."));
    } catch (e) {
      list.replaceChildren(el("p", { className: "field-error" }, "Could not load the history: " + e.message));
    }
  }

  credentials = window.PortalCredentials.init({ environmentId: envId, isAdmin: isAdmin, openHistory: openHistory });
  if (window.PortalExport) window.PortalExport.init(credentials.filters);
  loadStatus();
  loadLastRuns();
  if (window.location.hash === "#age") select(document.getElementById("tab-age"));
  setInterval(function () { if (!document.hidden && watching.size === 0) loadStatus(true); }, 30000);
})();
