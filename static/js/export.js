// The export dialog: a form POST (so no secret lands in a URL) with the current filters added.

import { el, me, toast } from "./portal.js";

// currentFilters() gives the filters of the view on screen, sent along with the form.
export function initExport(currentFilters) {
  const dialog = document.getElementById("export-dialog");
  const opener = document.getElementById("export-open");
  if (!dialog || !opener) return;
  const form = document.getElementById("export-form");
  const reauth = document.getElementById("export-reauth");
  const password = document.getElementById("export-confirm-password");
  const filters = document.getElementById("export-filters");

  opener.addEventListener("click", async function () {
    password.value = "";
    const user = await me();
    // Without the user record we cannot tell; asking is the safe default.
    const needPassword = !user || !user.recent_auth;
    reauth.hidden = !needPassword;
    password.required = needPassword;
    password.disabled = !needPassword;
    dialog.showModal();
    (needPassword ? password : form.querySelector('input[name="format"]:checked')).focus();
  });

  form.addEventListener("submit", function () {
    filters.replaceChildren();
    const values = currentFilters();
    Object.keys(values).forEach(function (name) {
      if (values[name] !== "" && values[name] !== undefined && values[name] !== null) {
        filters.append(el("input", { type: "hidden", name: name, value: values[name] }));
      }
    });
    // The browser has already read the form; clear the typed password right after.
    setTimeout(function () {
      password.value = "";
      dialog.close();
      toast("Export requested; the download starts in a moment.");
    }, 0);
  });
}
