// Shared page helpers, imported by every page module. No inline scripts anywhere: the
// Content-Security-Policy forbids them. Text from SDDC Manager is hostile: it only ever reaches
// the page through textContent, with invisible direction overrides made visible (visible()).

import { api, pages } from "./api.js";

// Labels and other values the server owns, rendered by base.html as a JSON block (data, never run).
export const config = JSON.parse(document.getElementById("portal-config")?.textContent || "{}");

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

export function signInAgain() {
  window.location.assign(pages.signIn(window.location.pathname + window.location.search));
}

// opts.background: an automatic refresh, not the operator's doing; the server does not
// count it as activity, so an unattended page still reaches the idle timeout.
export async function request(method, url, body, opts) {
  const options = {
    method: method,
    credentials: "same-origin",
    headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
  };
  if (opts && opts.background) options.headers["X-Portal-Background"] = "1";
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  if (response.status === 401) {
    signInAgain();
    throw new Error("Signed out");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error : "Request failed (" + response.status + ")";
    const error = new Error(message);
    error.status = response.status;
    error.details = data && data.details ? data.details : {};
    throw error;
  }
  return data;
}

export const get = (url, opts) => request("GET", url, undefined, opts);
export const post = (url, body) => request("POST", url, body === undefined ? {} : body);

// el("td", {className: "x", title: "..."}, "text", otherNode): never parses HTML.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Direction overrides (U+202A-U+202E, U+2066-U+2069) and NUL would silently reorder or cut a
// name on screen; show them as escapes, as Python's unicode_escape (and the audit log) does.
const INVISIBLE = /[\u0000\u202a-\u202e\u2066-\u2069]/g;

export function visible(text) {
  const value = text === null || text === undefined ? "" : String(text);
  return value.replace(INVISIBLE, function (ch) {
    const code = ch.charCodeAt(0);
    return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
  });
}

// A name from SDDC Manager: escaped by visible(), isolated in <bdi> so right-to-left text does
// not reorder its neighbours; very long values are clamped on screen (copies use the full value).
export function bidi(text) {
  const value = visible(text);
  return el("bdi", value.length > 120 ? { className: "clamp", title: value.slice(0, 2000) } : {}, value);
}

// A host name that wraps only after its dots, never inside a label ("esx-01." "sfo." ...);
// one too long to clamp wraps anywhere, as bidi() does.
export function hostName(text) {
  const value = visible(text);
  if (value.length > 120 || value.indexOf(".") < 0) return bidi(text);
  const node = el("bdi", { className: "host" });
  value.split(/(?<=\.)/).forEach(function (part, index) {
    if (index > 0) node.append(el("wbr"));
    node.append(el("span", {}, part));
  });
  return node;
}

// headRow("Host", "User") or, with a class, headRow(["Host", "col-host"], "User").
export function headRow(...labels) {
  return el("thead", {}, el("tr", {}, ...labels.map(function (t) {
    return Array.isArray(t) ? el("th", { scope: "col", className: t[1] }, t[0]) : el("th", { scope: "col" }, t);
  })));
}

const UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
const rtf = typeof Intl !== "undefined" && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat("en", { numeric: "auto" }) : null;

export function relTime(iso) {
  if (!iso) return "—";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  if (Number.isNaN(seconds)) return iso;
  if (Math.abs(seconds) < 45) return seconds >= 0 ? "in a few seconds" : "just now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      const value = Math.round(seconds / size);
      return rtf ? rtf.format(value, unit) : value + " " + unit + "(s)";
    }
  }
  return iso;
}

// The exact time, "2026-03-01 14:03 CET", in the browser's time zone or, when the user prefers
// (config.timeZone "utc"), in UTC.
export function exactTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
  if (config.timeZone === "utc") options.timeZone = "UTC";
  const parts = {};
  new Intl.DateTimeFormat("en-US", options).formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
  return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + " " + parts.timeZoneName;
}

// A time as text a keyboard, a finger and a screen reader all reach: "3 days ago" and, below
// it, the exact time (not only in a hover tooltip).
export function timeEl(iso, empty) {
  if (!iso) return el("span", { className: "muted" }, empty || "—");
  return el("time", { datetime: iso, className: "when" },
    el("span", { dataset: { rel: "1" } }, relTime(iso)),
    el("span", { className: "exact" }, exactTime(iso)));
}

function refreshTimes() {
  document.querySelectorAll("time.when").forEach(function (node) {
    node.querySelector("[data-rel]").textContent = relTime(node.getAttribute("datetime"));
  });
}

export function sourceLabel(source) {
  return (config.sourceLabels || {})[source] || String(source);
}

export function toast(message, kind) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const node = el("div", { className: "toast" + (kind === "error" ? " error" : "") }, message);
  box.append(node);
  setTimeout(function () { node.remove(); }, kind === "error" ? 8000 : 4000);
}

export function debounce(fn, ms) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(function () { fn.apply(null, args); }, ms);
  };
}

// A modal yes/no question in a <dialog>; resolves true when confirmed.
export function confirmDialog(title, message, confirmLabel) {
  return new Promise(function (resolve) {
    const ok = el("button", { type: "button", className: "danger solid" }, confirmLabel || "Confirm");
    const cancel = el("button", { type: "button" }, "Cancel");
    const dialog = el("dialog", { "aria-labelledby": "confirm-title" },
      el("div", { className: "dialog-head" }, el("h2", { id: "confirm-title" }, title)),
      el("div", { className: "dialog-body" }, el("p", {}, message)),
      el("div", { className: "dialog-foot" }, cancel, ok));
    let answer = false;
    ok.addEventListener("click", function () { answer = true; dialog.close(); });
    cancel.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

export function downloadJson(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
}

// Modules run once, after the document is parsed, however many pages import this one.
setInterval(refreshTimes, 30000);
document.querySelectorAll("[data-close-dialog]").forEach(function (button) {
  button.addEventListener("click", function () { button.closest("dialog").close(); });
});
// A form that cannot be undone asks first: data-confirm holds the question, data-confirm-label
// the button's word. Without scripts the form posts as it is.
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const yes = await confirmDialog(form.dataset.confirmTitle || "Are you sure?",
      form.dataset.confirm, form.dataset.confirmLabel);
    if (yes) form.submit();
  });
});

// The signed-in user and their preferences; null when it cannot be read.
export function me() {
  return get(api.me()).catch(function () { return null; });
}
