// Environment form: load (never the password), test connection, pin, save with inline errors,
// unsaved-changes warning, delete with typed-name confirmation.

import { api, pages } from "./api.js";
import { config, el, get, post, request, toast, visible } from "./portal.js";

const form = document.getElementById("envform");
const envId = form.dataset.environmentId || null;
const summary = document.getElementById("form-errors");
const blocks = {};
let dirty = false;

document.querySelectorAll(".source-form").forEach(function (fieldset) {
  blocks[fieldset.dataset.source] = fieldset;
});

function field(source, name) { return document.getElementById(source + "-" + name); }
function tlsMode(source) { return blocks[source].querySelector('input[name="' + source + '-tls"]:checked').value; }

function showTls(source) {
  const mode = tlsMode(source);
  blocks[source].querySelectorAll("[data-tls]").forEach(function (node) { node.hidden = node.dataset.tls !== mode; });
}

function setTls(source, mode) {
  blocks[source].querySelector('input[name="' + source + '-tls"][value="' + mode + '"]').checked = true;
  showTls(source);
}

function showConfigured(source) {
  const on = field(source, "configure").checked;
  blocks[source].querySelector("[data-fields]").hidden = !on;
}

// -- errors next to fields ---------------------------------------------------------------
function clearErrors() {
  summary.hidden = true;
  summary.replaceChildren();
  form.querySelectorAll(".field-error").forEach(function (p) { p.hidden = true; p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach(function (input) {
    input.removeAttribute("aria-invalid");
    const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) { return id && !id.endsWith("-error"); });
    if (ids.length) input.setAttribute("aria-describedby", ids.join(" ")); else input.removeAttribute("aria-describedby");
  });
}

function showErrors(details, fallback) {
  clearErrors();
  const unplaced = [];
  let first = null;
  Object.entries(details || {}).forEach(function (pair) {
    const key = config.sources.includes(pair[0]) ? pair[0] + ".configure" : pair[0];
    const id = key.replace(".", "-");
    const message = el("p", {}, pair[1]);
    const slot = document.getElementById(id + "-error");
    const input = document.getElementById(id) ||
      (key.endsWith(".verify_tls") ? blocks[key.split(".")[0]].querySelector('input[type="radio"]') : null);
    if (!slot) { unplaced.push(pair[0] + ": " + pair[1]); return; }
    slot.textContent = message.textContent;
    slot.hidden = false;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      ids.push(id + "-error");
      input.setAttribute("aria-describedby", ids.join(" "));
      if (!first) first = input;
      const source = key.split(".")[0];
      if (blocks[source]) { field(source, "configure").checked = true; showConfigured(source); }
      if (key.endsWith(".ca_pem")) setTls(key.split(".")[0], "ca");
      if (key.endsWith(".pinned_sha256")) setTls(key.split(".")[0], "pin");
    }
  });
  const count = Object.keys(details || {}).length;
  summary.append(el("p", {}, fallback || (count === 1 ? "One field needs attention." : count + " fields need attention.")));
  if (unplaced.length) summary.append(el("ul", {}, ...unplaced.map(function (m) { return el("li", {}, m); })));
  summary.hidden = false;
  (first || summary).focus();
}

// -- values ---------------------------------------------------------------------------
function endpointBody(source, withPassword) {
  const mode = tlsMode(source);
  const body = {
    host: field(source, "host").value.trim(),
    port: field(source, "port").value === "" ? 443 : Number(field(source, "port").value),
    username: field(source, "username").value.trim(),
    verify_tls: mode !== "off",
    ca_pem: mode === "ca" ? field(source, "ca_pem").value : "",
    pinned_sha256: mode === "pin" ? field(source, "pinned_sha256").value.trim() : "",
    sync_enabled: field(source, "sync_enabled").checked,
    sync_interval_minutes: field(source, "sync_interval_minutes").value === "" ? null : Number(field(source, "sync_interval_minutes").value),
  };
  if (withPassword) body.password = field(source, "password").value;
  const locker = field(source, "locker_password");
  if (withPassword && locker) body.locker_password = locker.value;
  return body;
}

function formBody() {
  const body = { name: form.elements.name.value.trim(), description: form.elements.description.value };
  Object.keys(blocks).forEach(function (source) {
    body[source] = field(source, "configure").checked ? endpointBody(source, true) : null;
  });
  return body;
}

function fill(env) {
  form.elements.name.value = env.name;
  form.elements.description.value = env.description || "";
  Object.keys(blocks).forEach(function (source) {
    const endpoint = env[source];
    field(source, "configure").checked = Boolean(endpoint);
    if (endpoint) {
      field(source, "host").value = endpoint.host;
      field(source, "port").value = endpoint.port;
      field(source, "username").value = endpoint.username;
      field(source, "ca_pem").value = endpoint.ca_pem || "";
      field(source, "pinned_sha256").value = endpoint.pinned_sha256 || "";
      field(source, "sync_enabled").checked = endpoint.sync_enabled;
      field(source, "sync_interval_minutes").value = endpoint.sync_interval_minutes;
      setTls(source, !endpoint.verify_tls ? "off" : endpoint.pinned_sha256 ? "pin" : endpoint.ca_pem ? "ca" : "system");
      field(source, "password").placeholder = "unchanged";
      const locker = field(source, "locker_password");
      if (locker) locker.placeholder = endpoint.locker_password_set ? "unchanged" : "not set";
    } else {
      field(source, "password").placeholder = "";
    }
    showConfigured(source);
  });
}

// -- test connection -------------------------------------------------------------------
async function testConnection(source, button) {
  const slot = blocks[source].querySelector("[data-test-result]");
  const body = endpointBody(source, true);
  body.source = source;
  if (envId) body.environment_id = Number(envId);
  button.disabled = true;
  slot.replaceChildren(el("p", { className: "result" }, "Connecting to " + (visible(body.host) || "…") + "…"));
  try {
    const result = await post(api.testConnection(), body);
    const box = el("div", { className: "result " + (result.ok ? "ok" : "fail"), dataset: { ok: String(result.ok) } },
      el("strong", {}, result.ok ? "Connection works. " : "Connection failed. "), visible(result.message || ""),
      result.ok && result.credential_count !== null && result.credential_count !== undefined
        ? el("div", {}, result.credential_count + " credentials visible to this account.") : null);
    if (result.certificate_sha256) {
      const pin = el("button", { type: "button", className: "small", dataset: { pin: result.certificate_sha256 } }, "Pin this fingerprint");
      pin.addEventListener("click", function () {
        field(source, "pinned_sha256").value = result.certificate_sha256;
        setTls(source, "pin");
        markDirty();
        field(source, "pinned_sha256").focus();
        toast("Fingerprint pinned; save to keep it.");
      });
      box.append(el("span", { className: "fingerprint" }, "Certificate SHA-256: ", el("code", {}, result.certificate_sha256)), pin);
    }
    slot.replaceChildren(box);
  } catch (e) {
    if (e.status === 422) {
      showErrors(e.details);
      slot.replaceChildren(el("p", { className: "result fail" }, "Fix the highlighted fields, then test again."));
    } else {
      slot.replaceChildren(el("p", { className: "result fail" }, "Could not test: " + e.message));
    }
  } finally {
    button.disabled = false;
  }
}

// -- wiring ------------------------------------------------------------------------------
function markDirty() { dirty = true; }
form.addEventListener("input", markDirty);
form.addEventListener("change", markDirty);
window.addEventListener("beforeunload", function (event) {
  if (!dirty) return;
  event.preventDefault();
  event.returnValue = "";
});

Object.keys(blocks).forEach(function (source) {
  const fieldset = blocks[source];
  field(source, "configure").addEventListener("change", function () { showConfigured(source); });
  fieldset.querySelectorAll('input[name="' + source + '-tls"]').forEach(function (radio) {
    radio.addEventListener("change", function () { showTls(source); });
  });
  fieldset.querySelector("[data-ca-file]").addEventListener("change", async function (event) {
    const file = event.target.files[0];
    if (!file) return;
    if (file.size > 1024 * 1024) { toast("That file is too large for a CA bundle.", "error"); return; }
    field(source, "ca_pem").value = await file.text();
    markDirty();
  });
  fieldset.querySelector("[data-test-connection]").addEventListener("click", function (event) {
    testConnection(source, event.currentTarget);
  });
  showTls(source);
  showConfigured(source);
});

form.addEventListener("submit", async function (event) {
  event.preventDefault();
  const save = document.getElementById("save");
  save.disabled = true;
  clearErrors();
  try {
    const env = envId
      ? await request("PATCH", api.environment(envId), formBody())
      : await post(api.environments(), formBody());
    dirty = false;
    window.location.assign(pages.environment(env.id));
  } catch (e) {
    save.disabled = false;
    if (e.status === 422) showErrors(e.details);
    else showErrors({}, "Could not save: " + e.message);
  }
});

const confirmInput = document.getElementById("delete-confirm");
const deleteButton = document.getElementById("delete-environment");
if (confirmInput && deleteButton) {
  confirmInput.addEventListener("input", function () {
    deleteButton.disabled = confirmInput.value !== form.dataset.environmentName;
  });
  deleteButton.addEventListener("click", async function () {
    if (confirmInput.value !== form.dataset.environmentName) return;
    deleteButton.disabled = true;
    try {
      await request("DELETE", api.environment(envId));
      dirty = false;
      window.location.assign(pages.dashboard());
    } catch (e) {
      deleteButton.disabled = false;
      toast("Could not delete: " + e.message, "error");
    }
  });
}

if (envId) {
  get(api.environment(envId)).then(function (env) {
    fill(env);
    dirty = false;
  }).catch(function (e) { showErrors({}, "Could not load the environment: " + e.message); });
}
