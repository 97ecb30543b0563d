// The access requests page: the approver's inbox (approve, deny with a reason), the open
// windows (revoke), and the user's own requests (cancel, end early). Through the API only;
// each outcome is announced in the page's live status.

import { api } from "./api.js";
import { bidi, el, get, headRow, post, timeEl, toast, visible } from "./portal.js";
import { badge } from "./status.js";

const statusLine = document.getElementById("requests-status");
const STATE_LABELS = { approved: "Approved", pending: "Pending", denied: "Denied", revoked: "Revoked",
  expired: "Expired", closed: "Closed", cancelled: "Cancelled" };

function say(text) { statusLine.textContent = text; }

function subject(item) {
  return el("span", {}, bidi(item.hostname), " / ", bidi(item.username));
}

function stateCell(item) {
  const cell = el("td", { dataset: { label: "State" } }, badge(item.state, STATE_LABELS[item.state] || item.state));
  if (item.kind === "break_glass") cell.append(" ", badge("break_glass", "Break-glass"));
  if (item.closed_reason) cell.append(el("div", { className: "muted" }, visible(item.closed_reason)));
  return cell;
}

function reasonCell(item) {
  return el("td", { className: "cell-text", dataset: { label: "Reason" } }, visible(item.reason),
    item.ticket ? el("div", { className: "muted" }, "Ticket " + visible(item.ticket)) : null,
    item.decision_reason ? el("div", { className: "muted" }, "Decision: " + visible(item.decision_reason)) : null);
}

function stepButton(item, step, text, extraClass) {
  return el("button", { type: "button", className: "small" + (extraClass ? " " + extraClass : ""),
    dataset: { step: step, id: item.id }, "aria-label": text + ": " + item.requester + ", " + visible(item.hostname) + " / " + visible(item.username) }, text);
}

function table(caption, items, columns, cells) {
  const body = el("tbody");
  items.forEach(function (item) { body.append(el("tr", { dataset: { id: item.id } }, ...cells(item))); });
  return el("div", { className: "table-wrap" }, el("table", { className: "data stack" },
    el("caption", { className: "sr-only" }, caption), headRow(...columns), body));
}

function fill(id, caption, items, columns, cells) {
  const box = document.getElementById(id);
  box.replaceChildren(items.length ? table(caption, items, columns, cells) : el("p", { className: "muted" }, box.dataset.empty));
}

let me = null;
const known = new Map(); // id -> request shown

async function load() {
  try {
    const [pending, open, mine, who] = await Promise.all([
      get(api.requests({ state: "pending" })), get(api.requests({ state: "open" })),
      get(api.requests({ mine: "true" })), me ? Promise.resolve(me) : get(api.me())]);
    me = who;
    known.clear();
    [pending, open, mine].forEach(function (list) { list.items.forEach(function (item) { known.set(String(item.id), item); }); });
    const inbox = pending.items.filter(function (item) { return item.requester !== me.username; });
    fill("inbox", "Requests waiting for your decision", inbox,
      ["Credential", "Requester", "Reason", "Minutes", "Asked", "Actions"], function (item) {
        return [el("td", { className: "cell-text" }, subject(item)),
          el("td", { dataset: { label: "Requester" } }, item.requester), reasonCell(item),
          el("td", { dataset: { label: "Minutes" } }, String(item.minutes)),
          el("td", { dataset: { label: "Asked" } }, timeEl(item.created_at)),
          el("td", { className: "row-actions" }, el("div", { className: "buttons" },
            stepButton(item, "approve", "Approve", "primary"), stepButton(item, "deny", "Deny", "danger")))];
      });
    const glass = open.items.filter(function (item) { return item.kind === "break_glass" && item.requester !== me.username; });
    fill("glass", "Break-glass windows open now", glass,
      ["Credential", "Requester", "Reason", "Opened", "Closes", "Actions"], function (item) {
        return [el("td", { className: "cell-text" }, subject(item)),
          el("td", { dataset: { label: "Requester" } }, item.requester, " ", badge("break_glass", "Break-glass")), reasonCell(item),
          el("td", { dataset: { label: "Opened" } }, timeEl(item.opens_at)),
          el("td", { dataset: { label: "Closes" } }, timeEl(item.closes_at)),
          el("td", { className: "row-actions" }, stepButton(item, "revoke", "Revoke", "danger"))];
      });
    fill("open-windows", "Open windows", open.items,
      ["Credential", "Requester", "Approved by", "Closes", "Actions"], function (item) {
        return [el("td", { className: "cell-text" }, subject(item)),
          el("td", { dataset: { label: "Requester" } }, item.requester, item.kind === "break_glass" ? badge("break_glass", "Break-glass") : null),
          el("td", { dataset: { label: "Approved by" } }, item.decider || "—"),
          el("td", { dataset: { label: "Closes" } }, timeEl(item.closes_at)),
          el("td", { className: "row-actions" }, stepButton(item, "revoke", item.requester === me.username ? "End now" : "Revoke", "danger"))];
      });
    fill("mine", "Your requests", mine.items,
      ["Credential", "State", "Reason", "Asked", "Decided by", "Actions"], function (item) {
        const live = item.state === "pending" || item.open;
        return [el("td", { className: "cell-text" }, subject(item)), stateCell(item), reasonCell(item),
          el("td", { dataset: { label: "Asked" } }, timeEl(item.created_at)),
          el("td", { dataset: { label: "Decided by" } }, item.decider || "—"),
          el("td", { className: "row-actions" }, live ? stepButton(item, "revoke", item.state === "pending" ? "Cancel" : "End now") : "")];
      });
    say((inbox.length === 0 ? "Nothing waits for your decision." :
      inbox.length + " request" + (inbox.length === 1 ? " waits" : "s wait") + " for your decision.") +
      (glass.length ? " " + glass.length + " break-glass window" + (glass.length === 1 ? " is" : "s are") + " open." : ""));
  } catch (e) {
    say("Could not load the requests: " + e.message);
  }
}

// Denying asks for the reason in a small dialog, as the API requires one.
function askReason(item, opener) {
  return new Promise(function (resolve) {
    const field = el("textarea", { id: "deny-reason", rows: "3", maxlength: "1000", required: true });
    const ok = el("button", { type: "submit", className: "danger solid" }, "Deny");
    const cancel = el("button", { type: "button" }, "Cancel");
    const form = el("form", {},
      el("div", { className: "dialog-head" }, el("h2", { id: "deny-title" }, "Deny the request")),
      el("div", { className: "dialog-body" },
        el("p", {}, item.requester + " asked for " + visible(item.hostname) + " / " + visible(item.username) + "."),
        el("label", { for: "deny-reason" }, "Reason (the requester sees it)"), field),
      el("div", { className: "dialog-foot" }, cancel, ok));
    const dialog = el("dialog", { "aria-labelledby": "deny-title" }, form);
    let answer = null;
    form.addEventListener("submit", function (event) { event.preventDefault(); answer = field.value.trim() || null; dialog.close(); });
    cancel.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { dialog.remove(); if (opener.isConnected) opener.focus(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    field.focus();
  });
}

const DONE = { approve: "Approved: the window is open for ", deny: "Denied: ", revoke: "Ended: " };

document.getElementById("access-requests").addEventListener("click", async function (event) {
  const button = event.target.closest("button[data-step]");
  if (!button) return;
  const step = button.dataset.step;
  const item = known.get(button.dataset.id);
  const label = visible(item.hostname) + " / " + visible(item.username);
  let body = {};
  if (step === "deny") {
    const reason = await askReason(item, button);
    if (!reason) return;
    body = { reason: reason };
  }
  try {
    const done = await post(api.requestStep(button.dataset.id, step), body);
    await load();
    say(DONE[step] + (step === "approve" ? done.requester + ", " + done.minutes + " minutes." : label + "."));
    document.getElementById("requests-refresh").focus();
  } catch (e) {
    toast("Could not " + step + ": " + e.message, "error");
    say("Could not " + step + ": " + e.message);
  }
});
document.getElementById("requests-refresh").addEventListener("click", function () { say("Loading…"); load(); });
load();
