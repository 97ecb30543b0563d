// Check-out and check-in on the pages: who holds a credential until when and a rotation that
// failed (badges), the Check out / Check in / Take back buttons of a row, the dialog that asks
// for the time and the reason, and the environment's list of check-outs and owed rotations.
// Everything goes through the API; each outcome is announced in the toasts' live region.

import { api } from "./api.js";
import { bidi, confirmDialog, el, exactTime, get, headRow, post, timeEl, toast, visible } from "./portal.js";
import { actionButton } from "./reveal.js";
import { badge } from "./status.js";

const DEFAULT_MINUTES = 60;
const MIN_MINUTES = 5;
const MAX_MINUTES = 1440;

function subject(item) {
  return visible(item.hostname) + " / " + visible(item.username);
}

// The badges of a row: its check-out (yours or someone's, until when) and a rotation owed
// that failed (attempts and SDDC Manager's message). Null when there is nothing to say.
export function checkoutBadges(item) {
  const box = el("div", { className: "control-badges checkout-badges" });
  const held = item.checkout;
  if (held) {
    const who = held.mine ? "you" : held.holder;
    box.append(badge(held.mine ? "mine" : "held", "Checked out"),
      el("span", { className: "checkout-holder" }, " by ", bidi(who), " until ", el("time", { datetime: held.until }, exactTime(held.until))));
  }
  const owed = item.needs_rotation;
  if (owed && owed.attempts > 0) {
    box.append(badge("failed", "Rotation failed"),
      el("span", { className: "hint rotation-error" }, " " + owed.attempts + " attempt" + (owed.attempts === 1 ? "" : "s") + (owed.error ? ": " + visible(owed.error) : "") + "; tried again"));
  } else if (owed && !item.rotation_due) {
    box.append(badge("rotation-due", "Needs rotation"));
  }
  return box.childNodes.length ? box : null;
}

// The row's check-out buttons: Check out (anyone who may reveal, on SDDC Manager's present
// credentials nobody holds), Check in (the holder), Take back (managers, someone else's).
export function checkoutButtons(item, canReveal, canManage) {
  const held = item.checkout;
  const buttons = [];
  if (!held && canReveal && item.source === "manager" && item.status === "present") {
    buttons.push(actionButton("checkout", "Check out…", "Check out ", item));
  }
  if (held && held.mine) buttons.push(actionButton("checkin", "Check in", "Check in ", item));
  if (held && !held.mine && canManage) buttons.push(actionButton("take-back", "Take back", "Take back the check-out of ", item));
  return buttons;
}

// A click on one of those buttons; onDone() once the state changed (reload the rows).
export function onCheckoutAction(action, item, button, onDone) {
  if (action === "checkout") checkOutDialog(item, button, onDone);
  else if (action === "checkin") endCheckout(item, button, "checkin", onDone);
  else if (action === "take-back") endCheckout(item, button, "take-back", onDone);
}

function rotationText(ended) {
  return ended.rotation === "queued"
    ? " SDDC Manager rotates the password now; the new one arrives with the next sync."
    : " The password is rotated as soon as SDDC Manager is free.";
}

async function endCheckout(item, button, how, onDone) {
  if (button.getAttribute("aria-busy") === "true") return;
  if (how === "take-back") {
    const yes = await confirmDialog("Take back the check-out?",
      visible(item.checkout.holder) + " holds " + subject(item) + " until " + exactTime(item.checkout.until) +
      ". Taking it back ends their exclusive use now, and SDDC Manager rotates the password they saw.", "Take back");
    if (!yes) return;
  }
  button.setAttribute("aria-busy", "true");
  try {
    const ended = await post(how === "checkin" ? api.checkin(item.checkout.id) : api.takeBack(item.checkout.id));
    toast((how === "checkin" ? "Checked in " : "Took back the check-out of ") + subject(item) + "." + rotationText(ended));
    if (onDone) onDone();
  } catch (e) {
    toast("Could not " + (how === "checkin" ? "check in" : "take back") + ": " + e.message, "error");
  } finally {
    button.removeAttribute("aria-busy");
  }
}

function checkOutDialog(item, opener, onDone) {
  const minutes = el("input", { id: "checkout-minutes", name: "minutes", type: "number", min: String(MIN_MINUTES), max: String(MAX_MINUTES), value: String(DEFAULT_MINUTES), required: true, inputmode: "numeric", "aria-describedby": "checkout-minutes-error" });
  const reason = el("textarea", { id: "checkout-reason", name: "reason", rows: "3", maxlength: "1000", required: true, "aria-describedby": "checkout-reason-error" });
  const errors = {
    minutes: el("p", { className: "field-error", id: "checkout-minutes-error" }),
    reason: el("p", { className: "field-error", id: "checkout-reason-error" }),
  };
  const general = el("p", { className: "field-error", role: "alert" });
  const submit = el("button", { type: "submit", className: "primary" }, "Check out");
  const cancel = el("button", { type: "button" }, "Cancel");
  const form = el("form", { className: "checkout-form", noValidate: true },
    el("div", { className: "dialog-head" }, el("h2", { id: "checkout-title" }, "Check out")),
    el("div", { className: "dialog-body" },
      el("p", {}, "Only you may reveal or copy the password of ", el("strong", {}, subject(item)),
        " until you check it in or the time runs out; then SDDC Manager rotates it, so the password you saw stops working."),
      el("label", { for: "checkout-minutes" }, "Minutes (" + MIN_MINUTES + " to " + MAX_MINUTES + ")"), minutes, errors.minutes,
      el("label", { for: "checkout-reason" }, "Reason"), reason, errors.reason, general),
    el("div", { className: "dialog-foot" }, cancel, submit));
  const dialog = el("dialog", { "aria-labelledby": "checkout-title", className: "checkout-dialog" }, form);
  cancel.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () { dialog.remove(); if (opener && opener.isConnected) opener.focus(); });
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    Object.values(errors).forEach(function (node) { node.textContent = ""; });
    general.textContent = "";
    [minutes, reason].forEach(function (input) { input.removeAttribute("aria-invalid"); });
    const body = { minutes: parseInt(minutes.value, 10) || 0, reason: reason.value.trim() };
    try {
      const made = await post(api.checkout(item.id), body);
      dialog.close();
      toast("Checked out " + subject(item) + " until " + exactTime(made.due_at) + ". Check it in when you are done.");
      if (onDone) onDone();
    } catch (e) {
      const fields = Object.keys(e.details || {}).filter(function (key) { return key in errors; });
      fields.forEach(function (key) {
        errors[key].textContent = String(e.details[key]);
        (key === "minutes" ? minutes : reason).setAttribute("aria-invalid", "true");
      });
      if (fields.length) (fields[0] === "minutes" ? minutes : reason).focus();
      else general.textContent = e.message;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

// The environment page's card: its active check-outs and the credentials whose rotation is
// owed (hidden while there are none). Returns a function that loads it again.
export function initCheckoutPanel(environmentId) {
  const card = document.getElementById("checkouts-card");
  if (!card) return function () {};
  const held = document.getElementById("checkouts-active");
  const owed = document.getElementById("checkouts-owed");

  async function load() {
    try {
      const [checkouts, rotations] = await Promise.all([
        get(api.checkouts({ state: "active", environment_id: environmentId })),
        get(api.needsRotation({ environment_id: environmentId })),
      ]);
      held.replaceChildren(checkouts.items.length ? table("Active check-outs",
        headRow("Host", "User", "Holder", "Since", "Until", "Reason"),
        checkouts.items.map(function (c) {
          return el("tr", {},
            el("td", { className: "cell-text" }, bidi(c.hostname)),
            el("td", { className: "cell-text" }, bidi(c.username)),
            el("td", { className: "cell-text" }, bidi(c.holder)),
            el("td", {}, timeEl(c.created_at)),
            el("td", {}, el("time", { datetime: c.due_at }, exactTime(c.due_at))),
            el("td", { className: "cell-text" }, visible(c.reason)));
        })) : el("p", { className: "muted" }, "Nobody holds a check-out here."));
      owed.replaceChildren(rotations.items.length ? table("Rotations owed",
        headRow("Host", "User", "Since", "Why", "Attempts", "Last error"),
        rotations.items.map(function (r) {
          return el("tr", {},
            el("td", { className: "cell-text" }, bidi(r.hostname)),
            el("td", { className: "cell-text" }, bidi(r.username)),
            el("td", {}, timeEl(r.since)),
            el("td", {}, visible((r.reason || "").replace(/_/g, " "))),
            el("td", {}, String(r.attempts)),
            el("td", { className: "cell-text" }, r.error ? visible(r.error) : el("span", { className: "muted" }, "—")));
        })) : el("p", { className: "muted" }, "No rotation is owed here."));
      card.hidden = !checkouts.items.length && !rotations.items.length;
    } catch (e) {
      card.hidden = false;
      held.replaceChildren(el("p", { className: "field-error" }, "Could not load the check-outs: " + e.message));
    }
  }

  load();
  return load;
}

function table(caption, head, rows) {
  return el("table", { className: "data" }, el("caption", { className: "sr-only" }, caption), head, el("tbody", {}, ...rows));
}

// The check-outs held while a history entry's password was current, for the history dialog.
export function heldByCell(entry) {
  const held = entry.held_by || [];
  if (!held.length) return el("td", {}, el("span", { className: "muted" }, "—"));
  return el("td", { className: "cell-text" }, ...held.map(function (h, index) {
    return el("span", { className: "held-by" }, index ? "; " : "", bidi(h.holder), " ", timeEl(h.from), " – ",
      h.until ? timeEl(h.until) : "now", h.end_reason ? " (" + h.end_reason.replace(/_/g, " ") + ")" : "");
  }));
}
