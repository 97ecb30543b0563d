// Sync and watch: queue a sync, follow each run to its end with live progress, then report.

import { api } from "./api.js";
import { get, post, sourceLabel, toast } from "./portal.js";
import { describeRun, progressEl, runIsFinal } from "./status.js";

// Poll a sync run about once a second until it ends; onUpdate gets every state.
export function watchRun(runId, onUpdate) {
  return new Promise(function (resolve) {
    async function poll() {
      let run;
      try {
        run = await get(api.syncRun(runId), { background: true });
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

// The key of a source's runs on a page that lists several environments.
export function runKey(envId, source) { return envId + "-" + source; }

// The sync runs of one page, each under a key (options.keyOf, runKey by default); its progress
// shows in the element with id options.slotPrefix + key. onWatch(key, busy) and
// onFinished(key, run) let the page disable its buttons and refresh what the run changed.
export function syncWatcher(options) {
  const keyOf = options.keyOf || runKey;
  const watching = new Set();
  const latest = new Map(); // key -> the latest state of its run seen on this page

  function show(key, run) {
    latest.set(key, run);
    const slot = document.getElementById(options.slotPrefix + key);
    if (slot) slot.replaceChildren(progressEl(run));
  }

  function follow(key, runId) {
    if (watching.has(key)) return;
    watching.add(key);
    if (options.onWatch) options.onWatch(key, true);
    watchRun(runId, function (run) { show(key, run); }).then(function (run) {
      watching.delete(key);
      if (options.onWatch) options.onWatch(key, false);
      toast(sourceLabel(run.source) + ": " + describeRun(run), run.state === "failed" ? "error" : "info");
      if (options.onFinished) options.onFinished(key, run);
    });
  }

  // Queue a sync of one source (or every source when none is named) and follow its runs.
  async function start(envId, source, button) {
    button.disabled = true;
    try {
      const body = await post(api.environmentAction(envId, "sync"), source ? { source: source } : {});
      const runs = body.runs || [body];
      runs.forEach(function (run) {
        const key = keyOf(envId, run.source);
        show(key, run);
        follow(key, run.id);
      });
      return runs;
    } catch (e) {
      button.disabled = false;
      toast("Sync could not start: " + e.message, "error");
      return [];
    }
  }

  return {
    start: start,
    follow: follow,
    show: show,
    latest: function (key) { return latest.get(key); },
    forget: function (key) { latest.delete(key); },
    isWatching: function (key) { return watching.has(key); },
    idle: function () { return watching.size === 0; },
  };
}
