// Scheduler page: every sync job with its last and next run; pause, resume, run now (admins).
"use strict";

(function () {
  const P = window.Portal;
  const el = P.el;
  const root = document.getElementById("scheduler");
  if (!root) return;
  const isAdmin = root.dataset.admin === "true";
  const body = document.getElementById("jobs-body");
  const stateLine = document.getElementById("scheduler-state");
  const watching = new Set();
  const progress = new Map();

  function key(job) { return job.environment_id + ":" + job.source; }

  function scheduleBadge(job) {
    if (!job.enabled) return P.badge("disabled", "Off");
    if (job.paused) return P.badge("paused");
    return P.badge("active", "Active");
  }

  function outcome(job) {
    const cell = el("td", { id: "outcome-" + job.environment_id + "-" + job.source });
    const live = progress.get(key(job));
    if (live) { cell.append(P.progressEl(live)); return cell; }
    const run = job.last_run;
    if (!run) { cell.append(P.badge("never", "No run yet")); return cell; }
    cell.append(P.badge(run.state), el("div", { className: "hint" }, P.describeRun(run)));
    return cell;
  }

  function actions(job) {
    const cell = el("td", { className: "nowrap" });
    const base = { environmentId: job.environment_id, source: job.source };
    if (job.enabled) {
      cell.append(el("button", { type: "button", className: "small", dataset: Object.assign({ action: job.paused ? "resume" : "pause" }, base) },
        job.paused ? "Resume" : "Pause"), " ");
    }
    const run = el("button", { type: "button", className: "small", dataset: Object.assign({ action: "run" }, base) }, "Run now");
    if (watching.has(key(job))) run.disabled = true;
    cell.append(run);
    return cell;
  }

  function render(data) {
    stateLine.replaceChildren(data.running ? P.badge("success", "Scheduler running") : P.badge("failed", "Scheduler not running"),
      " " + data.jobs.length + " job" + (data.jobs.length === 1 ? "" : "s"));
    body.replaceChildren();
    if (data.jobs.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: isAdmin ? "8" : "7", className: "empty" }, "No environment is configured.")));
      return;
    }
    data.jobs.forEach(function (job) {
      const last = job.last_run;
      body.append(el("tr", {},
        el("td", { className: "cell-text" }, el("a", { href: "/environments/" + encodeURIComponent(job.environment_id) }, P.bidi(job.environment))),
        el("td", { className: "nowrap" }, P.sourceLabel(job.source)),
        el("td", {}, scheduleBadge(job)),
        el("td", { className: "nowrap" }, job.interval_minutes + " min"),
        el("td", {}, P.timeEl(last ? (last.finished_at || last.started_at || last.created_at) : null, "Never")),
        outcome(job),
        el("td", {}, P.timeEl(job.next_run_at, job.enabled && !job.paused ? "Pending" : "—")),
        isAdmin ? actions(job) : null));
    });
  }

  async function load(background) {
    try {
      render(await P.api("GET", "/api/v1/scheduler", undefined, { background: background === true }));
    } catch (e) {
      stateLine.textContent = "Could not load the scheduler: " + e.message;
    }
  }

  async function act(button) {
    const envId = button.dataset.environmentId;
    const source = button.dataset.source;
    const url = "/api/v1/environments/" + encodeURIComponent(envId);
    button.disabled = true;
    try {
      if (button.dataset.action === "run") {
        const run = await P.api("POST", url + "/sync", { source: source });
        const k = envId + ":" + source;
        watching.add(k);
        progress.set(k, run);
        load();
        P.watchRun(run.id, function (update) {
          progress.set(k, update);
          const cell = document.getElementById("outcome-" + envId + "-" + source);
          if (cell) cell.replaceChildren(P.progressEl(update));
        }).then(function (finished) {
          watching.delete(k);
          progress.delete(k);
          P.toast(P.sourceLabel(source) + ": " + P.describeRun(finished), finished.state === "failed" ? "error" : "info");
          load();
        });
        return;
      }
      await P.api("POST", url + "/" + button.dataset.action, { source: source });
      P.toast(button.dataset.action === "pause" ? "Scheduled sync paused." : "Scheduled sync resumed.");
      load();
    } catch (e) {
      button.disabled = false;
      P.toast("Could not " + button.dataset.action + ": " + e.message, "error");
    }
  }

  body.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-action]");
    if (button && isAdmin) act(button);
  });
  document.getElementById("scheduler-refresh").addEventListener("click", load);
  load();
  setInterval(function () {
    if (!document.hidden && !body.contains(document.activeElement)) load(true);
  }, 15000);
})();
