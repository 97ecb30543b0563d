// Passwords on screen and in the clipboard, for the reveal delay the server sets, then gone.

import { api } from "./api.js";
import { config, el, post, toast, visible } from "./portal.js";

export function revealSeconds() {
  return config.revealSeconds;
}

// Copy a secret, then try to clear the clipboard if it still holds it after the delay.
export async function copySecret(text) {
  await navigator.clipboard.writeText(text);
  setTimeout(async function () {
    let current = null;
    try { current = await navigator.clipboard.readText(); } catch (e) { current = text; }
    if (current === text) {
      try { await navigator.clipboard.writeText(""); } catch (e) { /* page not focused */ }
    }
  }, revealSeconds() * 1000);
}

// The readable view of a revealed password, for consoles that refuse paste: large monospace
// characters in groups of four with their positions, and each kind of character (capital,
// small letter, digit, symbol, space) shown its own way, not by colour alone. One dialog for
// the page; it empties when it closes or when the password hides. Text only, never in an
// attribute.
let readableKey = null;

const KINDS = [
  [/[A-Z]/, "ch-upper"], [/[a-z]/, "ch-lower"], [/[0-9]/, "ch-digit"], [/ /, "ch-space"],
];

function kindOf(char) {
  for (const [pattern, name] of KINDS) if (pattern.test(char)) return name;
  return "ch-symbol";
}

function readableDialog() {
  let dialog = document.getElementById("readable-dialog");
  if (dialog) return dialog;
  const close = el("button", { type: "button", className: "small" }, "Close");
  dialog = el("dialog", { id: "readable-dialog", className: "readable-dialog", "aria-labelledby": "readable-title" },
    el("div", { className: "dialog-head" }, el("h2", { id: "readable-title" }, "Password, readable"), close),
    el("div", { className: "dialog-body" },
      el("p", { className: "readable-password", id: "readable-password" }),
      el("p", { className: "hint readable-legend" },
        el("span", { className: "ch-upper" }, "A"), " capital · ",
        el("span", { className: "ch-lower" }, "a"), " small · ",
        el("span", { className: "ch-digit" }, "1"), " digit · ",
        el("span", { className: "ch-symbol" }, "#"), " symbol · ",
        el("span", { className: "ch-space" }, "\u2423"), " space. Small numbers count the characters."),
      el("p", { className: "hint", id: "readable-length" })));
  close.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () {
    document.getElementById("readable-password").replaceChildren();
    document.getElementById("readable-length").textContent = "";
    readableKey = null;
  });
  document.body.append(dialog);
  return dialog;
}

function closeReadable() {
  const dialog = document.getElementById("readable-dialog");
  if (dialog && dialog.open) dialog.close();
}

function openReadable(key, password, opener) {
  const dialog = readableDialog();
  const chars = Array.from(password);
  const groups = [];
  for (let start = 0; start < chars.length; start += 4) {
    const group = el("span", { className: "ch-group" },
      el("span", { className: "ch-position", "aria-hidden": "true" }, String(start + 1)));
    chars.slice(start, start + 4).forEach(function (char) {
      group.append(el("span", { className: kindOf(char) }, char === " " ? "\u2423" : char));
    });
    groups.push(group);
  }
  document.getElementById("readable-password").replaceChildren(...groups);
  document.getElementById("readable-length").textContent = chars.length + " characters.";
  readableKey = key;
  dialog.addEventListener("close", function () { if (opener.isConnected) opener.focus(); }, { once: true });
  if (!dialog.open) dialog.showModal();
}

// Reveal buttons (toggles, created with aria-pressed="false"): the first press fetches and
// shows a password in `out` (a polite live region) until the delay ends or the button is
// pressed again. Passwords go into textContent only, exactly as stored. The button is never
// disabled while it waits: a disabled button drops the keyboard focus to the page body.
export function revealer() {
  const shown = new Map(); // key -> { out, button, timer }
  const pending = new Set(); // keys whose password is on its way

  function hide(key) {
    const entry = shown.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.out.replaceChildren();
    entry.button.setAttribute("aria-pressed", "false");
    if (readableKey === key) closeReadable();
    shown.delete(key);
  }

  async function toggle(key, button, out, fetchPassword) {
    if (shown.has(key)) { hide(key); return; }
    if (pending.has(key)) return;
    pending.add(key);
    button.setAttribute("aria-busy", "true");
    try {
      const password = await fetchPassword();
      if (password === null || password === undefined) {
        out.replaceChildren(el("span", { className: "muted" }, "No password stored."));
      } else {
        const large = el("button", { type: "button", className: "small link-button readable-open" }, "Readable view");
        large.addEventListener("click", function () { openReadable(key, password, large); });
        out.replaceChildren(el("span", { className: "secret" }, password),
          el("span", { className: "hint secret-hint" }, "Hides in " + revealSeconds() + " s"), large);
      }
      button.setAttribute("aria-pressed", "true");
      shown.set(key, { out: out, button: button, timer: setTimeout(function () { hide(key); }, revealSeconds() * 1000) });
    } catch (e) {
      toast("Could not reveal: " + e.message, "error");
    } finally {
      pending.delete(key);
      button.removeAttribute("aria-busy");
    }
  }

  function hideAll() { Array.from(shown.keys()).forEach(hide); }

  return { toggle: toggle, hideAll: hideAll };
}

// One password from the server, audited as a reveal or (purpose "copy") as a copy.
export async function fetchPassword(id, purpose) {
  const data = await post(api.reveal(id), { purpose: purpose });
  return data.password;
}

// Copy and Copy all buttons: copy the password of `item` (with its host and user first when
// withContext) and say so. The button stays enabled (and focused) while it works; a second
// press meanwhile is ignored.
export async function copyPassword(button, item, withContext) {
  if (button.getAttribute("aria-busy") === "true") return;
  button.setAttribute("aria-busy", "true");
  try {
    const password = await fetchPassword(item.id, "copy");
    if (password === null || password === undefined) { toast("No password stored for this credential.", "error"); return; }
    await copySecret(withContext ? item.hostname + "\n" + item.username + "\n" + password : password);
    toast((withContext ? "Host, user and password" : "Password") + " copied; the clipboard is cleared in " + revealSeconds() + " s.");
  } catch (e) {
    toast("Could not copy: " + e.message, "error");
  } finally {
    button.removeAttribute("aria-busy");
  }
}

// The buttons of a row: Reveal (a toggle) and Copy, named for the host and user they act on.
export function actionButton(action, text, aria, item, pressed) {
  const label = visible(item.hostname) + " / " + visible(item.username);
  return el("button", { type: "button", className: "small", dataset: { action: action }, "aria-label": aria + label, "aria-pressed": pressed }, text);
}
