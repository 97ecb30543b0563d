// The credentials table: server-side paging, sorting and filters kept in the URL;
// reveal / copy / copy all / history / purge. Passwords only ever go into textContent or the
// clipboard, and leave the page again after the reveal delay.

import { api } from "./api.js";
import { bidi, config, confirmDialog, debounce, el, get, hostName, request, sourceLabel, timeEl, toast, visible } from "./portal.js";
import { actionButton, copyPassword, fetchPassword, revealer } from "./reveal.js";
import { badge, expiryState } from "./status.js";
import { controlBadges, needsApproval, requestAccess } from "./access.js";
import { checkoutBadges, checkoutButtons, onCheckoutAction } from "./checkout.js";

const FILTERS = ["q", "hostname", "username", "credential_type", "account_type", "resource_type", "domain", "source", "status", "expiring_within"];
const TEXT_FILTERS = ["q", "hostname", "username", "credential_type", "account_type", "resource_type", "domain"];
// Behind "More filters": every filter but the search field.
const MORE_FILTERS = FILTERS.filter(function (name) { return name !== "q"; });

// options: environmentId, isAdmin, pageSizes (from the server, first one the default), openHistory(item),
// emptyReason() (why the environment holds no credential, e.g. a failed sync; null when not known).
export function initCredentials(options) {
  const envId = options.environmentId;
  const isAdmin = options.isAdmin;
  const canReveal = options.canReveal !== false;
  const pageSizes = options.pageSizes;
  const defaultSize = pageSizes[0];
  const form = document.getElementById("filters");
  const body = document.getElementById("credentials-body");
  const table = document.getElementById("credentials-table");
  const status = document.getElementById("table-status");
  const loadError = document.getElementById("table-error");
  const items = new Map(); // id -> credential metadata of the page shown
  const secrets = revealer();
  // Credentials chosen for an action through SDDC Manager (admins): id -> metadata, across pages.
  const selected = new Map();
  const selectable = isAdmin && options.selectable;
  let onSelection = function () {};
  const columns = table.querySelectorAll("thead th").length;
  let state = fromUrl();
  let total = 0;
  let seq = 0;

  function fromUrl() {
    const params = new URLSearchParams(window.location.search);
    const next = { page: 1, per_page: defaultSize, sort: "hostname" };
    FILTERS.forEach(function (name) { next[name] = params.get(name) || ""; });
    const page = parseInt(params.get("page") || "1", 10);
    next.page = page > 0 ? page : 1;
    if (pageSizes.indexOf(params.get("per_page")) >= 0) next.per_page = params.get("per_page");
    if (params.get("sort")) next.sort = params.get("sort");
    return next;
  }

  function query(includePaging) {
    const params = new URLSearchParams();
    FILTERS.forEach(function (name) { if (state[name]) params.set(name, state[name]); });
    if (state.sort && state.sort !== "hostname") params.set("sort", state.sort);
    if (includePaging) {
      if (state.page > 1) params.set("page", String(state.page));
      if (state.per_page !== defaultSize) params.set("per_page", state.per_page);
    }
    return params;
  }

  function syncUrl() {
    const params = query(true).toString();
    const url = window.location.pathname + (params ? "?" + params : "") + window.location.hash;
    history.replaceState(null, "", url);
  }

  function fillForm() {
    FILTERS.forEach(function (name) { form.elements[name].value = state[name]; });
    form.elements.per_page.value = state.per_page;
    countMoreFilters();
  }

  // "More filters" says how many of its filters are in use, and opens by itself on a view
  // that uses one, so no filter in force is ever out of sight.
  const moreButton = document.getElementById("more-filters");
  const morePanel = document.getElementById("more-filters-panel");
  function showMoreFilters(open) {
    morePanel.hidden = !open;
    moreButton.setAttribute("aria-expanded", String(open));
  }
  function countMoreFilters() {
    const used = MORE_FILTERS.filter(function (name) { return state[name]; }).length;
    document.getElementById("more-filters-count").textContent = used ? "(" + used + ")" : "";
  }
  moreButton.addEventListener("click", function () { showMoreFilters(morePanel.hidden); });

  // The sort buttons are one Tab stop (the sorted column's), and arrow keys move between them,
  // so the keyboard reaches the rows in a few presses.
  const sortButtons = Array.from(table.querySelectorAll("th[data-sort] button"));
  function roveTo(button) {
    sortButtons.forEach(function (b) { b.tabIndex = b === button ? 0 : -1; });
  }

  function markSort() {
    const key = state.sort.replace(/^-/, "");
    let sorted = sortButtons[0];
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      if (th.dataset.sort === key) {
        th.setAttribute("aria-sort", state.sort.charAt(0) === "-" ? "descending" : "ascending");
        sorted = th.querySelector("button");
      } else th.removeAttribute("aria-sort");
    });
    if (!table.querySelector("thead").contains(document.activeElement)) roveTo(sorted);
  }

  function expiryCell(item) {
    const cell = el("td", { className: "col-expiry", dataset: { label: "Expiry" } });
    const state = expiryState(item);
    if (state) cell.append(badge(state), " ");
    // Fleet management says UNKNOWN when it could not check an account: shown, not hidden.
    else if (String(item.expiry_status || "").toUpperCase() === "UNKNOWN") cell.append(badge("UNKNOWN"), " ");
    if (item.expiry_date) cell.append(el("span", { title: item.expiry_date }, String(item.expiry_date).slice(0, 10)));
    else if (!item.expiry_status) cell.append(el("span", { className: "muted" }, "—"));
    return cell;
  }

  function actionsCell(item) {
    function button(action, text, aria, pressed) { return actionButton(action, text, aria, item, pressed); }
    // Below the reveal level (view) the server refuses passwords: offer only the history.
    // A sensitive credential without an open window offers to ask for access instead.
    const asking = canReveal && needsApproval(item);
    // One that needs a check-out (its rule, or someone else holds it) offers Check out instead.
    const showing = canReveal && !asking && (item.needs || []).indexOf("checkout") < 0;
    const buttons = el("div", { className: "buttons" },
      showing ? button("reveal", "Reveal", "Reveal password of ", "false") : null,
      showing ? button("copy", "Copy", "Copy password of ") : null,
      showing ? button("copy-all", "Copy all", "Copy all: host, user and password of ") : null,
      asking ? button("request", "Request access…", "Request access to the password of ") : null,
      button("history", "History", "Password history of "));
    buttons.append(...checkoutButtons(item, canReveal, isAdmin));
    // A management appliance's password, changed through fleet management (VCF 9.1).
    if (isAdmin && options.fleetUpdate && item.source === "fleet" && item.status === "present") {
      buttons.append(button("fleet-update", "Update…", "Update through fleet management the password of "));
    }
    if (isAdmin && item.status === "absent") {
      const purge = button("purge", "Purge", "Purge ");
      purge.classList.add("danger");
      buttons.append(purge);
    }
    return el("td", { className: "row-actions" }, buttons, el("span", { className: "secret-out", "aria-live": "polite" }));
  }

  function row(item) {
    const statusCell = el("td", { className: "nowrap", dataset: { label: "Status" } }, badge(item.status));
    if (item.absent_since) statusCell.append(" ", el("span", { className: "muted" }, "since "), timeEl(item.absent_since));
    const control = controlBadges(item);
    if (control) statusCell.append(control);
    const held = checkoutBadges(item);
    if (held) statusCell.append(held);
    return el("tr", { dataset: { id: item.id }, className: item.status === "absent" ? "absent" : null },
      hostCell(item),
      el("td", { className: "cell-text col-user", dataset: { label: "User" } }, bidi(item.username)),
      el("td", { className: "cell-text col-type", dataset: { label: "Credential type" } }, visible(item.credential_type)),
      el("td", { className: "cell-text col-type", dataset: { label: "Account type" } }, visible(item.account_type)),
      resourceTypeCell(item),
      el("td", { className: "cell-text", dataset: { label: "Domain" } }, bidi(item.domain)),
      el("td", { className: "nowrap", title: sourceLabel(item.source), dataset: { label: "Source" } }, (config.sourceShortLabels || {})[item.source] || item.source),
      statusCell,
      el("td", { className: "nowrap", dataset: { label: "Last changed" } }, timeEl(item.last_changed_at)),
      expiryCell(item),
      actionsCell(item));
  }

  // The operator's name of the resource type (SDDC Manager's, the installer's, fleet
  // management's appliance types), and the type itself below it: what the filter takes.
  function resourceTypeCell(item) {
    const cell = el("td", { className: "cell-text col-rtype", dataset: { label: "Resource type" } });
    const label = (config.resourceTypeLabels || {})[item.resource_type];
    // The type breaks after its underscores rather than anywhere in a narrow column.
    const parts = visible(item.resource_type).split("_").flatMap(function (part, i) { return i ? ["_", el("wbr"), part] : [part]; });
    if (label) cell.append(el("div", {}, label), el("div", { className: "muted" }, ...parts));
    else cell.append(visible(item.resource_type));
    return cell;
  }

  // The host, and for those who act on credentials the row's checkbox before it: the first
  // Tab stop of the row, in the column that never scrolls out of view.
  function hostCell(item) {
    const cell = el("td", { className: "cell-text col-host" });
    const name = el("div", { className: "host-name" }, hostName(item.hostname),
      item.resource_ip ? el("div", { className: "muted" }, visible(item.resource_ip)) : null);
    if (selectable && item.source === "manager" && item.status === "present") {
      const box = el("input", {
        type: "checkbox", className: "select-row", dataset: { id: item.id },
        "aria-label": "Select " + item.username + " on " + item.hostname + " (" + item.credential_type + ") for an action",
      });
      box.checked = selected.has(String(item.id));
      cell.append(el("div", { className: "host-select" }, el("label", { className: "select-label" }, box), name));
    } else if (selectable) {
      cell.append(el("div", { className: "host-select" }, el("span", { className: "select-label" }), name));
    } else {
      cell.append(name);
    }
    return cell;
  }

  function emptyText() {
    if (total !== 0 || FILTERS.some(function (n) { return state[n]; })) return "No credential matches these filters.";
    return (options.emptyReason && options.emptyReason()) || "No credentials yet. Sync the environment to fetch them.";
  }

  function updatePager() {
    const pages = Math.max(1, Math.ceil(total / parseInt(state.per_page, 10)));
    document.querySelectorAll(".pager .page-label").forEach(function (node) {
      node.textContent = "Page " + state.page + " of " + pages;
    });
    document.querySelectorAll('.pager [data-page="prev"]').forEach(function (b) { b.disabled = state.page <= 1; });
    document.querySelectorAll('.pager [data-page="next"]').forEach(function (b) { b.disabled = state.page >= pages; });
  }

  // A page that failed to load leaves no row of the previous one usable: the rows go, and a
  // banner says why and offers Retry, which loads the same page again.
  function showLoadError(error) {
    secrets.hideAll();
    items.clear();
    body.replaceChildren(el("tr", {}, el("td", { colspan: String(columns), className: "empty" }, "The credentials could not be loaded.")));
    status.textContent = "Could not load credentials.";
    const reason = error.status ? error.message : "the portal could not be reached (" + error.message + ")";
    document.getElementById("table-error-text").textContent = "Could not load this page of credentials: " + reason;
    loadError.hidden = false;
  }

  function hideLoadError() {
    if (loadError.hidden) return;
    const hadFocus = loadError.contains(document.activeElement);
    loadError.hidden = true;
    if (hadFocus) table.focus();
  }

  async function load() {
    const mySeq = ++seq;
    syncUrl();
    markSort();
    table.classList.add("busy");
    table.setAttribute("aria-busy", "true");
    try {
      const params = query(true);
      params.set("page", String(state.page));
      params.set("per_page", state.per_page);
      const data = await get(api.environmentAction(envId, "credentials", params));
      if (mySeq !== seq) return;
      total = data.total;
      secrets.hideAll();
      items.clear();
      const fragment = document.createDocumentFragment();
      data.items.forEach(function (item) { items.set(String(item.id), item); fragment.append(row(item)); });
      body.replaceChildren(fragment);
      if (data.items.length === 0) body.append(el("tr", {}, el("td", { colspan: String(columns), className: "empty" }, emptyText())));
      const first = total === 0 ? 0 : (state.page - 1) * parseInt(state.per_page, 10) + 1;
      status.textContent = total === 0 ? "No credentials." :
        "Showing " + first + "–" + (first + data.items.length - 1) + " of " + total + " credentials";
      updatePager();
      hideLoadError();
    } catch (e) {
      if (mySeq === seq) showLoadError(e);
    } finally {
      if (mySeq === seq) { table.classList.remove("busy"); table.setAttribute("aria-busy", "false"); }
    }
  }

  const loadSoon = debounce(load, 300);
  document.getElementById("table-retry").addEventListener("click", function () { load(); });

  form.addEventListener("input", function (event) {
    const name = event.target.name;
    if (!name) return;
    if (name === "per_page") state.per_page = event.target.value;
    else state[name] = event.target.value.trim();
    state.page = 1;
    countMoreFilters();
    if (TEXT_FILTERS.indexOf(name) >= 0) loadSoon(); else load();
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); load(); });
  form.addEventListener("reset", function () {
    setTimeout(function () {
      FILTERS.forEach(function (name) { state[name] = ""; });
      state.page = 1;
      fillForm();
      load();
    }, 0);
  });

  table.querySelector("thead").addEventListener("click", function (event) {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const key = th.dataset.sort;
    state.sort = state.sort === key ? "-" + key : key;
    state.page = 1;
    roveTo(th.querySelector("button"));
    load();
  });
  table.querySelector("thead").addEventListener("keydown", function (event) {
    const index = sortButtons.indexOf(event.target);
    if (index < 0) return;
    const last = sortButtons.length - 1;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: last }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const button = sortButtons[Math.max(0, Math.min(last, next))];
    roveTo(button);
    button.focus();
  });

  document.querySelectorAll(".pager [data-page]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.page += button.dataset.page === "next" ? 1 : -1;
      if (state.page < 1) state.page = 1;
      load();
      if (button.closest("#pager-bottom")) table.scrollIntoView({ block: "start" });
    });
  });

  async function purge(tr) {
    const item = items.get(tr.dataset.id);
    const ok = await confirmDialog("Purge credential?",
      "Delete " + visible(item.hostname) + " / " + visible(item.username) + " and its password history from the portal. It is absent upstream; this cannot be undone.",
      "Purge");
    if (!ok) return;
    try {
      await request("DELETE", api.credential(item.id));
      toast("Credential purged.");
      load();
    } catch (e) {
      toast("Could not purge: " + e.message, "error");
    }
  }

  body.addEventListener("change", function (event) {
    const box = event.target.closest("input.select-row");
    if (!box) return;
    const id = box.dataset.id;
    if (box.checked) selected.set(id, items.get(id));
    else selected.delete(id);
    onSelection(Array.from(selected.values()));
  });

  body.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const tr = button.closest("tr");
    const action = button.dataset.action;
    if (action === "reveal") secrets.toggle(tr.dataset.id, button, tr.querySelector(".secret-out"), () => fetchPassword(tr.dataset.id, "reveal"));
    else if (action === "copy") copyPassword(button, items.get(tr.dataset.id), false);
    else if (action === "copy-all") copyPassword(button, items.get(tr.dataset.id), true);
    else if (action === "history") options.openHistory(items.get(tr.dataset.id));
    else if (action === "request") {
      const id = tr.dataset.id;
      // The rows are drawn again; the keyboard focus goes back to the same row's button.
      requestAccess(items.get(id), button, async function () {
        await load();
        const again = body.querySelector('tr[data-id="' + id + '"] button[data-action]');
        if (again) again.focus();
      });
    }
    else if (action === "purge") purge(tr);
    else if (action === "fleet-update") options.fleetUpdate(items.get(tr.dataset.id));
    else onCheckoutAction(action, items.get(tr.dataset.id), button, function () { load(); if (options.onCheckout) options.onCheckout(); });
  });

  fillForm();
  showMoreFilters(state.per_page !== defaultSize || MORE_FILTERS.some(function (name) { return state[name]; }));
  load();
  return {
    reload: load,
    // The status of the sources changed: say again why the table is empty, if it is.
    refreshEmpty: function () {
      const cell = body.querySelector("td.empty");
      if (cell) cell.textContent = emptyText();
    },
    // The credentials selected for an action, and a callback told whenever that changes.
    selection: function () { return Array.from(selected.values()); },
    select: function (list) {
      selected.clear();
      list.forEach(function (item) { selected.set(String(item.id), item); });
      body.querySelectorAll("input.select-row").forEach(function (box) { box.checked = selected.has(box.dataset.id); });
      onSelection(Array.from(selected.values()));
    },
    onSelection: function (callback) { onSelection = callback; },
    filters: function () {
      const values = {};
      FILTERS.forEach(function (name) { values[name] = state[name]; });
      values.sort = state.sort;
      return values;
    },
  };
}
