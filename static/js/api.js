// Every URL the page scripts use, built in one place. Ids and values are always URL-encoded.

const BASE = "/api/v1";
const part = encodeURIComponent;

function withQuery(path, params) {
  const query = params ? new URLSearchParams(params).toString() : "";
  return query ? path + "?" + query : path;
}

export const api = {
  me: () => BASE + "/me",
  preferences: () => BASE + "/me/preferences",
  reauth: () => BASE + "/me/reauth",
  passkeyOptions: () => BASE + "/me/second-factor/passkeys/options",
  passkeys: () => BASE + "/me/second-factor/passkeys",
  environments: () => BASE + "/environments",
  environment: (id) => BASE + "/environments/" + part(id),
  // action: "sync", "pause", "resume", "sync-runs", "password-age", "credentials".
  environmentAction: (id, action, params) => withQuery(api.environment(id) + "/" + action, params),
  testConnection: () => BASE + "/environments/test-connection",
  definitions: () => BASE + "/environments/definitions",
  definitionsExport: () => BASE + "/environments/definitions/export",
  definitionsImport: () => BASE + "/environments/definitions/import",
  syncRun: (id) => BASE + "/sync-runs/" + part(id),
  scheduler: () => BASE + "/scheduler",
  credentials: (params) => withQuery(BASE + "/credentials", params),
  credential: (id) => BASE + "/credentials/" + part(id),
  reveal: (id) => api.credential(id) + "/reveal",
  history: (id) => api.credential(id) + "/history",
  historyReveal: (id, entryId) => api.history(id) + "/" + part(entryId) + "/reveal",
  seenBy: (id) => api.credential(id) + "/seen-by",
  accessRequests: (id) => api.credential(id) + "/access-requests",
  requests: (params) => withQuery(BASE + "/access-requests", params),
  // step: "approve", "deny" or "revoke".
  requestStep: (id, step) => BASE + "/access-requests/" + part(id) + "/" + step,
  seenRotate: () => BASE + "/audit/seen/rotate",
  actions: () => BASE + "/credentials/actions",
  action: (id) => BASE + "/credential-actions/" + part(id),
  // step: "retry" or "cancel".
  actionStep: (id, step) => api.action(id) + "/" + step,
  expiryCheck: (envId) => api.environment(envId) + "/expiry-check",
  checkout: (id) => api.credential(id) + "/checkout",
  checkouts: (params) => withQuery(BASE + "/checkouts", params),
  checkin: (id) => BASE + "/checkouts/" + part(id) + "/checkin",
  takeBack: (id) => BASE + "/checkouts/" + part(id) + "/take-back",
  needsRotation: (params) => withQuery(BASE + "/needs-rotation", params),
};

export const pages = {
  signIn: (next) => withQuery("/login", { next: next }),
  passkeySignInOptions: () => "/login/verify/passkey/options",
  passkeySignIn: () => "/login/verify/passkey",
  security: () => "/account/security",
  environment: (id, params) => withQuery("/environments/" + part(id), params),
  editEnvironment: (id) => "/environments/" + part(id) + "/edit",
  newEnvironment: () => "/environments/new",
  dashboard: () => "/",
  seen: (person) => withQuery("/audit/seen", { person: person }),
};
