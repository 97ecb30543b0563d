// Password age: a bar chart of age buckets (plain DOM), expiring/expired and stale lists.

import { api } from "./api.js";
import { bidi, el, get, headRow, hostName, visible } from "./portal.js";
import { badge, expiryState } from "./status.js";

const SHOW_AT_MOST = 100;
let envId = null;
let loadedDays = null;

function chart(data) {
  const box = document.getElementById("age-chart");
  const max = Math.max(1, ...data.buckets.map(function (b) { return b.count; }));
  const rows = data.buckets.map(function (bucket) {
    const bar = el("div", { className: "bar" + (bucket.min_days > data.threshold_days ? " stale" : "") });
    // CSSOM, not a style attribute: the CSP allows this.
    bar.style.width = (100 * bucket.count / max).toFixed(1) + "%";
    return el("div", { className: "bar-row", role: "listitem" },
      el("span", {}, bucket.label),
      el("div", { className: "bar-track", "aria-hidden": "true" }, bar),
      el("span", { className: "count" }, String(bucket.count)));
  });
  box.setAttribute("role", "list");
  box.setAttribute("aria-label", "Passwords by age");
  box.replaceChildren(...rows);
}

function listTable(items, empty) {
  if (items.length === 0) return el("p", { className: "muted" }, empty);
  const body = el("tbody");
  items.slice(0, SHOW_AT_MOST).forEach(function (item) {
    body.append(el("tr", {},
      el("td", { className: "cell-text col-host" }, hostName(item.hostname)),
      el("td", { className: "cell-text" }, bidi(item.username)),
      el("td", {}, visible(item.credential_type)),
      el("td", { className: "nowrap" }, String(item.age_days) + " d"),
      el("td", { className: "nowrap" }, expiryState(item) ? badge(expiryState(item)) : "",
        item.expiry_date ? " " + String(item.expiry_date).slice(0, 10) : "")));
  });
  const wrap = el("div", { className: "table-wrap" }, el("table", { className: "data" },
    headRow("Host", "User", "Type", "Age", "Expiry"),
    body));
  if (items.length > SHOW_AT_MOST) {
    return el("div", {}, wrap, el("p", { className: "hint" }, "Showing " + SHOW_AT_MOST + " of " + items.length + ". Filter the credentials table or export for the full list."));
  }
  return wrap;
}

async function load(days) {
  document.getElementById("age-days-label").textContent = String(days);
  try {
    const data = await get(api.environmentAction(envId, "password-age", { days: days }));
    loadedDays = days;
    chart(data);
    const expiring = document.getElementById("age-expiring");
    expiring.replaceChildren(listTable(data.expiring, expiring.dataset.empty));
    document.getElementById("age-stale").replaceChildren(listTable(data.stale, "Every password changed within " + days + " days."));
  } catch (e) {
    document.getElementById("age-chart").replaceChildren(el("p", { className: "field-error" }, "Could not load password age: " + e.message));
  }
}

// The bounds and the default are the server's, rendered into the input.
function currentDays() {
  const input = document.getElementById("age-days");
  const value = parseInt(input.value, 10);
  return value >= Number(input.min) && value <= Number(input.max) ? value : Number(input.defaultValue);
}

// Show the tab for an environment; loads on first show and when the days changed.
export function showAge(id) {
  envId = id;
  if (loadedDays !== currentDays()) load(currentDays());
}

document.getElementById("age-form").addEventListener("submit", function (event) {
  event.preventDefault();
  load(currentDays());
});
