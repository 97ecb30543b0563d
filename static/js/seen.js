// Who saw what: "Rotate all of these…" asks the server for the plan (a dry run), lists what
// each credential gets and why some are skipped, asks to type the count, then queues the
// rotate actions and follows them until they end.

import { api } from "./api.js";
import { bidi, el, get, post, visible } from "./portal.js";
import { badge } from "./status.js";

const FINAL = ["success", "partial", "failed", "cancelled"];
const POLL_MS = 1500;
const STATE_TEXT = { planned: "New random password", later: "Next run", skipped: "Skipped" };

const root = document.getElementById("seen");
const opener = document.getElementById("seen-rotate-open");
const dialog = document.getElementById("seen-rotate-dialog");

if (root && opener && dialog) {
  const $ = function (id) { return document.getElementById(id); };
  const request = { person: root.dataset.person };
  if (root.dataset.since) request.since = root.dataset.since;
  if (root.dataset.until) request.until = root.dataset.until;
  let planned = 0;
  let timer = null;

  function show(id, on) { $(id).hidden = !on; }

  function error(message) {
    $("seen-rotate-error").textContent = message || "";
    show("seen-rotate-error", Boolean(message));
  }

  function renderPlan(data) {
    const order = { planned: 0, later: 1, skipped: 2 };
    const items = data.items.slice().sort(function (a, b) { return order[a.state] - order[b.state]; });
    $("seen-rotate-plan").querySelector("tbody").replaceChildren(...items.map(function (item) {
      const what = item.state === "skipped" ? visible(item.reason || "") : STATE_TEXT[item.state];
      return el("tr", {},
        el("td", { className: "cell-text" }, bidi(item.environment || "")),
        el("td", { className: "cell-text" }, bidi(item.hostname || "")),
        el("td", { className: "cell-text" }, bidi(item.username || ""), " (" + visible(item.credential_type || "") + ")"),
        el("td", {}, what));
    }));
    planned = data.planned;
    const actions = data.actions.length;
    $("seen-rotate-summary").textContent = planned === 0 ? "Nothing to rotate: every credential is skipped (see why below)." :
      planned + " credential" + (planned === 1 ? "" : "s") + " will get a new random password from SDDC Manager, in " +
      actions + " action" + (actions === 1 ? "" : "s") + " (one per environment and 500 credentials); " +
      data.skipped + " skipped.";
    $("seen-rotate-more").textContent = data.later ? data.later + " more wait for the next run: once these actions are queued, open Rotate all of these… again." : "";
    show("seen-rotate-more", Boolean(data.later));
    $("seen-rotate-confirm-label").textContent = "Type " + planned + " to confirm";
    show("seen-rotate-confirm-row", planned > 1);
    $("seen-rotate-submit").disabled = planned === 0;
  }

  opener.addEventListener("click", async function () {
    if (timer) clearTimeout(timer);
    $("seen-rotate-form").reset();
    show("seen-rotate-form", true);
    show("seen-rotate-progress", false);
    show("seen-rotate-reauth-row", false);
    show("seen-rotate-confirm-row", false);
    $("seen-rotate-submit").disabled = true;
    error("");
    $("seen-rotate-summary").textContent = "Checking what will be done…";
    dialog.showModal();
    try {
      renderPlan(await post(api.seenRotate(), { ...request, dry_run: true }));
    } catch (e) {
      $("seen-rotate-summary").textContent = "";
      error(e.message);
    }
  });

  $("seen-rotate-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    error("");
    if (planned > 1 && $("seen-rotate-confirm").value.trim() !== String(planned)) {
      error("Type " + planned + " to confirm the rotation of " + planned + " passwords.");
      $("seen-rotate-confirm").focus();
      return;
    }
    const body = { ...request };
    if (!$("seen-rotate-reauth-row").hidden && $("seen-rotate-reauth").value) body.confirm_password = $("seen-rotate-reauth").value;
    $("seen-rotate-submit").disabled = true;
    try {
      const queued = await post(api.seenRotate(), body);
      $("seen-rotate-reauth").value = "";
      follow(queued.actions);
    } catch (e) {
      if (e.status === 403 && /confirm_password/.test(e.message)) {
        show("seen-rotate-reauth-row", true);
        error("Your sign-in is older than 15 minutes: type your password to go on.");
        $("seen-rotate-reauth").focus();
      } else {
        const details = Object.values(e.details || {});
        error(details.length ? details.join(" ") : e.message);
      }
    } finally {
      $("seen-rotate-submit").disabled = planned === 0;
    }
  });

  function follow(actions) {
    show("seen-rotate-form", false);
    show("seen-rotate-progress", true);
    const rows = {};
    $("seen-rotate-actions").replaceChildren(...actions.map(function (action) {
      const state = el("span", {}, badge("queued"));
      rows[action.id] = state;
      return el("li", {}, "Action " + action.id + ": ", bidi(action.environment), ", " +
        action.credentials + " credential" + (action.credentials === 1 ? "" : "s") + " ", state);
    }));
    $("seen-rotate-state").textContent = actions.length + " rotate action" + (actions.length === 1 ? " is" : "s are") +
      " queued; SDDC Manager carries them out one environment at a time.";
    $("seen-rotate-state").focus();
    poll(actions.map(function (action) { return action.id; }), rows);
  }

  async function poll(ids, rows) {
    const open = [];
    for (const id of ids) {
      try {
        const action = await get(api.action(id), { background: true });
        rows[id].replaceChildren(badge(action.state));
        if (FINAL.indexOf(action.state) < 0) open.push(id);
      } catch (e) {
        rows[id].replaceChildren(e.message);
      }
    }
    if (open.length && dialog.open) timer = setTimeout(function () { poll(open, rows); }, POLL_MS);
    else if (!open.length) $("seen-rotate-state").textContent = "Every action has ended. Reload the page to see the passwords that changed since.";
  }

  dialog.addEventListener("close", function () { if (timer) clearTimeout(timer); });
}
