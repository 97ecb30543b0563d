// How states look: badges, sync-run progress and outcome text, next run, last error.

import { config, el, sourceLabel, timeEl, visible } from "./portal.js";

const PHASES = ["queued", "fetching", "writing", "done"];
const FINAL = ["success", "partial", "failed"];

export function badge(state, label) {
  const key = String(state || "never");
  return el("span", { className: "badge state-" + key.toLowerCase() }, label || (config.stateLabels || {})[key] || key);
}

// The expiry state to show: a date in the past is expired, whatever SDDC Manager last said;
// otherwise its EXPIRING or EXPIRED flag (null when there is nothing to flag).
export function expiryState(item) {
  const at = item.expiry_date ? Date.parse(item.expiry_date) : NaN;
  if (!Number.isNaN(at) && at <= Date.now()) return "EXPIRED";
  const flag = String(item.expiry_status || "").toUpperCase();
  return flag === "EXPIRING" || flag === "EXPIRED" ? flag : null;
}

export function runIsFinal(run) { return FINAL.indexOf(run.state) >= 0; }

export function describeRun(run) {
  if (run.state === "queued") return "Queued…";
  if (run.state === "running") {
    return run.phase === "writing" ? "Writing to the store…" : "Fetching from " + sourceLabel(run.source) + "…";
  }
  const c = run.counts || {};
  const counts = (c.new || 0) + " new, " + (c.changed || 0) + " changed, " +
    (c.unchanged || 0) + " unchanged, " + (c.absent || 0) + " absent";
  if (run.state === "failed") return "Failed" + (run.error ? ": " + visible(run.error) : "");
  return (run.state === "partial" ? "Done with warnings: " : "Done: ") + counts;
}

export function progressEl(run) {
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

// When a source syncs next: off, paused, or a time.
export function nextRunEl(endpoint, status) {
  if (!endpoint.sync_enabled) return el("span", { className: "muted" }, "Sync off");
  if (endpoint.sync_paused) return badge("paused");
  return timeEl((status || {}).next_run_at, "Pending");
}

// The last sync error, folded; onToggle(open) lets a page keep it open across refreshes.
export function errorDetails(error, open, onToggle) {
  const details = el("details", { className: "error" }, el("summary", {}, "Last error"), el("pre", {}, visible(error)));
  details.open = Boolean(open);
  if (onToggle) details.addEventListener("toggle", function () { onToggle(details.open); });
  return details;
}
