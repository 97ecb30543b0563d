// Dual control on the pages: the badges of a sensitive credential (what it needs, an open
// window, a rotation owed), and the dialog that asks for access (or breaks the glass).
// Everything goes through the API; the answer is announced in the toasts' live region.

import { api } from "./api.js";
import { el, post, timeEl, toast, visible } from "./portal.js";
import { badge } from "./status.js";

const NEEDS = { approval: "Needs approval", checkout: "Needs check-out" };

// The badges of a credential row (null when it is not sensitive and owes nothing).
export function controlBadges(item) {
  const requires = item.requires || [];
  const needs = item.needs || [];
  const box = el("div", { className: "control-badges" });
  requires.forEach(function (need) {
    if (needs.indexOf(need) >= 0) box.append(badge("sensitive", NEEDS[need] || need));
  });
  const access = item.access;
  if (access && access.state === "pending") box.append(badge("pending", "Requested"));
  if (requires.indexOf("approval") >= 0 && needs.indexOf("approval") < 0) {
    box.append(badge(access && access.kind === "break_glass" ? "break_glass" : "window", "Access open"));
    if (access && access.state === "open") box.append(el("span", { className: "muted" }, "until "), timeEl(access.closes_at));
  }
  if (item.rotation_due) box.append(badge("rotation-due", "Rotation due"));
  return box.childNodes.length ? box : null;
}

// Whether the row offers "Request access" instead of the password buttons.
export function needsApproval(item) {
  return (item.needs || []).indexOf("approval") >= 0;
}

// The dialog that asks for access to `item`; onDone(request) once the request is made.
export function requestAccess(item, opener, onDone) {
  const name = visible(item.hostname) + " / " + visible(item.username);
  const reason = el("textarea", { id: "access-reason", name: "reason", rows: "3", maxlength: "1000", required: true, "aria-describedby": "access-reason-error" });
  const minutes = el("input", { id: "access-minutes", name: "minutes", type: "number", min: "1", max: "480", value: "30", required: true });
  const ticket = el("input", { id: "access-ticket", name: "ticket", type: "text", maxlength: "128" });
  const glass = el("input", { id: "access-break-glass", name: "break_glass", type: "checkbox" });
  const error = el("p", { className: "field-error", id: "access-reason-error", role: "alert" });
  // Break-glass from a sign-in over 15 minutes old asks for the password again.
  const reauth = el("input", { id: "access-reauth", name: "confirm_password", type: "password", autocomplete: "current-password" });
  const reauthRow = el("div", { hidden: true }, el("label", { for: "access-reauth" }, "Your password (break-glass needs a recent sign-in)"), reauth);
  const submit = el("button", { type: "submit", className: "primary" }, "Ask for access");
  const cancel = el("button", { type: "button" }, "Cancel");
  const form = el("form", { className: "request-form" },
    el("div", { className: "dialog-head" }, el("h2", { id: "access-title" }, "Ask for access")),
    el("div", { className: "dialog-body" },
      el("p", {}, "The password of ", el("strong", {}, name), " needs a second person's approval. Approvers of its environment are told; once one approves, only you may reveal or copy it for the time you ask."),
      el("label", { for: "access-reason" }, "Reason"), reason, error,
      el("label", { for: "access-minutes" }, "Minutes (at most 480)"), minutes,
      el("label", { for: "access-ticket" }, "Ticket (optional)"), ticket,
      item.break_glass === false ? null : el("label", { className: "choice" }, glass,
        "Emergency: break the glass (opens at once without approval; every approver is alerted and the password is rotated afterwards)"),
      reauthRow),
    el("div", { className: "dialog-foot" }, cancel, submit));
  const dialog = el("dialog", { "aria-labelledby": "access-title" }, form);
  glass.addEventListener("change", function () { submit.textContent = glass.checked ? "Break the glass" : "Ask for access"; });
  cancel.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () { dialog.remove(); if (opener && opener.isConnected) opener.focus(); });
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.textContent = "";
    reason.removeAttribute("aria-invalid");
    const body = { reason: reason.value.trim(), minutes: parseInt(minutes.value, 10) || 0 };
    if (ticket.value.trim()) body.ticket = ticket.value.trim();
    if (glass.checked) body.break_glass = true;
    if (glass.checked && !reauthRow.hidden && reauth.value) body.confirm_password = reauth.value;
    try {
      const made = await post(api.accessRequests(item.id), body);
      dialog.close();
      toast(made.kind === "break_glass"
        ? "Break-glass access is open until " + made.closes_at + "; every approver was alerted."
        : "Access requested; approvers were told. You can reveal once one approves.");
      if (onDone) onDone(made);
    } catch (e) {
      reauth.value = "";
      if (e.status === 403 && /confirm_password/.test(e.message)) {
        reauthRow.hidden = false;
        error.textContent = "Your sign-in is older than 15 minutes: type your password to break the glass.";
        reauth.focus();
        return;
      }
      const field = Object.keys(e.details || {}).find(function (key) { return key !== "field"; });
      error.textContent = e.message + (field && e.details[field] && field !== "needs" ? " " + field + ": " + e.details[field] : "");
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}
