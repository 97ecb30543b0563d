// Passkeys (WebAuthn): register one on the Security page, sign in with one at the second step.
// The server sends options with binary fields in base64url; the browser needs ArrayBuffers.
import { csrfToken, el, post } from "./portal.js";
import { api, pages } from "./api.js";

function toBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
}

function toText(buffer) {
  let binary = "";
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function descriptors(list) {
  return (list || []).map((d) => Object.assign({}, d, { id: toBytes(d.id) }));
}

function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toText(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toText(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  }
  if (r.authenticatorData) {
    response.authenticatorData = toText(r.authenticatorData);
    response.signature = toText(r.signature);
    response.userHandle = r.userHandle ? toText(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    response: response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment || null,
  };
}

function say(node, text) {
  if (node) node.textContent = text;
}

async function register(form) {
  const status = document.getElementById("passkey-register-status");
  const name = form.elements.name.value.trim();
  const password = form.elements.password.value;
  if (!name || !password) {
    say(status, "Give the passkey a name and type your password.");
    return;
  }
  say(status, "Follow your browser's prompt…");
  try {
    const options = await post(api.passkeyOptions(), { password: password });
    form.elements.password.value = "";
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    options.excludeCredentials = descriptors(options.excludeCredentials);
    const credential = await navigator.credentials.create({ publicKey: options });
    const added = await post(api.passkeys(), { name: name, credential: credentialJson(credential) });
    if (added.recovery_codes) {
      // The first factor: its recovery codes are shown here, once.
      say(status, "Passkey added. Keep these recovery codes somewhere safe; they are shown only now.");
      const list = el("ol", { class: "recovery-codes", id: "recovery-codes" },
        ...added.recovery_codes.map((code) => el("li", {}, el("code", {}, code))));
      const done = el("a", { class: "button primary", href: pages.security() }, "I have saved them");
      form.replaceChildren(status, list, el("div", { class: "actions-row" }, done));
      return;
    }
    window.location.assign(pages.security());
  } catch (error) {
    say(status, "The passkey was not added: " + (error.message || error.name));
  }
}

async function signIn(button) {
  const status = document.getElementById("passkey-status");
  say(status, "Follow your browser's prompt…");
  const headers = { "Accept": "application/json", "Content-Type": "application/json",
    "X-CSRFToken": csrfToken() };
  try {
    let response = await fetch(pages.passkeySignInOptions(),
      { method: "POST", credentials: "same-origin", headers: headers, body: "{}" });
    let data = await response.json();
    if (!response.ok) throw new Error(data.error || "Request failed");
    data.challenge = toBytes(data.challenge);
    data.allowCredentials = descriptors(data.allowCredentials);
    const credential = await navigator.credentials.get({ publicKey: data });
    response = await fetch(pages.passkeySignIn(), {
      method: "POST", credentials: "same-origin", headers: headers,
      body: JSON.stringify({ credential: credentialJson(credential), next: button.dataset.next || "" }),
    });
    data = await response.json();
    if (!response.ok) throw new Error(data.error || "Request failed");
    window.location.assign(data.redirect);
  } catch (error) {
    say(status, "Passkey sign-in failed: " + (error.message || error.name));
  }
}

const form = document.getElementById("passkey-register");
if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    register(form);
  });
}
const button = document.getElementById("passkey-sign-in");
if (button) button.addEventListener("click", () => signIn(button));
