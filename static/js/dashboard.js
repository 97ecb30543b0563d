// Dashboard: environments with per-source status (cards or list), sync now, global search.
"use strict";

(function () {
  const P = window.Portal;
  const el = P.el;
  const root = document.getElementById("dashboard");
  if (!root) return;
  const isAdmin = root.dataset.admin === "true";
  const container = document.getElementById("environments");
  const summary = document.getElementById("summary");
  let environments = [];
  let view = "cards";
  const runs = new Map(); // "envId:source" -> latest RUN seen while watching
  const watching = new Set();
  const openErrors = new Set();

  function envUrl(env) { return "/environments/" + encodeURIComponent(env.id); }

  function sourcesOf(env) {
    return ["manager", "installer"].filter(function (s) { return env[s]; });
  }

  function errorDetails(env, source, error) {
    const key = env.id + ":" + source;
    const details = el("details", { className: "error", dataset: { key: key } },
      el("summary", {}, "Last error"), el("pre", {}, error));
    if (openErrors.has(key)) details.open = true;
    details.addEventListener("toggle", function () {
      if (details.open) openErrors.add(key); else openErrors.delete(key);
    });
    return details;
  }

  function nextRun(env, source) {
    const endpoint = env[source];
    const status = env.status[source] || {};
    if (!endpoint.sync_enabled) return el("span", { className: "muted" }, "Sync off");
    if (endpoint.sync_paused) return P.badge("paused");
    return P.timeEl(status.next_run_at, "Pending");
  }

  function progressSlot(env, source) {
    const slot = el("div", { className: "progress-slot", id: "progress-" + env.id + "-" + source });
    const run = runs.get(env.id + ":" + source);
    if (run) slot.append(P.progressEl(run));
    return slot;
  }

  function sourceBlock(env, source) {
    const endpoint = env[source];
    const status = env.status[source] || { state: "never" };
    const block = el("div", { className: "source" },
      el("div", { className: "source-head" },
        el("span", { className: "source-name" }, P.sourceLabel(source)),
        P.badge(status.state),
        el("span", { className: "source-host" }, P.bidi(endpoint.host))),
      el("dl", { className: "facts" },
        el("div", {}, el("dt", {}, "Last sync"), el("dd", {}, P.timeEl(status.last_sync_at, "Never"))),
        el("div", {}, el("dt", {}, "Credentials"), el("dd", {}, String(status.credential_count || 0))),
        el("div", {}, el("dt", {}, "Absent"), el("dd", {}, String(status.absent_count || 0))),
        el("div", {}, el("dt", {}, "Next run"), el("dd", {}, nextRun(env, source)))));
    if (status.last_error) block.append(errorDetails(env, source, status.last_error));
    block.append(progressSlot(env, source));
    return block;
  }

  function syncButton(env) {
    if (!isAdmin || sourcesOf(env).length === 0) return null;
    const button = el("button", { type: "button", className: "small", dataset: { sync: env.id } }, "Sync now");
    const busy = sourcesOf(env).some(function (s) { return watching.has(env.id + ":" + s); });
    if (busy) button.disabled = true;
    return button;
  }

  function card(env) {
    const actions = el("div", { className: "card-actions" },
      el("a", { className: "button small", href: envUrl(env) }, "Open"), syncButton(env),
      isAdmin ? el("a", { className: "button small", href: envUrl(env) + "/edit" }, "Edit") : null);
    const node = el("article", { className: "card env-card", "aria-labelledby": "env-" + env.id },
      el("header", {}, el("h2", { id: "env-" + env.id }, el("a", { href: envUrl(env) }, P.bidi(env.name)))),
      env.description ? el("p", { className: "desc" }, env.description) : null);
    sourcesOf(env).forEach(function (s) { node.append(sourceBlock(env, s)); });
    if (sourcesOf(env).length === 0) node.append(el("p", { className: "muted" }, "No source configured."));
    node.append(actions);
    return node;
  }

  function listView() {
    const head = el("tr", {}, ...["Environment", "Source", "Status", "Last sync", "Credentials", "Absent", "Next run", "Actions"]
      .map(function (t) { return el("th", { scope: "col" }, t); }));
    const body = el("tbody");
    environments.forEach(function (env) {
      sourcesOf(env).forEach(function (source, index) {
        const status = env.status[source] || { state: "never" };
        const stateCell = el("td", {}, P.badge(status.state));
        if (status.last_error) stateCell.append(errorDetails(env, source, status.last_error));
        stateCell.append(progressSlot(env, source));
        body.append(el("tr", {},
          el("td", { className: "cell-text" }, index === 0 ? el("a", { href: envUrl(env) }, P.bidi(env.name)) : ""),
          el("td", {}, P.sourceLabel(source), el("div", { className: "source-host" }, P.bidi(env[source].host))),
          stateCell,
          el("td", {}, P.timeEl(status.last_sync_at, "Never")),
          el("td", {}, String(status.credential_count || 0)),
          el("td", {}, String(status.absent_count || 0)),
          el("td", {}, nextRun(env, source)),
          el("td", { className: "nowrap" }, index === 0 ? syncButton(env) : null)));
      });
    });
    return el("div", { className: "table-wrap" }, el("table", { className: "data" }, el("thead", {}, head), body));
  }

  function render() {
    container.replaceChildren();
    container.setAttribute("aria-busy", "false");
    document.getElementById("view-cards").setAttribute("aria-pressed", String(view === "cards"));
    document.getElementById("view-list").setAttribute("aria-pressed", String(view === "list"));
    if (environments.length === 0) {
      container.append(el("div", { className: "card empty" },
        el("p", {}, "No environments yet."),
        isAdmin ? el("a", { className: "button primary", href: "/environments/new" }, "Add the first environment") : null));
      return;
    }
    if (view === "list") container.append(listView());
    else container.append(el("div", { className: "grid" }, ...environments.map(card)));
  }

  function summarise() {
    let failed = 0, total = 0;
    environments.forEach(function (env) {
      sourcesOf(env).forEach(function (s) {
        total += (env.status[s] || {}).credential_count || 0;
        if ((env.status[s] || {}).state === "failed") failed += 1;
      });
    });
    summary.textContent = environments.length + " environment" + (environments.length === 1 ? "" : "s") +
      ", " + total + " credentials" + (failed ? " · " + failed + " source" + (failed === 1 ? "" : "s") + " failing" : "");
  }

  // The layout preference arrives with /api/v1/me; the first render waits for it.
  const preference = P.me().then(function (me) {
    if (me && me.preferences && me.preferences.dashboard_view === "list") view = "list";
  });

  async function load(background) {
    try {
      const data = await P.api("GET", "/api/v1/environments", undefined, { background: background === true });
      await preference;
      environments = data.items;
      summarise();
      render();
      environments.forEach(function (env) {
        sourcesOf(env).forEach(function (s) {
          const active = (env.status[s] || {}).active_run;
          if (active) follow(env.id, s, active.id);
        });
      });
    } catch (e) {
      summary.textContent = "Could not load environments: " + e.message;
    }
  }

  function follow(envId, source, runId) {
    const key = envId + ":" + source;
    if (watching.has(key)) return;
    watching.add(key);
    P.watchRun(runId, function (run) {
      runs.set(key, run);
      const slot = document.getElementById("progress-" + envId + "-" + source);
      if (slot) slot.replaceChildren(P.progressEl(run));
    }).then(function (run) {
      watching.delete(key);
      P.toast(P.sourceLabel(source) + ": " + P.describeRun(run), run.state === "failed" ? "error" : "info");
      load();
    });
  }

  async function syncNow(envId, button) {
    button.disabled = true;
    try {
      const body = await P.api("POST", "/api/v1/environments/" + encodeURIComponent(envId) + "/sync", {});
      (body.runs || [body]).forEach(function (run) {
        runs.set(envId + ":" + run.source, run);
        const slot = document.getElementById("progress-" + envId + "-" + run.source);
        if (slot) slot.replaceChildren(P.progressEl(run));
        follow(envId, run.source, run.id);
      });
    } catch (e) {
      button.disabled = false;
      P.toast("Sync could not start: " + e.message, "error");
    }
  }

  container.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-sync]");
    if (button) syncNow(button.dataset.sync, button);
  });

  function setView(next) {
    if (next === view) return;
    view = next;
    render();
    P.api("PATCH", "/api/v1/me/preferences", { dashboard_view: view }).catch(function () {
      P.toast("Could not save the layout preference.", "error");
    });
  }
  document.getElementById("view-cards").addEventListener("click", function () { setView("cards"); });
  document.getElementById("view-list").addEventListener("click", function () { setView("list"); });

  // Cross-environment search.
  const search = document.getElementById("global-search");
  const results = document.getElementById("search-results");
  const searchStatus = document.getElementById("search-status");
  let searchSeq = 0;
  const runSearch = P.debounce(async function () {
    const q = search.value.trim();
    const seq = ++searchSeq;
    if (q.length < 2) {
      results.replaceChildren();
      searchStatus.textContent = q ? "Type at least two characters." : "";
      return;
    }
    searchStatus.textContent = "Searching…";
    try {
      const data = await P.api("GET", "/api/v1/credentials?per_page=25&q=" + encodeURIComponent(q));
      if (seq !== searchSeq) return;
      searchStatus.textContent = data.total === 0 ? "No matches." :
        data.total + " match" + (data.total === 1 ? "" : "es") + (data.total > data.items.length ? "; showing the first " + data.items.length + "." : ".");
      const body = el("tbody");
      data.items.forEach(function (item) {
        const params = new URLSearchParams({ hostname: item.hostname, username: item.username });
        body.append(el("tr", {},
          el("td", { className: "cell-text" }, P.bidi(item.environment)),
          el("td", { className: "cell-text" }, el("a", { href: "/environments/" + encodeURIComponent(item.environment_id) + "?" + params.toString() }, P.bidi(item.hostname))),
          el("td", { className: "cell-text" }, P.bidi(item.username)),
          el("td", {}, item.credential_type), el("td", {}, P.badge(item.status))));
      });
      results.replaceChildren(data.items.length ? el("div", { className: "table-wrap" }, el("table", { className: "data" },
        el("thead", {}, el("tr", {}, ...["Environment", "Host", "User", "Type", "Status"].map(function (t) { return el("th", { scope: "col" }, t); }))),
        body)) : "");
    } catch (e) {
      if (seq === searchSeq) searchStatus.textContent = "Search failed: " + e.message;
    }
  }, 250);
  search.addEventListener("input", runSearch);

  if (window.PortalExport) {
    window.PortalExport.init(function () {
      const q = search.value.trim();
      return q ? { q: q } : {};
    });
  }

  // Admin: environment definitions.
  if (isAdmin) {
    const result = document.getElementById("definitions-result");
    document.getElementById("definitions-export").addEventListener("click", async function () {
      try {
        P.downloadJson("vcf-environments.json", await P.api("GET", "/api/v1/environments/definitions"));
      } catch (e) { P.toast("Export failed: " + e.message, "error"); }
    });
    const dialog = document.getElementById("definitions-dialog");
    const password = document.getElementById("definitions-password");
    const error = document.getElementById("definitions-error");
    document.getElementById("definitions-export-secret").addEventListener("click", function () {
      error.textContent = "";
      password.value = "";
      dialog.showModal();
    });
    document.getElementById("definitions-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      try {
        const data = await P.api("POST", "/api/v1/environments/definitions/export",
          { include_passwords: true, confirm_password: password.value });
        password.value = "";
        dialog.close();
        P.downloadJson("vcf-environments-with-passwords.json", data);
      } catch (e) {
        error.textContent = e.status === 403 ? "That password is not correct." : e.message;
      }
    });
    document.getElementById("definitions-file").addEventListener("change", async function (event) {
      const file = event.target.files[0];
      event.target.value = "";
      if (!file) return;
      let documentBody;
      try { documentBody = JSON.parse(await file.text()); } catch (e) {
        result.replaceChildren(el("p", { className: "result fail" }, "That file is not JSON."));
        return;
      }
      try {
        const outcome = await P.api("POST", "/api/v1/environments/definitions/import", documentBody);
        const errors = Object.entries(outcome.errors || {});
        result.replaceChildren(el("div", { className: "result " + (errors.length ? "fail" : "ok") },
          el("p", {}, "Created " + outcome.created + ", updated " + outcome.updated + "."),
          errors.length ? el("ul", {}, ...errors.map(function (pair) {
            return el("li", {}, pair[0] + ": " + (typeof pair[1] === "string" ? pair[1] : JSON.stringify(pair[1])));
          })) : null));
        load();
      } catch (e) {
        result.replaceChildren(el("p", { className: "result fail" }, "Import failed: " + e.message));
      }
    });
  }

  load();

  // Keep statuses fresh during an outage, but never pull the page from under the keyboard.
  setInterval(function () {
    if (document.hidden || container.contains(document.activeElement)) return;
    load(true);
  }, 30000);
})();
