// Shared page behaviour. No inline scripts anywhere: the Content-Security-Policy forbids them.
// Text from SDDC Manager is hostile: it only ever reaches the page through textContent.
"use strict";

window.Portal = (function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function signInAgain() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
  }

  // opts.background: an automatic refresh, not the operator's doing; the server does not
  // count it as activity, so an unattended page still reaches the idle timeout.
  async function api(method, url, body, opts) {
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

  // el("td", {className: "x", title: "..."}, "text", otherNode): never parses HTML.
  function el(tag, attrs, ...children) {
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

  function bidi(text) {
    // <bdi> keeps an RTL override (U+202E) in a host name from reordering its neighbours;
    // very long values are clamped to a few lines on screen (copies use the full value).
    const value = text === null || text === undefined ? "" : String(text);
    return el("bdi", value.length > 120 ? { className: "clamp", title: value.slice(0, 2000) } : {}, value);
  }

  const UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const rtf = typeof Intl !== "undefined" && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat("en", { numeric: "auto" }) : null;

  function relTime(iso) {
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

  function timeEl(iso, empty) {
    if (!iso) return el("span", { className: "muted" }, empty || "—");
    return el("time", { datetime: iso, title: iso, dataset: { rel: "1" } }, relTime(iso));
  }

  function refreshTimes() {
    document.querySelectorAll("time[data-rel]").forEach(function (node) {
      node.textContent = relTime(node.getAttribute("datetime"));
    });
  }

  const STATE_LABELS = {
    success: "Success", partial: "Partial", failed: "Failed", never: "Never synced",
    queued: "Queued", running: "Running", present: "Present", absent: "Absent",
    paused: "Paused", disabled: "Disabled", active: "Active", EXPIRING: "Expiring", EXPIRED: "Expired",
  };

  function badge(state, label) {
    const key = String(state || "never");
    return el("span", { className: "badge state-" + key.toLowerCase() }, label || STATE_LABELS[key] || key);
  }

  function toast(message, kind) {
    let box = document.getElementById("toasts");
    if (!box) return;
    const node = el("div", { className: "toast" + (kind === "error" ? " error" : "") }, message);
    box.append(node);
    setTimeout(function () { node.remove(); }, kind === "error" ? 8000 : 4000);
  }

  function debounce(fn, ms) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function revealSeconds() {
    const value = parseInt(document.body.dataset.revealSeconds || "30", 10);
    return value > 0 ? value : 30;
  }

  // Copy a secret, then try to clear the clipboard if it still holds it after the delay.
  async function copySecret(text) {
    await navigator.clipboard.writeText(text);
    setTimeout(async function () {
      let current = null;
      try { current = await navigator.clipboard.readText(); } catch (e) { current = text; }
      if (current === text) {
        try { await navigator.clipboard.writeText(""); } catch (e) { /* page not focused */ }
      }
    }, revealSeconds() * 1000);
  }

  const PHASES = ["queued", "fetching", "writing", "done"];
  const FINAL = ["success", "partial", "failed"];

  function runIsFinal(run) { return FINAL.indexOf(run.state) >= 0; }

  function describeRun(run) {
    if (run.state === "queued") return "Queued…";
    if (run.state === "running") {
      return run.phase === "writing" ? "Writing to the store…" : "Fetching from " + sourceLabel(run.source) + "…";
    }
    const c = run.counts || {};
    const counts = (c.new || 0) + " new, " + (c.changed || 0) + " changed, " +
      (c.unchanged || 0) + " unchanged, " + (c.absent || 0) + " absent";
    if (run.state === "failed") return "Failed" + (run.error ? ": " + run.error : "");
    return (run.state === "partial" ? "Done with warnings: " : "Done: ") + counts;
  }

  function progressEl(run) {
    const final = runIsFinal(run);
    const phase = final ? "done" : (run.state === "queued" ? "queued" : (run.phase || "fetching"));
    const index = PHASES.indexOf(phase);
    const steps = el("span", { className: "steps", "aria-hidden": "true" });
    PHASES.forEach(function (_, i) { steps.append(el("span", { className: "step" + (i <= index ? " done" : "") })); });
    return el("div", {
      className: "progress" + (final ? " finished-" + run.state : ""),
      role: "status", dataset: { runId: run.id, runState: run.state, runPhase: phase },
    }, steps, badge(final ? run.state : (run.state === "queued" ? "queued" : "running"),
      final ? null : (phase.charAt(0).toUpperCase() + phase.slice(1))), el("span", { className: "progress-text" }, describeRun(run)));
  }

  // Poll a sync run about once a second until it ends; onUpdate gets every state.
  function watchRun(runId, onUpdate) {
    return new Promise(function (resolve) {
      async function poll() {
        let run;
        try {
          run = await api("GET", "/api/v1/sync-runs/" + encodeURIComponent(runId), undefined, { background: true });
        } catch (e) {
          setTimeout(poll, 3000);
          return;
        }
        onUpdate(run);
        if (runIsFinal(run)) resolve(run); else setTimeout(poll, 1000);
      }
      poll();
    });
  }

  function sourceLabel(source) {
    return source === "installer" ? "VCF Installer" : "SDDC Manager";
  }

  // A modal yes/no question in a <dialog>; resolves true when confirmed.
  function confirmDialog(title, message, confirmLabel) {
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

  function downloadJson(name, data) {
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  function me() {
    return api("GET", "/api/v1/me").catch(function () { return null; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setInterval(refreshTimes, 30000);
    document.querySelectorAll("[data-close-dialog]").forEach(function (button) {
      button.addEventListener("click", function () { button.closest("dialog").close(); });
    });
  });

  return {
    api: api, csrfToken: csrfToken, el: el, bidi: bidi, relTime: relTime, timeEl: timeEl,
    badge: badge, toast: toast, debounce: debounce, revealSeconds: revealSeconds,
    copySecret: copySecret, watchRun: watchRun, describeRun: describeRun, progressEl: progressEl,
    runIsFinal: runIsFinal, sourceLabel: sourceLabel, confirmDialog: confirmDialog,
    downloadJson: downloadJson, me: me, signInAgain: signInAgain,
  };
})();
