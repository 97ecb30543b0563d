// Dashboard: environments with per-source status (cards or list), sync now, global search.

import { api, pages } from "./api.js";
import { initExport } from "./export.js";
import {
  bidi, config, debounce, downloadJson, el, get, headRow, hostName, me, post, request, sourceLabel, timeEl, toast, visible,
} from "./portal.js";
import { actionButton, copyPassword, fetchPassword, revealer } from "./reveal.js";
import { controlBadges, needsApproval, requestAccess } from "./access.js";
import { badge, errorDetails, nextRunEl, progressEl } from "./status.js";
import { checkoutBadges, checkoutButtons, onCheckoutAction } from "./checkout.js";
import { runKey, syncWatcher } from "./sync.js";

const root = document.getElementById("dashboard");
const isAdmin = root.dataset.admin === "true";
const container = document.getElementById("environments");
const summary = document.getElementById("summary");
const SOURCES = config.sources;
let environments = [];
let view = "cards";
const openErrors = new Set();

// The latest run of each source stays shown (and survives re-rendering) once seen.
const syncs = syncWatcher({ slotPrefix: "progress-", onFinished: function () { load(); } });

function sourcesOf(env) {
  return SOURCES.filter(function (s) { return env[s]; });
}

function lastError(env, source, error) {
  const k = runKey(env.id, source);
  return errorDetails(error, openErrors.has(k), function (open) {
    if (open) openErrors.add(k); else openErrors.delete(k);
  });
}

function nextRun(env, source) {
  return nextRunEl(env[source], env.status[source]);
}

function progressSlot(env, source) {
  const slot = el("div", { className: "progress-slot", id: "progress-" + runKey(env.id, source) });
  const run = syncs.latest(runKey(env.id, source));
  if (run) slot.append(progressEl(run));
  return slot;
}

function sourceBlock(env, source) {
  const endpoint = env[source];
  const status = env.status[source] || { state: "never" };
  const block = el("div", { className: "source" },
    el("div", { className: "source-head" },
      el("span", { className: "source-name" }, sourceLabel(source)),
      badge(status.state),
      el("span", { className: "source-host" }, bidi(endpoint.host))),
    el("dl", { className: "facts" },
      el("div", {}, el("dt", {}, "Last sync"), el("dd", {}, timeEl(status.last_sync_at, "Never"))),
      el("div", {}, el("dt", {}, "Credentials"), el("dd", {}, String(status.credential_count || 0))),
      el("div", {}, el("dt", {}, "Absent"), el("dd", {}, String(status.absent_count || 0))),
      el("div", {}, el("dt", {}, "Next run"), el("dd", {}, nextRun(env, source)))));
  if (status.last_error) block.append(lastError(env, source, status.last_error));
  block.append(progressSlot(env, source));
  return block;
}

function syncButton(env) {
  if (!isAdmin || sourcesOf(env).length === 0) return null;
  const button = el("button", { type: "button", className: "small", dataset: { sync: env.id } }, "Sync now");
  const busy = sourcesOf(env).some(function (s) { return syncs.isWatching(runKey(env.id, s)); });
  if (busy) button.disabled = true;
  return button;
}

function card(env) {
  const actions = el("div", { className: "card-actions" },
    el("a", { className: "button small", href: pages.environment(env.id) }, "Open"), syncButton(env),
    isAdmin ? el("a", { className: "button small", href: pages.editEnvironment(env.id) }, "Edit") : null);
  const node = el("article", { className: "card env-card", "aria-labelledby": "env-" + env.id },
    el("header", {}, el("h2", { id: "env-" + env.id }, el("a", { href: pages.environment(env.id) }, bidi(env.name)))),
    env.description ? el("p", { className: "desc" }, visible(env.description)) : null);
  sourcesOf(env).forEach(function (s) { node.append(sourceBlock(env, s)); });
  if (sourcesOf(env).length === 0) node.append(el("p", { className: "muted" }, "No source configured."));
  node.append(actions);
  return node;
}

function listView() {
  const body = el("tbody");
  environments.forEach(function (env) {
    sourcesOf(env).forEach(function (source, index) {
      const status = env.status[source] || { state: "never" };
      const stateCell = el("td", {}, badge(status.state));
      if (status.last_error) stateCell.append(lastError(env, source, status.last_error));
      stateCell.append(progressSlot(env, source));
      body.append(el("tr", {},
        el("td", { className: "cell-text" }, index === 0 ? el("a", { href: pages.environment(env.id) }, bidi(env.name)) : ""),
        el("td", {}, sourceLabel(source), el("div", { className: "source-host" }, bidi(env[source].host))),
        stateCell,
        el("td", {}, timeEl(status.last_sync_at, "Never")),
        el("td", {}, String(status.credential_count || 0)),
        el("td", {}, String(status.absent_count || 0)),
        el("td", {}, nextRun(env, source)),
        el("td", { className: "nowrap" }, index === 0 ? syncButton(env) : null)));
    });
  });
  return el("div", { className: "table-wrap" }, el("table", { className: "data" },
    headRow("Environment", "Source", "Status", "Last sync", "Credentials", "Absent", "Next run", "Actions"), body));
}

function render() {
  container.replaceChildren();
  container.setAttribute("aria-busy", "false");
  document.getElementById("view-cards").setAttribute("aria-pressed", String(view === "cards"));
  document.getElementById("view-list").setAttribute("aria-pressed", String(view === "list"));
  if (environments.length === 0) {
    container.append(el("div", { className: "card empty" },
      el("p", {}, "No environments yet."),
      isAdmin ? el("a", { className: "button primary", href: pages.newEnvironment() }, "Add the first environment") : null));
    return;
  }
  if (view === "list") container.append(listView());
  else container.append(el("div", { className: "grid" }, ...environments.map(card)));
}

function summarise() {
  let failed = 0, total = 0;
  environments.forEach(function (env) {
    sourcesOf(env).forEach(function (s) {
      total += (env.status[s] || {}).credential_count || 0;
      if ((env.status[s] || {}).state === "failed") failed += 1;
    });
  });
  summary.textContent = environments.length + " environment" + (environments.length === 1 ? "" : "s") +
    ", " + total + " credentials" + (failed ? " · " + failed + " source" + (failed === 1 ? "" : "s") + " failing" : "");
}

// The layout preference arrives with the signed-in user; the first render waits for it.
const preference = me().then(function (user) {
  if (user && user.preferences && user.preferences.dashboard_view === "list") view = "list";
});

async function load(background) {
  try {
    const data = await get(api.environments(), { background: background === true });
    await preference;
    environments = data.items;
    summarise();
    render();
    environments.forEach(function (env) {
      sourcesOf(env).forEach(function (s) {
        const active = (env.status[s] || {}).active_run;
        if (active) syncs.follow(runKey(env.id, s), active.id);
      });
    });
  } catch (e) {
    summary.textContent = "Could not load environments: " + e.message;
  }
}

container.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-sync]");
  if (button) syncs.start(button.dataset.sync, null, button);
});

function setView(next) {
  if (next === view) return;
  view = next;
  render();
  request("PATCH", api.preferences(), { dashboard_view: view }).catch(function () {
    toast("Could not save the layout preference.", "error");
  });
}
document.getElementById("view-cards").addEventListener("click", function () { setView("cards"); });
document.getElementById("view-list").addEventListener("click", function () { setView("list"); });

// Cross-environment search: an account that several sources hold with the same password is one
// row naming them all (Reveal and Copy use the first, SDDC Manager's); one held with different
// passwords is a row per source, each saying so.
const found = new Map(); // id -> search result shown
const secrets = revealer();

function sourcesCell(item) {
  const cell = el("td", { className: "col-source", dataset: { label: "Source" } },
    (item.sources || [item.source]).map(sourceLabel).join(", "));
  if (item.differs_from && item.differs_from.length) {
    cell.append(el("div", { className: "differs" },
      "Another password in " + item.differs_from.map(sourceLabel).join(", ")));
  }
  // The installer's bring-up value of an account fleet management has since changed.
  if (item.stale) {
    cell.append(el("div", { className: "stale" }, badge("EXPIRED", "Stale"), " ",
      "Set at bring-up; " + sourceLabel("fleet") + " holds the current password."));
  }
  return cell;
}

// A management appliance from fleet management: its type, and its expiry status when known.
function applianceNote(item) {
  if (item.source !== "fleet" || !item.resource_type) return null;
  const label = (config.applianceLabels || {})[item.resource_type] || visible(item.resource_type);
  const status = item.expiry_status ? " · " + ((config.stateLabels || {})[item.expiry_status] || visible(item.expiry_status)) : "";
  return el("div", { className: "muted appliance" }, label + status);
}

function resultRow(item) {
  const filter = { hostname: item.hostname, username: item.username };
  function button(action, text, aria, pressed) { return actionButton(action, text, aria, item, pressed); }
  return el("tr", { dataset: { id: item.id } },
    el("td", { className: "cell-text", dataset: { label: "Environment" } }, bidi(item.environment)),
    el("td", { className: "cell-text col-host" }, el("a", { href: pages.environment(item.environment_id, filter) }, hostName(item.hostname)),
      applianceNote(item)),
    el("td", { className: "cell-text col-user", dataset: { label: "User" } }, bidi(item.username)),
    el("td", { dataset: { label: "Type" } }, visible(item.credential_type)),
    sourcesCell(item),
    el("td", { dataset: { label: "Status" } }, badge(item.status), controlBadges(item), checkoutBadges(item)),
    el("td", { className: "row-actions" },
      item.can_reveal === false
        ? el("span", { className: "muted" }, "View only")
        : needsApproval(item)
          ? el("div", { className: "buttons" }, button("request", "Request access…", "Request access to the password of "))
          : (item.needs || []).indexOf("checkout") >= 0 ? null : el("div", { className: "buttons" },
            button("reveal", "Reveal", "Reveal password of ", "false"),
            button("copy", "Copy", "Copy password of ")),
      el("div", { className: "buttons" }, ...checkoutButtons(item, item.can_reveal !== false, false)),
      el("span", { className: "secret-out", "aria-live": "polite" })));
}

const search = document.getElementById("global-search");
const results = document.getElementById("search-results");
const searchStatus = document.getElementById("search-status");
let searchSeq = 0;
// The search lives in the address (?q=): a reload, a shared link and a sign-in after the
// session ended (which comes back to this address) bring it back.
function rememberSearch(q) {
  const url = new URL(window.location.href);
  if (q) url.searchParams.set("q", q); else url.searchParams.delete("q");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
}
const runSearch = debounce(async function () {
  const q = search.value.trim();
  rememberSearch(q);
  const seq = ++searchSeq;
  if (q.length < 2) {
    results.replaceChildren();
    searchStatus.textContent = q ? "Type at least two characters." : "";
    return;
  }
  searchStatus.textContent = "Searching…";
  try {
    const data = await get(api.credentials({ per_page: config.searchPageSize, q: q }));
    if (seq !== searchSeq) return;
    searchStatus.textContent = data.total === 0 ? "No matches." :
      data.total + " match" + (data.total === 1 ? "" : "es") + (data.total > data.items.length ? "; showing the first " + data.items.length + "." : ".");
    found.clear();
    secrets.hideAll();
    const body = el("tbody");
    data.items.forEach(function (item) { found.set(String(item.id), item); body.append(resultRow(item)); });
    results.replaceChildren(data.items.length ? el("div", { className: "table-wrap" }, el("table", { className: "data stack" },
      headRow("Environment", ["Host", "col-host"], "User", "Type", "Source", "Status", ["Password", "col-actions"]),
      body)) : "");
  } catch (e) {
    if (seq === searchSeq) searchStatus.textContent = "Search failed: " + e.message;
  }
}, 250);
search.addEventListener("input", runSearch);
const remembered = new URLSearchParams(window.location.search).get("q");
if (remembered && !search.value.trim()) search.value = remembered.slice(0, 200);
// Typed before this module ran (the field has the focus on load), or remembered: search now.
if (search.value.trim()) runSearch();
results.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const tr = button.closest("tr");
  const item = found.get(tr.dataset.id);
  if (button.dataset.action === "reveal") {
    secrets.toggle(tr.dataset.id, button, tr.querySelector(".secret-out"), () => fetchPassword(item.id, "reveal"));
  } else if (button.dataset.action === "copy") copyPassword(button, item, false);
  else if (button.dataset.action === "request") requestAccess(item, button, function () { runSearch(); });
  else onCheckoutAction(button.dataset.action, item, button, function () { runSearch(); });
});

initExport({
  currentFilters: function () {
    const q = search.value.trim();
    return q ? { q: q } : {};
  },
});

// Admin: environment definitions.
if (isAdmin) {
  const result = document.getElementById("definitions-result");
  document.getElementById("definitions-export").addEventListener("click", async function () {
    try {
      downloadJson("vcf-environments.json", await get(api.definitions()));
    } catch (e) { toast("Export failed: " + e.message, "error"); }
  });
  const dialog = document.getElementById("definitions-dialog");
  const password = document.getElementById("definitions-password");
  const error = document.getElementById("definitions-error");
  document.getElementById("definitions-export-secret").addEventListener("click", function () {
    error.textContent = "";
    password.value = "";
    dialog.showModal();
  });
  document.getElementById("definitions-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    try {
      const data = await post(api.definitionsExport(),
        { include_passwords: true, confirm_password: password.value });
      password.value = "";
      dialog.close();
      downloadJson("vcf-environments-with-passwords.json", data);
    } catch (e) {
      error.textContent = e.status === 403 ? "That password is not correct." : e.message;
    }
  });
  document.getElementById("definitions-file").addEventListener("change", async function (event) {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    let documentBody;
    try { documentBody = JSON.parse(await file.text()); } catch (e) {
      result.replaceChildren(el("p", { className: "result fail" }, "That file is not JSON."));
      return;
    }
    try {
      const outcome = await post(api.definitionsImport(), documentBody);
      const errors = Object.entries(outcome.errors || {});
      result.replaceChildren(el("div", { className: "result " + (errors.length ? "fail" : "ok") },
        el("p", {}, "Created " + outcome.created + ", updated " + outcome.updated + "."),
        errors.length ? el("ul", {}, ...errors.map(function (pair) {
          return el("li", {}, visible(pair[0] + ": " + (typeof pair[1] === "string" ? pair[1] : JSON.stringify(pair[1]))));
        })) : null));
      load();
    } catch (e) {
      result.replaceChildren(el("p", { className: "result fail" }, "Import failed: " + e.message));
    }
  });
}

load();

// Keep statuses fresh during an outage, but never pull the page from under the keyboard.
setInterval(function () {
  if (document.hidden || container.contains(document.activeElement)) return;
  load(true);
}, 30000);
