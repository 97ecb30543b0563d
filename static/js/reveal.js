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
        out.replaceChildren(el("span", { className: "secret" }, password),
          el("span", { className: "hint secret-hint" }, "Hides in " + revealSeconds() + " s"));
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
