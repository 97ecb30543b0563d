// An OpenID Provider (panva's oidc-provider) on loopback over HTTPS, for the portal's tests.
//
//   node provider.mjs --config client.json --accounts accounts.json \
//     --cert server.pem --key server.key [--port 0] [--watch-stdin]
//
// Each option may also come from the environment: OIDC_CONFIG, OIDC_ACCOUNTS, OIDC_CERT,
// OIDC_KEY, OIDC_PORT. Port 0 (the default) lets the system choose a free port. The issuer is
// https://127.0.0.1:PORT. Once listening, one line goes to stdout:
//
//   oidc-provider ready https://127.0.0.1:PORT
//
// The config file registers one client:
//   {"client": {"client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
//               "token_endpoint_auth_method": "client_secret_basic" | "client_secret_post",
//               "post_logout_redirect_uris": ["..."]}}
//
// The accounts file is read again at every account lookup, so a test may rewrite it between
// sign-ins (write a new file and rename it over the old one):
//   {"alice": {"password": "...", "email": "...", "name": "...", "groups": ["ops"],
//              "email_verified": true, "sub": "alice"}}
// Only "password" is needed; "sub" defaults to the key, "email_verified" to true, "groups" to [].
//
// The sign-in page (GET /interaction/UID) has one form posting to /interaction/UID/login with
// the inputs "login" and "password" and a submit button. A wrong password or an unknown user
// gives the form again with status 401 and a message in the element with id "error". Consent
// is given automatically. With --watch-stdin the process ends when its standard input closes,
// so it does not outlive the test process that started it.

import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { parseArgs } from 'node:util';

import Provider, { interactionPolicy } from 'oidc-provider';

const { values: options } = parseArgs({
  options: {
    config: { type: 'string', default: process.env.OIDC_CONFIG },
    accounts: { type: 'string', default: process.env.OIDC_ACCOUNTS },
    cert: { type: 'string', default: process.env.OIDC_CERT },
    key: { type: 'string', default: process.env.OIDC_KEY },
    port: { type: 'string', default: process.env.OIDC_PORT ?? '0' },
    'watch-stdin': { type: 'boolean', default: false },
  },
});

for (const name of ['config', 'accounts', 'cert', 'key']) {
  if (!options[name]) {
    console.error(`provider.mjs: --${name} is required`);
    process.exit(2);
  }
}

const ACCOUNTS_PATH = options.accounts;
const { client } = JSON.parse(readFileSync(options.config, 'utf8'));

/** Escape text for HTML element content and attribute values. */
function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A self-contained HTML page (no outside resources, so a browser fetches nothing else). */
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body{font-family:sans-serif;max-width:22rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin-top:.8rem}input{width:100%;box-sizing:border-box;padding:.4rem}
button{margin-top:1rem;padding:.5rem 1rem}#error{color:#a00}
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>`;
}

/** All accounts as {accountId: entry}; the file is read again at each call. */
function readAccounts() {
  const raw = JSON.parse(readFileSync(ACCOUNTS_PATH, 'utf8'));
  const accounts = new Map();
  for (const [login, entry] of Object.entries(raw)) {
    accounts.set(entry.sub ?? login, { login, ...entry });
  }
  return accounts;
}

/** The account whose login name is `login` and whose password is `password`, or undefined. */
function checkCredentials(login, password) {
  const digest = (value) => createHash('sha256').update(String(value)).digest();
  for (const [accountId, entry] of readAccounts()) {
    if (entry.login === login && typeof entry.password === 'string'
        && timingSafeEqual(digest(entry.password), digest(password))) {
      return accountId;
    }
  }
  return undefined;
}

async function findAccount(ctx, id) {
  const entry = readAccounts().get(id);
  if (!entry) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: entry.email,
        email_verified: entry.email_verified ?? true,
        name: entry.name,
        preferred_username: entry.preferred_username ?? entry.login,
        groups: entry.groups ?? [],
      };
    },
  };
}

function loginForm(uid, { login = '', error = '' } = {}) {
  const message = error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : '';
  return page('Sign in', `${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="login">Username</label>
<input id="login" name="login" type="text" value="${escapeHtml(login)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>`);
}

/** Read an application/x-www-form-urlencoded request body. */
async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Grant what the consent prompt asks for, as a user who always agrees would. */
async function autoConsent(provider, details) {
  const { prompt: { details: missing }, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

/** Koa middleware serving /interaction/UID (sign-in form, automatic consent). */
function interactions(provider) {
  const route = /^\/interaction\/([\w-]+)(\/login)?$/;
  return async (ctx, next) => {
    const match = route.exec(ctx.path);
    if (!match) return next();
    ctx.set('Cache-Control', 'no-store');
    try {
      return await interact(provider, ctx, match[1], Boolean(match[2]));
    } catch (error) {
      const status = error.statusCode ?? error.status;
      if (!status || status >= 500) throw error;
      // Such as an expired interaction or one whose cookie this browser does not have.
      ctx.status = status;
      ctx.type = 'html';
      const text = [error.error ?? error.message, error.error_description].filter(Boolean);
      ctx.body = page('Sign-in error', `<p id="error" role="alert">${escapeHtml(text.join(': '))}</p>`);
      return undefined;
    }
  };
}

/** One request to /interaction/UID (GET) or /interaction/UID/login (POST). */
async function interact(provider, ctx, uid, login) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  let result;
  if (ctx.method === 'GET' && !login) {
    if (details.prompt.name === 'consent') {
      result = await autoConsent(provider, details);
    } else if (details.prompt.name === 'login') {
      ctx.type = 'html';
      ctx.body = loginForm(uid);
      return undefined;
    } else {
      ctx.throw(501, `prompt ${details.prompt.name} not supported`);
    }
  } else if (ctx.method === 'POST' && login && details.prompt.name === 'login') {
    const body = await formBody(ctx.req);
    const accountId = checkCredentials(body.get('login') ?? '', body.get('password') ?? '');
    if (!accountId) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginForm(uid, {
        login: body.get('login') ?? '',
        error: 'Invalid username or password.',
      });
      return undefined;
    }
    result = { login: { accountId } };
  } else {
    ctx.throw(405);
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: false,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
  return undefined;
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Sign-in error', Object.entries(out)
    .map(([key, value]) => `<p><strong>${escapeHtml(key)}</strong>: ${escapeHtml(value)}</p>`)
    .join('\n'));
}

async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<p>You have been signed out.</p>');
}

/**
 * The default prompts, and one more reason to ask for a sign-in: the signed-in account was
 * removed from the accounts file (without it, the provider fails with a server error).
 */
function policy() {
  const { Check, base } = interactionPolicy;
  const prompts = base();
  prompts.get('login').checks.add(new Check(
    'account_removed',
    'The signed-in account no longer exists',
    (ctx) => (ctx.oidc.session.accountId && !ctx.oidc.account
      ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT),
  ));
  return prompts;
}

/** The configuration for `new Provider(issuer, configuration)`. */
function configuration() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };
  return {
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    scopes: ['openid'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Scope-given claims (groups among them) in the ID token too, not only at userinfo.
    conformIdTokenClaims: false,
    findAccount,
    interactions: { policy: policy(), url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    renderError,
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
    },
  };
}

const server = createServer({
  cert: readFileSync(options.cert),
  key: readFileSync(options.key),
});

server.on('error', (error) => {
  console.error(`provider.mjs: ${error.message}`);
  process.exit(1);
});

server.listen(Number(options.port), '127.0.0.1', async () => {
  try {
    const issuer = `https://127.0.0.1:${server.address().port}`;
    const provider = new Provider(issuer, configuration());
    provider.use(interactions(provider));
    provider.on('server_error', (ctx, error) => console.error('server_error', error));
    // Static clients are checked at first use: check this one now, so a bad one fails start-up.
    await provider.Client.find(client.client_id);
    server.on('request', provider.callback());
    console.log(`oidc-provider ready ${issuer}`);
  } catch (error) {
    const description = error.error_description ? ` (${error.error_description})` : '';
    console.error(`provider.mjs: cannot start: ${error.message}${description}\n${error.stack}`);
    process.exit(1);
  }
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (options['watch-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
