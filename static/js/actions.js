// Acting on credentials through SDDC Manager (admins): rotate, update, remediate, auto-rotate.
// The dialog shows exactly what will be done (a dry run on the server), asks to type the count
// for several credentials, then follows the action live, credential by credential.
// A password typed here goes to the portal once, in the request body; it is never shown again.

import { api } from "./api.js";
import { bidi, el, get, post, toast, visible } from "./portal.js";
import { badge } from "./status.js";

const TITLES = {
  rotate: "Rotate passwords",
  update: "Update passwords",
  remediate: "Remediate a password",
  auto_rotate: "Automatic rotation",
};
const SUBMIT = { rotate: "Rotate", update: "Update", remediate: "Remediate", auto_rotate: "Save the policy" };
const DOING = {
  rotate: "will get a new random password from SDDC Manager",
  update: "will get the new password",
  remediate: "will be recorded in SDDC Manager with the password already set on the component",
  auto_rotate: "will get the automatic rotation policy",
};
const FINAL = ["success", "partial", "failed", "cancelled"];
const POLL_MS = 1000;
const EXPIRING_PAGE = 200;
const MAX_PER_ACTION = 500; // the portal's limit of credentials in one action

// options: environmentId, credentials (the table: selection(), select(), onSelection()),
// onFinished() (reload the page's status and table).
export function initActions(options) {
  const envId = options.environmentId;
  const table = options.credentials;
  const $ = function (id) { return document.getElementById(id); };
  const dialog = $("action-dialog");
  const form = $("action-form");
  const planBody = $("action-plan").querySelector("tbody");
  const itemsBody = $("action-items").querySelector("tbody");
  const openers = document.querySelectorAll("[data-action-open]");
  let operation = null;
  let plan = [];
  let actionId = null;
  let timer = null;

  function show(id, visibleNow) { $(id).hidden = !visibleNow; }

  function updateBar(list) {
    const n = list.length;
    $("actions-count").textContent = n === 0 ? "No credential selected." :
      n + " credential" + (n === 1 ? "" : "s") + " selected.";
    openers.forEach(function (button) {
      const op = button.dataset.actionOpen;
      button.disabled = n === 0 || (op === "remediate" && n !== 1);
    });
    $("actions-clear").disabled = n === 0;
    // Shown only while something is selected: it takes no room from the table otherwise.
    $("actions-bar").hidden = n === 0;
    roveTo(null);
  }

  // The bar is one Tab stop (a toolbar): Shift+Tab from a row's checkbox lands on Rotate…,
  // arrow keys, Home and End move between the actions that can be used now.
  const barButtons = Array.from($("actions-bar").querySelectorAll("button"));
  let current = null;
  function usable() { return barButtons.filter(function (b) { return !b.disabled; }); }
  function roveTo(button) {
    const open = usable();
    if (!button || open.indexOf(button) < 0) button = open.indexOf(current) >= 0 ? current : open[0];
    current = button || null;
    barButtons.forEach(function (b) { b.tabIndex = b === current ? 0 : -1; });
  }
  $("actions-bar").addEventListener("keydown", function (event) {
    const open = usable();
    const index = open.indexOf(event.target);
    if (index < 0) return;
    const moves = { ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1, Home: 0, End: open.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = open[(moves[event.key] + open.length) % open.length];
    roveTo(next);
    next.focus();
  });
  $("actions-bar").addEventListener("focusin", function (event) {
    if (barButtons.indexOf(event.target) >= 0) roveTo(event.target);
  });
  table.onSelection(updateBar);
  updateBar(table.selection());
  $("actions-clear").addEventListener("click", function () { table.select([]); });

  function error(message) {
    $("action-error").textContent = message || "";
    show("action-error", Boolean(message));
  }

  function renderPlan(items) {
    plan = items;
    planBody.replaceChildren(...items.map(function (item) {
      return el("tr", {},
        el("td", { className: "cell-text" }, bidi(item.hostname)),
        el("td", { className: "cell-text" }, bidi(item.username)),
        el("td", {}, visible(item.credential_type)));
    }));
    const n = items.length;
    $("action-summary").textContent = n === 0 ? "No credential to act on." :
      (n === 1 ? "This credential " : "These " + n + " credentials ") + DOING[operation] + ":";
    $("action-confirm-label").textContent = "Type " + n + " to confirm";
    show("action-confirm-row", n > 1);
    $("action-submit").disabled = n === 0;
  }

  async function dryRun(ids) {
    error("");
    if (!ids.length) { renderPlan([]); return; }
    try {
      const data = await post(api.actions(), { operation: operation, credential_ids: ids, dry_run: true });
      renderPlan(data.items);
    } catch (e) {
      renderPlan([]);
      error(e.message);
    }
  }

  // Every expiring password, the soonest first, up to what one action takes; when there are
  // more, say how many and how to do the rest.
  async function listExpiring() {
    const days = $("action-days").value || "0";
    more("");
    try {
      let ids = [];
      let total = 0;
      for (let page = 1; ids.length < MAX_PER_ACTION; page++) {
        const data = await get(api.environmentAction(envId, "credentials", {
          expiring_within: days, source: "manager", status: "present", per_page: EXPIRING_PAGE,
          sort: "expiry_date", page: page,
        }));
        total = data.total;
        ids = ids.concat(data.items.map(function (item) { return item.id; }));
        if (data.items.length < EXPIRING_PAGE || ids.length >= total) break;
      }
      ids = ids.slice(0, MAX_PER_ACTION);
      await dryRun(ids);
      if (total > ids.length) {
        more((total - ids.length) + " more expire in this window: one action takes at most " +
          MAX_PER_ACTION + ", those that expire first. When it ends, open Rotate expiring… again for the rest.");
      }
    } catch (e) {
      renderPlan([]);
      error(e.message);
    }
  }

  function more(message) {
    $("action-more").textContent = message;
    show("action-more", Boolean(message));
  }

  function passwordRows() {
    const generating = operation === "update" && $("action-generate").checked;
    show("action-generate-row", operation === "update");
    show("action-password-row", (operation === "update" && !generating) || operation === "remediate");
    $("action-password-label").textContent = operation === "remediate" ?
      "The password already set on the component" : "New password";
  }
  $("action-generate").addEventListener("change", passwordRows);

  let opener = null;

  async function open(op, ids, expiring) {
    opener = document.activeElement;
    stop();
    more("");
    operation = op;
    actionId = null;
    form.reset();
    $("action-title").textContent = expiring ? "Rotate expiring passwords" : TITLES[op];
    $("action-submit").textContent = SUBMIT[op];
    show("action-days-row", Boolean(expiring));
    show("action-auto-row", op === "auto_rotate");
    show("action-reauth-row", false);
    show("action-progress", false);
    show("action-form", true);
    form.hidden = false;
    passwordRows();
    renderPlan([]);
    $("action-summary").textContent = "Checking what will be done…";
    dialog.showModal();
    if (expiring) await listExpiring();
    else await dryRun(ids);
  }

  openers.forEach(function (button) {
    button.addEventListener("click", function () {
      open(button.dataset.actionOpen, table.selection().map(function (item) { return item.id; }), false);
    });
  });
  // Without an SDDC Manager (fleet management only) these two are not on the page.
  if ($("rotate-expiring")) $("rotate-expiring").addEventListener("click", function () { open("rotate", [], true); });
  $("action-days-apply").addEventListener("click", listExpiring);

  if ($("expiry-check")) $("expiry-check").addEventListener("click", async function () {
    try {
      await post(api.expiryCheck(envId), {});
      toast("SDDC Manager was asked for the expiry of every password; the dates arrive within a minute or two.");
    } catch (e) {
      toast(e.message, "error");
    }
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error("");
    if (!plan.length) return;
    if (plan.length > 1 && $("action-confirm").value.trim() !== String(plan.length)) {
      error("Type " + plan.length + " to confirm this action on " + plan.length + " credentials.");
      $("action-confirm").focus();
      return;
    }
    const body = { operation: operation, credential_ids: plan.map(function (item) { return item.credential_id; }) };
    if (operation === "update" && $("action-generate").checked) body.generate_password = true;
    else if (operation === "update" || operation === "remediate") {
      if (!$("action-password").value) { error("Type the password."); $("action-password").focus(); return; }
      body.password = $("action-password").value;
    }
    if (operation === "auto_rotate") {
      const enabled = $("action-auto-on").checked;
      body.auto_rotate = { enabled: enabled };
      if (enabled) body.auto_rotate.frequency_days = Number($("action-auto-days").value);
    }
    if (!$("action-reauth-row").hidden && $("action-reauth").value) body.confirm_password = $("action-reauth").value;
    $("action-submit").disabled = true;
    try {
      const queued = await post(api.actions(), body);
      $("action-password").value = "";
      $("action-reauth").value = "";
      table.select([]);
      follow(queued.id);
    } catch (e) {
      if (e.status === 403 && /confirm_password/.test(e.message)) {
        show("action-reauth-row", true);
        error("Your sign-in is older than 15 minutes: type your password to go on.");
        $("action-reauth").focus();
      } else {
        const details = Object.values(e.details || {});
        error(details.length ? details.join(" ") : e.message);
      }
    } finally {
      $("action-submit").disabled = false;
    }
  });

  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function describe(action) {
    const done = action.items.filter(function (i) { return i.state === "success"; }).length;
    const total = action.items.length;
    const where = action.operation === "fleet_update" ? "fleet management" : "SDDC Manager";
    switch (action.state) {
      case "queued": return action.error ? "Waiting: " + action.error : "Queued…";
      case "running": return "Running in " + where + "… " + (action.error || "");
      case "success": return "Done: " + total + " of " + total + " succeeded. The source is syncing to show the new passwords.";
      case "partial": return "Partly done: " + done + " of " + total + " succeeded. Where it failed, the previous password still applies; see each row.";
      case "cancelled": return "Cancelled.";
      default: return "Failed" + (action.error ? ": " + action.error : "; see the messages below.");
    }
  }

  // Which password works on the resource now, by the state of its step.
  function passwordNow(state) {
    if (state === "success") return "The new one: the portal shows it once the sync has run (fleet management's: at once).";
    if (state === "failed" || state === "cancelled") {
      return "The previous one, which SDDC Manager and the portal still hold (Reveal shows it). " +
        "If the host refuses it, the change reached the host before failing: Remediate with the password the host has.";
    }
    return "The previous one, until this step succeeds.";
  }

  function render(action) {
    $("action-state").replaceChildren(badge(action.state), " ", visible(describe(action)));
    itemsBody.replaceChildren(...action.items.map(function (item) {
      return el("tr", {},
        el("td", { className: "cell-text" }, bidi(item.hostname)),
        el("td", { className: "cell-text" }, bidi(item.username)),
        el("td", {}, visible(item.credential_type)),
        el("td", {}, badge(item.state)),
        el("td", { className: "password-now" }, passwordNow(item.state)),
        el("td", { className: "cell-text" }, item.error ? visible(item.error) : ""));
    }));
    const final = FINAL.indexOf(action.state) >= 0;
    show("action-retry", final && action.retryable);
    show("action-retry-row", final && action.retryable && (action.operation === "update" || action.operation === "remediate"));
    show("action-cancel", action.cancellable);
    return final;
  }

  async function poll() {
    try {
      const action = await get(api.action(actionId), { background: true });
      if (render(action)) {
        stop();
        options.onFinished();
        // The sync the action queued ends a moment later: show its passwords then.
        timer = setTimeout(function () { options.onFinished(); }, 3000);
        return;
      }
    } catch (e) {
      $("action-state").textContent = "Could not read the progress: " + e.message + ". Retrying…";
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function follow(id) {
    stop();
    actionId = id;
    form.hidden = true;
    show("action-progress", true);
    $("action-state").textContent = "Queued…";
    itemsBody.replaceChildren();
    // The form is gone: the progress takes the focus, not the page's body.
    $("action-state").focus();
    poll();
  }

  $("action-retry").addEventListener("click", async function () {
    const body = {};
    if (!$("action-retry-row").hidden) {
      if (!$("action-retry-password").value) { toast("Type the password for the retry.", "error"); return; }
      body.password = $("action-retry-password").value;
    }
    try {
      await post(api.actionStep(actionId, "retry"), body);
      $("action-retry-password").value = "";
      follow(actionId);
    } catch (e) {
      toast(e.message, "error");
    }
  });

  $("action-cancel").addEventListener("click", async function () {
    try {
      render(await post(api.actionStep(actionId, "cancel"), {}));
      options.onFinished();
    } catch (e) {
      toast(e.message, "error");
    }
  });

  dialog.addEventListener("close", function () {
    stop();
    // Back where the dialog was opened; when that button has gone with the selection, to
    // the table the action changed.
    const back = opener && opener.isConnected && !opener.disabled && opener.getClientRects().length ? opener : $("credentials-table");
    opener = null;
    back.focus();
  });

  // Opened from elsewhere (the "needs attention" list links here with ?act=…&credential=…).
  return { open: function (op, ids) { return open(op, ids, false); } };
}
