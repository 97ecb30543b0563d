// Environment view: source status with live sync progress, tabs, password history dialog.

import { api, pages } from "./api.js";
import { showAge } from "./age.js";
import { initActions } from "./actions.js";
import { initCredentials } from "./credentials.js";
import { initExport } from "./export.js";
import { bidi, el, exactTime, get, headRow, post, sourceLabel, timeEl, toast, visible } from "./portal.js";
import { revealer } from "./reveal.js";
import { badge, errorDetails, nextRunEl, runIsFinal } from "./status.js";
import { syncWatcher } from "./sync.js";
import { heldByCell, initCheckoutPanel } from "./checkout.js";

const root = document.getElementById("environment");
const envId = root.dataset.environmentId;
const isAdmin = root.dataset.admin === "true";
// The level on this environment: "admin" means manage here; reveal allows passwords.
const canReveal = root.dataset.reveal === "true";
// Who saw a password since it changed: auditors, admins and this environment's managers.
const canAudit = root.dataset.audit === "true";
let credentials = null;
let shownEnv = null;
// Read before the credentials table rewrites the address with its filters only.
const asked = new URLSearchParams(window.location.search);

// Runs are keyed by source: this page shows one environment.
const syncs = syncWatcher({
  keyOf: function (_envId, source) { return source; },
  slotPrefix: "progress-",
  onWatch: function (source, busy) {
    const button = document.querySelector('[data-sync-source="' + source + '"]');
    if (button) button.disabled = busy;
  },
  onFinished: function () {
    loadStatus();
    if (credentials) credentials.reload();
  },
});

// Why the environment holds no credential, when its sources' last syncs failed.
function emptyReason() {
  if (!shownEnv) return null;
  const failed = Object.keys(shownEnv.status || {}).filter(function (source) {
    return shownEnv[source] && shownEnv.status[source].state === "failed";
  });
  if (!failed.length) return null;
  return "No credentials: " + failed.map(function (source) {
    return "the last sync from " + sourceLabel(source) + " failed: " + visible(shownEnv.status[source].last_error || "no reason given");
  }).join("; ");
}

function renderStatus(env) {
  shownEnv = env;
  document.querySelectorAll(".source-card").forEach(function (card) {
    const source = card.dataset.source;
    const endpoint = env[source];
    const status = env.status[source] || { state: "never" };
    if (!endpoint) return;
    card.querySelector(".status-badge").replaceChildren(badge(status.state));
    card.querySelector(".source-host").replaceChildren(bidi(endpoint.host + ":" + endpoint.port));
    card.querySelector(".fact-last").replaceChildren(timeEl(status.last_sync_at, "Never"));
    card.querySelector(".fact-success").replaceChildren(timeEl(status.last_success_at, "Never"));
    card.querySelector(".fact-count").textContent = String(status.credential_count || 0);
    card.querySelector(".fact-absent").textContent = String(status.absent_count || 0);
    card.querySelector(".fact-next").replaceChildren(nextRunEl(endpoint, status));
    const api = card.querySelector(".fact-api");
    // Fleet management: which API answered the last sync (9.1 password management, 9.0 locker).
    if (api) api.textContent = endpoint.api_detected || "Not yet detected";
    const errorSlot = card.querySelector(".fact-error");
    const wasOpen = errorSlot.querySelector("details") && errorSlot.querySelector("details").open;
    errorSlot.replaceChildren(status.last_error ? errorDetails(status.last_error, wasOpen) : "");
    if (status.active_run) syncs.follow(source, status.active_run.id);
  });
  if (credentials) credentials.refreshEmpty();
}

// The outcome of the latest run of each source, with its counts, until a new one starts.
async function loadLastRuns() {
  try {
    const data = await get(api.environmentAction(envId, "sync-runs"));
    const seen = new Set();
    data.items.forEach(function (run) {
      if (seen.has(run.source)) return;
      seen.add(run.source);
      if (!document.getElementById("progress-" + run.source)) return;
      if (!runIsFinal(run)) syncs.follow(run.source, run.id);
      else if (!syncs.isWatching(run.source)) syncs.show(run.source, run);
    });
  } catch (e) { /* the status cards still show the outcome */ }
}

async function loadStatus(background) {
  try {
    renderStatus(await get(api.environment(envId), { background: background === true }));
  } catch (e) {
    toast("Could not load the environment status: " + e.message, "error");
  }
}

document.querySelectorAll("[data-sync-source]").forEach(function (button) {
  button.addEventListener("click", function () { syncs.start(envId, button.dataset.syncSource, button); });
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
  const hash = { "tab-age": "#age", "tab-access": "#access" }[tab.id] || "";
  history.replaceState(null, "", window.location.pathname + window.location.search + hash);
  if (tab.id === "tab-age") showAge(envId);
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
const formerPasswords = revealer();
dialog.addEventListener("close", function () {
  formerPasswords.hideAll();
  list.replaceChildren();
});

async function openHistory(item) {
  document.getElementById("history-subject").replaceChildren(bidi(item.hostname), " / ", bidi(item.username), " (" + visible(item.credential_type) + ")");
  list.replaceChildren(el("p", { className: "muted" }, "Loading…"));
  dialog.showModal();
  try {
    const data = await get(api.history(item.id));
    const needs = data.needs || [];
    const body = el("tbody");
    data.items.forEach(function (entry) {
      const out = el("span", { className: "secret-out", "aria-live": "polite" });
      const button = el("button", { type: "button", className: "small", "aria-pressed": "false" }, "Reveal");
      button.addEventListener("click", function () {
        formerPasswords.toggle(entry.id, button, out, async function () {
          return (await post(api.historyReveal(item.id, entry.id))).password;
        });
      });
      body.append(el("tr", { className: "history-entry" },
        el("td", {}, timeEl(entry.first_seen_at)),
        el("td", {}, entry.current ? badge("active", "Current") : timeEl(entry.changed_at)),
        el("td", {}, visible(entry.changed_by || "")),
        heldByCell(entry),
        el("td", { className: "row-actions" }, canReveal && !needs.length ? button : el("span", { className: "muted" }, "—"), out)));
    });
    const note = needs.length ? el("p", { className: "notice", id: "history-needs" },
      "Sensitive credential: its passwords, current and former, need " +
      needs.map(function (n) { return n === "approval" ? "an approved request" : "a check-out"; }).join(" and ") + " first.") : "";
    list.replaceChildren(note, data.items.length ? el("table", { className: "data" },
      headRow("First seen", "Replaced", "By", "Checked out by", "Password"), body) : el("p", { className: "muted" }, "No history yet."));
  } catch (e) {
    list.replaceChildren(el("p", { className: "field-error" }, "Could not load the history: " + e.message));
  }
  if (canAudit) await showSeenBy(item);
}

const WAYS = { reveal: "revealed", copy: "copied", former: "revealed in the history", export: "exported" };

async function showSeenBy(item) {
  const box = document.getElementById("history-seen-list");
  box.replaceChildren(el("p", { className: "muted" }, "Loading…"));
  try {
    const data = await get(api.seenBy(item.id));
    if (!data.items.length) {
      box.replaceChildren(el("p", { className: "muted" }, "Nobody revealed, copied or exported it since it last changed."));
      return;
    }
    const body = el("tbody");
    data.items.forEach(function (entry) {
      const how = entry.ways.map(function (way) { return WAYS[way] || way; }).join(", ") +
        (entry.basis === "recorded" ? "" : " (" + entry.basis.replace("_", " ") + ")");
      body.append(el("tr", {},
        el("td", { className: "cell-text" }, el("a", { href: pages.seen(entry.person) }, bidi(entry.person))),
        el("td", {}, how),
        el("td", {}, String(entry.times)),
        el("td", {}, timeEl(entry.last_shown_at))));
    });
    box.replaceChildren(el("p", { className: "muted" }, "The current password was stored " + exactTime(data.since) + "."),
      el("table", { className: "data" }, headRow("Person", "How", "Times", "Last"), body));
  } catch (e) {
    box.replaceChildren(el("p", { className: "field-error" }, "Could not load who saw it: " + e.message));
  }
}

const reloadCheckouts = initCheckoutPanel(envId);
credentials = initCredentials({
  environmentId: envId,
  onCheckout: reloadCheckouts,
  isAdmin: isAdmin,
  canReveal: canReveal,
  pageSizes: root.dataset.pageSizes.split(" "),
  openHistory: openHistory,
  emptyReason: emptyReason,
  selectable: root.dataset.manager === "true",
  // Fleet management's accounts: Update… opens the action dialog for that one account.
  fleetUpdate: root.dataset.fleet === "true" ? function (item) { if (actionsUi) actionsUi.open("update", [item.id]); } : null,
});
initExport({ currentFilters: credentials.filters, environmentId: envId });
let actionsUi = null;
if (isAdmin && (root.dataset.manager === "true" || root.dataset.fleet === "true")) {
  actionsUi = initActions({
    environmentId: envId,
    credentials: credentials,
    onFinished: function () { loadStatus(); loadLastRuns(); credentials.reload(); },
  });
}
loadStatus();
loadLastRuns();
// From the "needs attention" list: the action it offered for one credential, asked for again
// in its dialog (nothing is done before the operator confirms there).
const askedId = parseInt(asked.get("credential") || "", 10);
if (actionsUi && ["rotate", "update", "remediate"].indexOf(asked.get("act")) >= 0 && askedId > 0) {
  actionsUi.open(asked.get("act"), [askedId]);
} else if (actionsUi && asked.get("act") === "expiry_check") {
  document.getElementById("expiry-check").scrollIntoView({ block: "center" });
  document.getElementById("expiry-check").focus();
}
// The operator comes for a host: the search field has the focus, unless another view was asked for.
if (window.location.hash === "#age") select(document.getElementById("tab-age"));
else if (window.location.hash === "#access" && document.getElementById("tab-access")) select(document.getElementById("tab-access"));
else if (!(actionsUi && asked.get("act"))) document.getElementById("f-q").focus();
setInterval(function () { if (!document.hidden && syncs.idle()) loadStatus(true); }, 30000);
setInterval(function () { if (!document.hidden) reloadCheckouts(); }, 30000);
