// The export dialog: a form POST (so no secret lands in a URL) with the current filters added.
// A password typed again is checked first through the API, so a wrong one is answered inside
// the dialog; the form then posts without it, on the fresh re-authentication.

import { api } from "./api.js";
import { el, get, me, post, toast } from "./portal.js";

function present(values) {
  const params = {};
  Object.keys(values || {}).forEach(function (name) {
    const value = values[name];
    if (value !== "" && value !== undefined && value !== null) params[name] = value;
  });
  return params;
}

// options.currentFilters() gives the filters of the view on screen, sent along with the form;
// options.environmentId is the environment exported from (none: every environment).
export function initExport(options) {
  const dialog = document.getElementById("export-dialog");
  const opener = document.getElementById("export-open");
  if (!dialog || !opener) return;
  const form = document.getElementById("export-form");
  const reauth = document.getElementById("export-reauth");
  const password = document.getElementById("export-confirm-password");
  const error = document.getElementById("export-reauth-error");
  const count = document.getElementById("export-count");
  const submit = document.getElementById("export-submit");
  const filters = document.getElementById("export-filters");
  const envId = options.environmentId;
  let needPassword = false;
  let confirmed = false;
  let countSeq = 0;

  function scope() { return form.querySelector('input[name="scope"]:checked').value; }

  // The number of rows: the credential list's total for the same filters (one item fetched).
  async function showCount() {
    const mine = ++countSeq;
    count.textContent = "Counting the credentials…";
    const params = { ...(scope() === "view" ? present(options.currentFilters()) : {}), per_page: 1 };
    delete params.sort;
    try {
      const data = await get(envId ? api.environmentAction(envId, "credentials", params) : api.credentials(params));
      if (mine !== countSeq) return;
      count.textContent = "The export will hold " + data.total + " credential" + (data.total === 1 ? "" : "s") + ".";
    } catch (e) {
      if (mine === countSeq) count.textContent = "Could not count the credentials: " + e.message;
    }
  }

  function askPassword(ask) {
    needPassword = ask;
    reauth.hidden = !ask;
    password.required = ask;
    password.disabled = !ask;
  }

  opener.addEventListener("click", async function () {
    password.value = "";
    error.textContent = "";
    confirmed = false;
    const user = await me();
    // Without the user record we cannot tell; asking is the safe default.
    askPassword(!user || !user.recent_auth);
    dialog.showModal();
    (needPassword ? password : form.querySelector('input[name="format"]:checked')).focus();
    showCount();
  });

  form.addEventListener("change", function (event) {
    if (event.target.name === "scope") showCount();
  });

  async function confirmPassword() {
    error.textContent = "";
    submit.disabled = true;
    const body = { password: password.value, purpose: "export" };
    if (envId) body.environment_id = Number(envId);
    try {
      await post(api.reauth(), body);
      confirmed = true;
      password.value = "";
      askPassword(false);
      form.requestSubmit();
    } catch (e) {
      password.value = "";
      error.textContent = e.message;
      password.focus();
    } finally {
      submit.disabled = false;
    }
  }

  form.addEventListener("submit", function (event) {
    if (needPassword && !confirmed) {
      event.preventDefault();
      confirmPassword();
      return;
    }
    filters.replaceChildren();
    const values = present(options.currentFilters());
    Object.keys(values).forEach(function (name) {
      filters.append(el("input", { type: "hidden", name: name, value: values[name] }));
    });
    // The browser has already read the form; clear the typed password right after.
    setTimeout(function () {
      password.value = "";
      dialog.close();
      toast("Export requested; the download starts in a moment.");
    }, 0);
  });
}
