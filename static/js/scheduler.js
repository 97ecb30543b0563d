// Scheduler page: every sync job with its last and next run; pause, resume, run now (for the
// jobs of environments the user manages).

import { api, pages } from "./api.js";
import { bidi, el, get, post, sourceLabel, timeEl, toast } from "./portal.js";
import { badge, describeRun, progressEl } from "./status.js";
import { runKey, syncWatcher } from "./sync.js";

const root = document.getElementById("scheduler");
const managing = root.dataset.admin === "true"; // manages at least one environment
const body = document.getElementById("jobs-body");
const stateLine = document.getElementById("scheduler-state");

// A run shows live in its job's outcome cell while it lasts; the job's last run afterwards.
const syncs = syncWatcher({
  slotPrefix: "outcome-",
  onFinished: function (k) {
    syncs.forget(k);
    load();
  },
});

function scheduleBadge(job) {
  if (!job.enabled) return badge("disabled", "Off");
  if (job.paused) return badge("paused");
  return badge("active", "Active");
}

function outcome(job) {
  const cell = el("td", { id: "outcome-" + runKey(job.environment_id, job.source) });
  const live = syncs.latest(runKey(job.environment_id, job.source));
  if (live) { cell.append(progressEl(live)); return cell; }
  const run = job.last_run;
  if (!run) { cell.append(badge("never", "No run yet")); return cell; }
  cell.append(badge(run.state), el("div", { className: "hint" }, describeRun(run)));
  return cell;
}

function actions(job) {
  const cell = el("td", { className: "nowrap" });
  if (!job.can_manage) return cell;
  const base = { environmentId: job.environment_id, source: job.source };
  if (job.enabled) {
    cell.append(el("button", { type: "button", className: "small", dataset: Object.assign({ action: job.paused ? "resume" : "pause" }, base) },
      job.paused ? "Resume" : "Pause"), " ");
  }
  const run = el("button", { type: "button", className: "small", dataset: Object.assign({ action: "run" }, base) }, "Run now");
  if (syncs.isWatching(runKey(job.environment_id, job.source))) run.disabled = true;
  cell.append(run);
  return cell;
}

function render(data) {
  stateLine.replaceChildren(data.running ? badge("success", "Scheduler running") : badge("failed", "Scheduler not running"),
    " " + data.jobs.length + " job" + (data.jobs.length === 1 ? "" : "s"));
  body.replaceChildren();
  if (data.jobs.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: managing ? "8" : "7", className: "empty" }, "No environment is configured.")));
    return;
  }
  data.jobs.forEach(function (job) {
    const last = job.last_run;
    body.append(el("tr", {},
      el("td", { className: "cell-text" }, el("a", { href: pages.environment(job.environment_id) }, bidi(job.environment))),
      el("td", { className: "nowrap" }, sourceLabel(job.source)),
      el("td", {}, scheduleBadge(job)),
      el("td", { className: "nowrap" }, job.interval_minutes + " min"),
      el("td", {}, timeEl(last ? (last.finished_at || last.started_at || last.created_at) : null, "Never")),
      outcome(job),
      el("td", {}, timeEl(job.next_run_at, job.enabled && !job.paused ? "Pending" : "—")),
      managing ? actions(job) : null));
  });
}

async function load(background) {
  try {
    render(await get(api.scheduler(), { background: background === true }));
  } catch (e) {
    stateLine.textContent = "Could not load the scheduler: " + e.message;
  }
}

async function act(button) {
  const envId = button.dataset.environmentId;
  const source = button.dataset.source;
  const action = button.dataset.action;
  if (action === "run") {
    if ((await syncs.start(envId, source, button)).length) load();
    return;
  }
  button.disabled = true;
  try {
    await post(api.environmentAction(envId, action), { source: source });
    toast(action === "pause" ? "Scheduled sync paused." : "Scheduled sync resumed.");
    load();
  } catch (e) {
    button.disabled = false;
    toast("Could not " + action + ": " + e.message, "error");
  }
}

body.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-action]");
  if (button && managing) act(button);
});
document.getElementById("scheduler-refresh").addEventListener("click", function () { load(); });
load();
setInterval(function () {
  if (!document.hidden && !body.contains(document.activeElement)) load(true);
}, 15000);
