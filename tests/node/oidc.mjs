// A real OpenID provider on loopback for Portcullis's tests, as its resource server and as an
// OAuth client of an upstream.
//
//   tests/node/node_modules/node/bin/node tests/node/oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]
//       [--upstream-resource URL]... [--upstream-scopes "a b"] [--upstream-token-ttl SECS]
//       [--portcullis-client-id ID] [--portcullis-client-secret S] [--portcullis-public]
//       [--portcullis-auth-method M] [--portcullis-redirect URI]... [--approval-client ID]
//
// Starts two independent oidc-provider instances on 127.0.0.1 (ephemeral ports): "main" and
// "rogue" (its own keys and issuer, for wrong-issuer tokens). Every token is obtained through the
// provider's real flows: authorization code + PKCE (S256) driven over HTTP by the headless user
// agent of flow.mjs (manual redirects, a cookie jar, the provider's login and consent pages as
// forms), through an interaction handler built on the provider's documented
// interactionDetails/interactionFinished API, then the token endpoint with resource=URL
// (RFC 8707), which yields an RFC 9068 JWT access token. Prints ONE JSON line on stdout once
// every token is ready, then keeps serving until stdin closes, SIGTERM/SIGINT, or
// --lifetime-secs pass. Logs go to stderr.
//
// With --upstream-resource (the "upstream" mode) main is also the authorization server of an
// upstream MCP server that Portcullis calls for its users: a client for Portcullis, refresh
// tokens, revocation (RFC 7009), introspection, client credentials, RFC 8693 token exchange,
// and POST /test/revoke-grants. See tests/node/README.md.
//
// With --approval-client ID, main also registers the client of Portcullis's approval page: a
// public native client (PKCE, no secret) whose loopback redirect
// http://localhost/approvals/signed-in matches on any port, whose tokens are for --resource.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { UserAgent, pkcePair, withoutQuery } from './flow.mjs';

// oidc-provider prints its notices with console.info, i.e. on stdout; stdout carries only the
// JSON line, so every console method goes to stderr. (Hence the dynamic import below.)
for (const m of ['log', 'info', 'debug']) console[m] = console.error;
process.stdout.on('error', () => {}); // a reader that went away must not crash us

const started = Date.now();
const log = (msg) => process.stderr.write(`oidc.mjs: ${msg}\n`);
function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}
process.on('uncaughtException', (e) => fail(e?.stack ?? String(e)));
process.on('unhandledRejection', (e) => fail(e?.stack ?? String(e)));

const USAGE = `usage: oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]
    [--upstream-resource URL]... [--upstream-scopes "a b"] [--upstream-token-ttl SECS]
    [--portcullis-client-id ID] [--portcullis-client-secret S] [--portcullis-public]
    [--portcullis-auth-method client_secret_basic|client_secret_post|none] [--portcullis-redirect URI]...
    [--approval-client ID]`;

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      resource: { type: 'string' },
      'other-resource': { type: 'string', default: 'http://127.0.0.1:1/other' },
      'lifetime-secs': { type: 'string', default: '300' },
      'upstream-resource': { type: 'string', multiple: true, default: [] },
      'upstream-scopes': { type: 'string', default: 'mail.read mail.send' },
      'upstream-token-ttl': { type: 'string', default: '300' },
      'portcullis-client-id': { type: 'string', default: 'portcullis' },
      'portcullis-client-secret': { type: 'string' },
      'portcullis-public': { type: 'boolean', default: false },
      'portcullis-auth-method': { type: 'string' },
      'portcullis-redirect': { type: 'string', multiple: true, default: [] },
      'approval-client': { type: 'string' },
      'issued-tokens': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (e) {
  fail(`${e.message}\n${USAGE}`);
}
if (args.help) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(0);
}
if (!args.resource) fail(`--resource URL is required\n${USAGE}`);
const RESOURCE = args.resource;
const OTHER_RESOURCE = args['other-resource'];
const UPSTREAM_RESOURCES = args['upstream-resource'];
for (const [flag, value] of [['--resource', RESOURCE], ['--other-resource', OTHER_RESOURCE], ...UPSTREAM_RESOURCES.map((u) => ['--upstream-resource', u])]) {
  let u;
  try { u = new URL(value); } catch { fail(`${flag} ${value}: not an absolute URL`); }
  // RFC 8707: an absolute URI without a fragment.
  if (u.hash) fail(`${flag} ${value}: a resource indicator must not have a fragment`);
}
if (RESOURCE === OTHER_RESOURCE) fail('--resource and --other-resource must differ');
if (new Set([RESOURCE, OTHER_RESOURCE, ...UPSTREAM_RESOURCES]).size !== 2 + UPSTREAM_RESOURCES.length) {
  fail('each --upstream-resource must differ from the others, --resource and --other-resource');
}
const LIFETIME_SECS = Number(args['lifetime-secs']);
if (!Number.isFinite(LIFETIME_SECS) || LIFETIME_SECS <= 0) fail(`--lifetime-secs ${args['lifetime-secs']}: not a positive number`);

// The upstream mode: everything below it exists only when an upstream resource is given, so that
// without these flags the providers, their metadata and the JSON line are what they were.
const UPSTREAM = UPSTREAM_RESOURCES.length > 0;
const UPSTREAM_SCOPES = [...new Set(args['upstream-scopes'].split(' ').filter(Boolean))];
if (UPSTREAM && !UPSTREAM_SCOPES.length) fail('--upstream-scopes: no scope given');
const UPSTREAM_TOKEN_TTL = Number(args['upstream-token-ttl']);
if (!Number.isInteger(UPSTREAM_TOKEN_TTL) || UPSTREAM_TOKEN_TTL <= 0) fail(`--upstream-token-ttl ${args['upstream-token-ttl']}: not a positive whole number of seconds`);
const PORTCULLIS_CLIENT_ID = args['portcullis-client-id'];
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'none'];
const PORTCULLIS_AUTH_METHOD = args['portcullis-auth-method'] ?? (args['portcullis-public'] ? 'none' : 'client_secret_basic');
if (!AUTH_METHODS.includes(PORTCULLIS_AUTH_METHOD)) fail(`--portcullis-auth-method ${PORTCULLIS_AUTH_METHOD}: use one of ${AUTH_METHODS.join(', ')}`);
if (args['portcullis-public'] && PORTCULLIS_AUTH_METHOD !== 'none') fail('--portcullis-public contradicts --portcullis-auth-method');
const PORTCULLIS_PUBLIC = PORTCULLIS_AUTH_METHOD === 'none';
if (PORTCULLIS_PUBLIC && args['portcullis-client-secret'] !== undefined) fail('a public client (--portcullis-public) has no --portcullis-client-secret');
const PORTCULLIS_CLIENT_SECRET = PORTCULLIS_PUBLIC
  ? undefined
  : args['portcullis-client-secret'] ?? crypto.randomBytes(24).toString('base64url');
// A native client's loopback redirect URI matches with any port (RFC 8252 §7.3; oidc-provider 9
// compares native clients' http loopback URIs without their ports), so Portcullis may bind its
// callback on an ephemeral port.
const PORTCULLIS_REDIRECTS = args['portcullis-redirect'].length ? args['portcullis-redirect'] : ['http://127.0.0.1/oauth/callback'];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const { default: Provider, errors } = await import('oidc-provider');

// ---------------------------------------------------------------------------------------------
// Configuration shared by both providers.

const RESOURCE_SCOPE = 'mcp files.read files.write mail.send';
const ACCESS_TOKEN_TTL = 300; // seconds
const SHORT_TTL = 2; // seconds, the `expired` token
const CLIENT_ID = 'portcullis-test';
// Authorization codes whose access token gets SHORT_TTL (the `expired` token): decided by the
// ttl.AccessToken function at the token endpoint, so that token is alice's in every claim but
// iat/exp/jti (same client, scope, audience).
const shortLivedCodes = new Set();
// Exact loopback redirect URI; nothing listens there: the code is read from the Location header.
const REDIRECT_URI = 'http://127.0.0.1:9/callback';

const ACCOUNTS = {
  alice: { groups: ['eng'], tenant: 'acme' },
  bob: { groups: ['sales'], tenant: 'globex' },
  carol: { groups: ['eng', 'approvers'], tenant: 'acme' },
};

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  // No kid given: oidc-provider sets the RFC 7638 thumbprint, so the two providers' kids differ.
  return { keys: [{ ...rsa, alg: 'RS256', use: 'sig' }, { ...ec, alg: 'ES256', use: 'sig' }] };
}

// The resource servers main knows: --resource and --other-resource (Portcullis-facing), and in
// the upstream mode each --upstream-resource. Anything else is invalid_target.
function resourceServerInfo(resourceIndicator) {
  if (resourceIndicator === RESOURCE || resourceIndicator === OTHER_RESOURCE) {
    return {
      scope: RESOURCE_SCOPE,
      audience: resourceIndicator,
      accessTokenTTL: ACCESS_TOKEN_TTL,
      accessTokenFormat: 'jwt', // RFC 9068
      jwt: { sign: { alg: 'RS256' } },
    };
  }
  if (UPSTREAM_RESOURCES.includes(resourceIndicator)) {
    return {
      scope: UPSTREAM_SCOPES.join(' '),
      audience: resourceIndicator,
      accessTokenTTL: UPSTREAM_TOKEN_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    };
  }
  return undefined;
}

// The client Portcullis uses towards the upstream's authorization server.
function portcullisClient() {
  return {
    client_id: PORTCULLIS_CLIENT_ID,
    ...(PORTCULLIS_PUBLIC ? {} : { client_secret: PORTCULLIS_CLIENT_SECRET }),
    client_name: 'Portcullis',
    // native: loopback redirect URIs match with any port (RFC 8252 §7.3).
    application_type: 'native',
    token_endpoint_auth_method: PORTCULLIS_AUTH_METHOD,
    // Client credentials need a confidential client (RFC 6749 §4.4).
    grant_types: ['authorization_code', 'refresh_token', ...(PORTCULLIS_PUBLIC ? [] : ['client_credentials']), TOKEN_EXCHANGE],
    response_types: ['code'],
    redirect_uris: PORTCULLIS_REDIRECTS,
  };
}

// The client of Portcullis's approval page (--approval-client), on the main provider only.
function approvalClient(clientId) {
  return {
    client_id: clientId,
    client_name: 'Portcullis approvals',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://localhost/approvals/signed-in'],
  };
}

function configuration({ upstream, approvals }) {
  return {
    clients: [
      { // public client, PKCE required (pkceRequired defaults to true for auth method none)
        client_id: CLIENT_ID,
        client_name: 'Portcullis tests',
        application_type: 'web',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
      },
      ...(upstream ? [portcullisClient()] : []),
      ...(approvals ? [approvalClient(approvals)] : []),
    ],
    pkce: { required: () => true },
    jwks: signingKeys(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false }, // our own handler below, on the documented API
      // RFC 7009 and RFC 7662, each client for its own tokens only. JWT access tokens cannot be
      // revoked or introspected (the provider keeps no copy): unsupported_token_type.
      revocation: { enabled: upstream, allowedPolicy: (ctx, client, token) => token.clientId === client.clientId },
      introspection: { enabled: upstream, allowedPolicy: (ctx, client, token) => token.clientId === client.clientId },
      clientCredentials: { enabled: upstream },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator, client) {
          const info = resourceServerInfo(resourceIndicator);
          if (!info || (!upstream && UPSTREAM_RESOURCES.includes(resourceIndicator))) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return info;
        },
      },
    },
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const account = ACCOUNTS[token.accountId];
      if (!account) return undefined;
      const claims = { groups: account.groups, tenant: account.tenant };
      // RFC 8693 §4.1: an exchanged token names the party acting for the subject.
      if (token.gty === TOKEN_EXCHANGE) claims.act = { sub: token.clientId };
      return claims;
    },
    async findAccount(ctx, sub) {
      if (!Object.hasOwn(ACCOUNTS, sub)) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...ACCOUNTS[sub] }) };
    },
    // Refresh tokens for every client allowed the refresh_token grant (only Portcullis's), without
    // offline_access: that scope is dropped unless prompt=consent accompanies it (OIDC Core
    // §11), which would make every refresh test depend on a detail of the authorization request.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // ... and such tokens outlive the browser session they were granted in.
    expiresWithSession: async (ctx, code) => !ctx.oidc.client?.grantTypeAllowed('refresh_token') && !code.scopes.has('offline_access'),
    // Rotated on every use: the client must keep the newest one; reusing a used one is
    // invalid_grant and revokes the whole grant (replay detection).
    rotateRefreshToken: true,
    ttl: {
      AccessToken(ctx, token) {
        const code = ctx?.oidc?.route === 'token' ? ctx.oidc.params?.code : undefined;
        if (code && shortLivedCodes.has(code)) return SHORT_TTL;
        return token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL;
      },
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 24 * 3600,
      Session: 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The interaction handler: the provider's login and consent pages, small HTML forms a person (or
// flow.mjs) fills in, on the documented interactionDetails/interactionFinished API.
//   GET  /interaction/UID        the page for the pending prompt: login (account field, prefilled
//                                with login_hint) or consent (what is asked, the account hidden);
//                                both with a submit button and a `deny` button.
//   POST /interaction/UID/login  account=NAME: the login prompt logs NAME in (it must exist); the
//                                consent prompt (NAME, when given, must be the logged-in account)
//                                grants exactly what the prompt says is missing. With `deny`
//                                set: access_denied back to the client.

const html = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${html(title)}</title></head>\n<body>\n${body}\n</body></html>\n`;
}

async function interactionPage(provider, req, res) {
  const { uid, prompt, params, session } = await provider.interactionDetails(req, res);
  const action = `/interaction/${encodeURIComponent(uid)}/login`;
  const buttons = '<button type="submit">Continue</button>\n<button type="submit" name="deny" value="deny">Deny</button>';
  let body;
  if (prompt.name === 'login') {
    const hint = typeof params.login_hint === 'string' ? params.login_hint : '';
    body = `<h1>Sign in to ${html(params.client_id)}</h1>
<form method="post" action="${html(action)}">
<label>Account <input type="text" name="account" value="${html(hint)}"></label>
${buttons}
</form>`;
  } else {
    const d = prompt.details;
    const asked = [
      ...(d.missingOIDCScope ?? []).map((scope) => `<li>${html(scope)}</li>`),
      ...Object.entries(d.missingResourceScopes ?? {}).map(([indicator, scopes]) => `<li>${html(indicator)}: ${html(scopes.join(' '))}</li>`),
    ].join('\n');
    body = `<h1>${html(params.client_id)} asks ${html(session?.accountId ?? '')} for (${html(prompt.name)})</h1>
<ul>
${asked}
</ul>
<form method="post" action="${html(action)}">
<input type="hidden" name="account" value="${html(session?.accountId ?? '')}">
${buttons}
</form>`;
  }
  res.statusCode = 200;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(page(`${prompt.name}: ${params.client_id}`, body));
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interactionSubmit(provider, req, res) {
  const form = await readForm(req);
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  const account = form.get('account');
  let result;
  if (form.has('deny')) {
    result = { error: 'access_denied', error_description: 'the user denied the request' };
  } else if (prompt.name === 'login') {
    if (typeof account === 'string' && Object.hasOwn(ACCOUNTS, account)) {
      result = { login: { accountId: account } };
    } else {
      result = { error: 'access_denied', error_description: `unknown account ${JSON.stringify(account)}` };
    }
  } else if (prompt.name === 'consent') {
    if (account && account !== session.accountId) {
      result = { error: 'access_denied', error_description: `consent by ${JSON.stringify(account)} for ${JSON.stringify(session.accountId)}` };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    }
  } else {
    result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
  }
  // As oidc-provider's own example: a consent keeps the login submitted before it, so that a
  // request with prompt=login (the approval page's) is not sent back to log in again.
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: prompt.name === 'consent' });
}

// ---------------------------------------------------------------------------------------------
// RFC 8693 token exchange (upstream mode). oidc-provider has no handler for it; this one is
// registered with provider.registerGrantType, the documented way to add a grant type. The token
// endpoint has already authenticated the client and checked that it may use the grant type.
//
// subject_token: an access token main issued for --resource (a user's inbound token to
// Portcullis), checked here in full because main keeps no copy of a JWT access token (JWT
// AccessToken.find finds nothing): RS256 signature by a key of main's own JWKS, typ at+jwt,
// iss = main, aud = --resource, exp in the future, sub a known account. resource (or audience):
// one --upstream-resource. scope: a subset of --upstream-scopes (all of them when omitted). The
// result is a JWT access token made with the provider's own AccessToken model (so format, keys,
// TTL and claims are exactly those of the authorization code grant): same sub, aud = the
// upstream resource, exactly the requested scopes, client_id = the exchanging client, and
// act = {sub: client_id}. No refresh token. Errors per RFC 8693 §2.2.2.

const SUBJECT_TOKEN_TYPES = new Set(['urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:jwt']);
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

function checkSubjectToken(op, token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new errors.InvalidRequest('subject_token is not a signed JWT');
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch {
    throw new errors.InvalidRequest('subject_token is not a signed JWT');
  }
  const key = header.alg === 'RS256' ? op.verificationKeys.get(header.kid) : undefined;
  const signed = key && crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'));
  if (!signed) throw new errors.InvalidRequest('subject_token is not signed by this issuer');
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const now = Math.floor(Date.now() / 1000);
  const problem = (header.typ !== 'at+jwt' && 'it is not an access token (typ)')
    || (claims.iss !== op.issuer && 'it comes from another issuer')
    || (!audience.includes(RESOURCE) && `its audience is not ${RESOURCE}`)
    || (!(typeof claims.exp === 'number' && now < claims.exp) && 'it has expired')
    || (!Object.hasOwn(ACCOUNTS, claims.sub) && 'its subject is not an account');
  if (problem) throw new errors.InvalidRequest(`subject_token refused: ${problem}`);
  return claims;
}

function tokenExchange(op) {
  return async function tokenExchangeHandler(ctx) {
    const { params, client, provider } = ctx.oidc;
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (!SUBJECT_TOKEN_TYPES.has(params.subject_token_type)) {
      throw new errors.InvalidRequest(`subject_token_type must be one of ${[...SUBJECT_TOKEN_TYPES].join(', ')}`);
    }
    if (params.actor_token !== undefined || params.actor_token_type !== undefined) {
      throw new errors.InvalidRequest('actor_token is not supported (the client is the actor)');
    }
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    if (params.resource !== undefined && params.audience !== undefined && params.resource !== params.audience) {
      throw new errors.InvalidTarget('resource and audience name different targets');
    }
    const target = params.resource ?? params.audience;
    if (!UPSTREAM_RESOURCES.includes(target)) {
      throw new errors.InvalidTarget(`resource must be one of ${UPSTREAM_RESOURCES.join(', ')}`);
    }
    const subject = checkSubjectToken(op, params.subject_token);

    const allowed = new Set(UPSTREAM_SCOPES);
    const requested = params.scope ? [...new Set(params.scope.split(' ').filter(Boolean))] : UPSTREAM_SCOPES;
    const refused = requested.filter((scope) => !allowed.has(scope));
    if (refused.length || !requested.length) {
      throw new errors.InvalidScope(`scope not allowed for ${target}`, refused.join(' '));
    }

    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      gty: TOKEN_EXCHANGE,
      scope: requested.join(' '),
      // Sets aud; makes the model pick the resource server's format (JWT), key and TTL.
      resourceServer: new provider.ResourceServer(target, resourceServerInfo(target)),
    });
    ctx.oidc.entity('AccessToken', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: token.tokenType,
      expires_in: token.expiration,
      scope: token.scope,
    };
  };
}

// ---------------------------------------------------------------------------------------------
// The test control endpoint (upstream mode): POST /test/revoke-grants?account=NAME destroys every
// grant of that account and the refresh tokens, codes and (stored) access tokens issued under
// them, as if the person revoked the app: the client's next refresh is invalid_grant. Grants are
// remembered from the provider's grant.saved events (the in-memory adapter cannot list them).

const grantsByAccount = new Map();

async function revokeGrants(provider, account) {
  const ids = [...(grantsByAccount.get(account) ?? [])];
  grantsByAccount.delete(account);
  for (const id of ids) {
    await Promise.all([provider.AccessToken, provider.RefreshToken, provider.AuthorizationCode].map((model) => model.revokeByGrantId(id)));
    const grant = await provider.Grant.find(id);
    if (grant) await grant.destroy();
  }
  return ids.length;
}

async function testControl(provider, req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const send = (status, body) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    res.end(`${JSON.stringify(body)}\n`);
  };
  // The server listens on 127.0.0.1 only; checked again here because this endpoint needs no
  // credentials.
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(req.socket.remoteAddress)) return send(403, { error: 'loopback only' });
  if (url.pathname !== '/test/revoke-grants' || req.method !== 'POST') return send(404, { error: 'not found' });
  const account = url.searchParams.get('account');
  if (!account || !Object.hasOwn(ACCOUNTS, account)) return send(400, { error: `unknown account ${JSON.stringify(account)}` });
  const revoked = await revokeGrants(provider, account);
  log(`test: revoked ${revoked} grant(s) of ${account}`);
  return send(200, { account, revoked_grants: revoked });
}

async function startProvider(name, { upstream = false, approvals = undefined } = {}) {
  let provider;
  const routes = (req, res) => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(path)) return interactionPage(provider, req, res);
    if (req.method === 'POST' && /^\/interaction\/[^/]+\/login$/.test(path)) return interactionSubmit(provider, req, res);
    if (upstream && path.startsWith('/test/')) return testControl(provider, req, res);
    return undefined;
  };
  const server = http.createServer((req, res) => {
    if (!provider) { res.statusCode = 503; res.end(); return; }
    const handled = routes(req, res);
    if (!handled) { callback(req, res); return; }
    handled.catch((e) => {
      log(`${name}: ${req.method} ${req.url.split('?')[0]} failed: ${e.stack ?? e}`);
      if (!res.headersSent) { res.statusCode = 400; res.setHeader('content-type', 'text/plain'); res.end(String(e.message ?? e)); }
    });
  });
  let callback;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration({ upstream, approvals }));
  if (args['issued-tokens']) {
    // Every token the token endpoint hands out, one per line, so that a test can look for
    // each of them in everything Portcullis wrote.
    provider.use(async (ctx, next) => {
      await next();
      const body = ctx.body;
      if (ctx.path.endsWith('/token') && body && typeof body === 'object') {
        const lines = ['access_token', 'refresh_token', 'id_token']
          .map((k) => body[k]).filter((v) => typeof v === 'string');
        if (lines.length) fs.appendFileSync(args['issued-tokens'], lines.map((l) => `${l}\n`).join(''));
      }
    });
  }
  callback = provider.callback();
  const op = { name, issuer, provider, server, verificationKeys: new Map() };
  if (upstream) {
    provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(op), [
      'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
      'requested_token_type', 'resource', 'audience', 'scope',
    ]);
    provider.on('grant.saved', (grant) => {
      if (!grantsByAccount.has(grant.accountId)) grantsByAccount.set(grant.accountId, new Set());
      grantsByAccount.get(grant.accountId).add(grant.jti);
    });
  }
  provider.on('server_error', (ctx, e) => log(`${name}: server_error: ${e.stack ?? e}`));
  provider.on('grant.error', (ctx, e) => log(`${name}: grant.error: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`));
  provider.on('authorization.error', (ctx, e) => log(`${name}: authorization.error: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`));
  return op;
}

// ---------------------------------------------------------------------------------------------
// The client side, through flow.mjs's user agent.

// Authorization code + PKCE for `account` up to the redirect to `redirectUri` (not requested:
// nothing need listen there); checks state and the RFC 9207 iss. Returns the code and verifier.
async function authorize(op, { clientId, redirectUri, account, scope, resource, what }) {
  const { verifier, challenge } = pkcePair();
  const state = crypto.randomBytes(16).toString('base64url');
  const auth = new URL('/auth', op.issuer);
  auth.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    resource,
    state,
    login_hint: account,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  const agent = new UserAgent({ account });
  const landing = withoutQuery(redirectUri);
  const end = await agent.browse(auth.href, {
    decide: (url) => {
      if (withoutQuery(url) === landing) return 'stop';
      if (url.origin !== op.issuer) throw new Error(`${what}: redirected off the provider to ${url.href}`);
      return undefined;
    },
  });
  if (!end.stopped) throw new Error(`${what}: ${end.url} answered ${end.status} without a redirect: ${end.body.slice(0, 500)}`);
  const p = new URL(end.url).searchParams;
  if (p.get('error')) throw new Error(`${what}: authorization error ${p.get('error')}: ${p.get('error_description')}`);
  if (p.get('state') !== state) throw new Error(`${what}: state mismatch in ${end.url}`);
  if (p.get('iss') !== op.issuer) throw new Error(`${what}: iss ${p.get('iss')} in the authorization response, expected ${op.issuer}`);
  const code = p.get('code');
  if (!code) throw new Error(`${what}: no code in ${end.url}`);
  return { code, verifier };
}

// A token endpoint (or revocation endpoint) request, with the client authentication `auth`:
// { clientId, method, secret }. Returns { status, body }.
async function post(url, params, { clientId, method, secret }) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const form = new URLSearchParams(params);
  if (method === 'client_secret_basic') {
    // RFC 6749 §2.3.1: each part form-urlencoded before base64.
    const enc = (v) => encodeURIComponent(v).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
  } else {
    form.set('client_id', clientId);
    if (method === 'client_secret_post') form.set('client_secret', secret);
  }
  const res = await fetch(url, { method: 'POST', headers, body: form });
  const text = await res.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { text }; }
  return { status: res.status, body };
}

const testClient = { clientId: CLIENT_ID, method: 'none' };

async function mint(op, { account, scope, resource = RESOURCE, shortLived = false }) {
  const what = `${op.name}: ${account} scope="${scope}" resource=${resource}${shortLived ? ' (short-lived)' : ''}`;
  const { code, verifier } = await authorize(op, { clientId: CLIENT_ID, redirectUri: REDIRECT_URI, account, scope, resource, what });
  if (shortLived) shortLivedCodes.add(code);
  const { status, body } = await post(new URL('/token', op.issuer), {
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
    resource,
  }, testClient);
  if (status !== 200) throw new Error(`${what}: token endpoint answered ${status}: ${JSON.stringify(body)}`);
  if (body.token_type !== 'Bearer' || typeof body.access_token !== 'string') {
    throw new Error(`${what}: unexpected token response ${JSON.stringify(body)}`);
  }
  return body.access_token;
}

const b64json = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
function decode(jwt) {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

// Self-check: the claims we promise, and the signature against the provider's published JWKS.
async function check(label, jwt, op, jwks, want) {
  const { header, payload } = decode(jwt);
  const problems = [];
  if (header.typ !== 'at+jwt') problems.push(`typ ${header.typ}`);
  if (header.alg !== 'RS256') problems.push(`alg ${header.alg}`);
  if (payload.iss !== op.issuer) problems.push(`iss ${payload.iss}`);
  if (payload.aud !== want.aud) problems.push(`aud ${JSON.stringify(payload.aud)}`);
  if (payload.scope !== want.scope) problems.push(`scope ${JSON.stringify(payload.scope)}`);
  if (payload.sub !== want.sub) problems.push(`sub ${payload.sub}`);
  if (payload.client_id !== want.client_id) problems.push(`client_id ${payload.client_id}`);
  if (JSON.stringify(payload.groups) !== JSON.stringify(ACCOUNTS[want.sub].groups)) problems.push(`groups ${JSON.stringify(payload.groups)}`);
  if (payload.tenant !== ACCOUNTS[want.sub].tenant) problems.push(`tenant ${payload.tenant}`);
  if (payload.exp - payload.iat !== want.ttl) problems.push(`lifetime ${payload.exp - payload.iat}s`);
  if (JSON.stringify(payload.act) !== JSON.stringify(want.act)) problems.push(`act ${JSON.stringify(payload.act)}`);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) {
    problems.push(`kid ${header.kid} not in ${op.name}'s JWKS`);
  } else {
    const [h, p, s] = jwt.split('.');
    const ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), crypto.createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'));
    if (!ok) problems.push('signature does not verify');
  }
  if (problems.length) throw new Error(`self-check of token ${label}: ${problems.join(', ')}`);
}

async function discover(op) {
  const res = await fetch(new URL('/.well-known/openid-configuration', op.issuer));
  if (!res.ok) throw new Error(`${op.name}: discovery answered ${res.status}`);
  const doc = await res.json();
  if (doc.issuer !== op.issuer) throw new Error(`${op.name}: discovery issuer ${doc.issuer}`);
  const jwks = await (await fetch(doc.jwks_uri)).json();
  return { doc, jwks };
}

// The upstream mode's self-check, the way Portcullis will use it: alice authorizes the Portcullis
// client (on a loopback redirect port other than the registered one), code exchange, refresh
// (rotated), token exchange of her inbound token, then revocation of the refresh token, after
// which refreshing is invalid_grant. Its grant ends revoked, so it leaves nothing behind.
async function checkUpstream(op, meta, aliceInbound) {
  const client = { clientId: PORTCULLIS_CLIENT_ID, method: PORTCULLIS_AUTH_METHOD, secret: PORTCULLIS_CLIENT_SECRET };
  const resource = UPSTREAM_RESOURCES[0];
  const scope = UPSTREAM_SCOPES.join(' ');
  const redirect = new URL(PORTCULLIS_REDIRECTS[0]);
  if (redirect.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(redirect.hostname)) redirect.port = '9';
  const redirectUri = redirect.href;
  const what = `upstream self-check (${PORTCULLIS_CLIENT_ID}, alice, ${resource})`;
  const want = { client_id: PORTCULLIS_CLIENT_ID, ttl: UPSTREAM_TOKEN_TTL, sub: 'alice', aud: resource, scope };
  const expect = (label, { status, body }, wantStatus = 200) => {
    if (status !== wantStatus) throw new Error(`${what}: ${label} answered ${status}, expected ${wantStatus}: ${JSON.stringify(body)}`);
    return body;
  };
  const tokenEndpoint = meta.doc.token_endpoint;

  const { code, verifier } = await authorize(op, { clientId: PORTCULLIS_CLIENT_ID, redirectUri, account: 'alice', scope, resource, what });
  const first = expect('code exchange', await post(tokenEndpoint, {
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, resource,
  }, client));
  await check('upstream (code)', first.access_token, op, meta.jwks, want);
  if (typeof first.refresh_token !== 'string') throw new Error(`${what}: no refresh token: ${JSON.stringify(first)}`);

  const second = expect('refresh', await post(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client));
  await check('upstream (refresh)', second.access_token, op, meta.jwks, want);
  if (typeof second.refresh_token !== 'string' || second.refresh_token === first.refresh_token) {
    throw new Error(`${what}: the refresh token was not rotated`);
  }

  const narrowed = UPSTREAM_SCOPES[0];
  const exchanged = expect('token exchange', await post(tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE,
    subject_token: aliceInbound,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    resource,
    scope: narrowed,
  }, client));
  if (exchanged.issued_token_type !== ACCESS_TOKEN_TYPE || exchanged.refresh_token !== undefined) {
    throw new Error(`${what}: unexpected token exchange response ${JSON.stringify(exchanged)}`);
  }
  await check('upstream (token exchange)', exchanged.access_token, op, meta.jwks, { ...want, scope: narrowed, act: { sub: PORTCULLIS_CLIENT_ID } });
  expect('token exchange of a token for another audience', await post(tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE, subject_token: first.access_token, subject_token_type: ACCESS_TOKEN_TYPE, resource,
  }, client), 400);

  expect('revocation', await post(meta.doc.revocation_endpoint, { token: second.refresh_token, token_type_hint: 'refresh_token' }, client));
  const after = expect('refresh after revocation', await post(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: second.refresh_token }, client), 400);
  if (after.error !== 'invalid_grant') throw new Error(`${what}: refresh after revocation gave ${JSON.stringify(after)}`);
  log(`${what}: passed (the two grant errors above were provoked)`);
}

// ---------------------------------------------------------------------------------------------

let ready = false;
let main;
let rogue;
function shutdown(why, status = 0) {
  log(`${why}; shutting down`);
  for (const op of [main, rogue]) {
    if (op) { op.server.close(); op.server.closeAllConnections(); }
  }
  process.exit(status);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
const onStdinClosed = () => (ready
  ? shutdown('stdin closed')
  : shutdown('stdin closed before the tokens were ready (keep stdin open, e.g. a pipe)', 1));
process.stdin.on('end', onStdinClosed);
process.stdin.on('close', onStdinClosed);
process.stdin.on('error', onStdinClosed);
process.stdin.resume();
setTimeout(() => shutdown(`--lifetime-secs ${LIFETIME_SECS} passed`), LIFETIME_SECS * 1000);

[main, rogue] = await Promise.all([
  startProvider('main', { upstream: UPSTREAM, approvals: args['approval-client'] }),
  startProvider('rogue'),
]);
log(`main issuer ${main.issuer}, rogue issuer ${rogue.issuer}; node ${process.version}`);
const [mainMeta, rogueMeta] = await Promise.all([discover(main), discover(rogue)]);
// The keys the token exchange handler verifies subject tokens with: main's own, as published.
for (const jwk of mainMeta.jwks.keys) {
  if (jwk.kty === 'RSA') main.verificationKeys.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' }));
}
if (UPSTREAM) {
  // Fails now, with the provider's reason, rather than at Portcullis's first request.
  try {
    await main.provider.Client.validate(portcullisClient());
  } catch (e) {
    throw new Error(`the Portcullis client is invalid: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`);
  }
}

// The short-lived one first, so its wait overlaps the others.
const expired = await mint(main, { account: 'alice', scope: 'mcp files.read files.write', shortLived: true });
const [alice, bob, aliceNoMcp, wrongAudience, wrongIssuer] = await Promise.all([
  mint(main, { account: 'alice', scope: 'mcp files.read files.write' }),
  mint(main, { account: 'bob', scope: 'mcp files.read' }),
  mint(main, { account: 'alice', scope: 'files.read' }),
  mint(main, { account: 'alice', scope: 'mcp files.read files.write', resource: OTHER_RESOURCE }),
  mint(rogue, { account: 'alice', scope: 'mcp files.read files.write' }),
]);

const full = 'mcp files.read files.write';
const base = { client_id: CLIENT_ID, ttl: ACCESS_TOKEN_TTL };
await check('alice', alice, main, mainMeta.jwks, { ...base, sub: 'alice', aud: RESOURCE, scope: full });
await check('bob', bob, main, mainMeta.jwks, { ...base, sub: 'bob', aud: RESOURCE, scope: 'mcp files.read' });
await check('alice_no_mcp', aliceNoMcp, main, mainMeta.jwks, { ...base, sub: 'alice', aud: RESOURCE, scope: 'files.read' });
await check('wrong_audience', wrongAudience, main, mainMeta.jwks, { ...base, sub: 'alice', aud: OTHER_RESOURCE, scope: full });
await check('wrong_issuer', wrongIssuer, rogue, rogueMeta.jwks, { ...base, sub: 'alice', aud: RESOURCE, scope: full });
await check('expired', expired, main, mainMeta.jwks, { ...base, ttl: SHORT_TTL, sub: 'alice', aud: RESOURCE, scope: full });
if (mainMeta.jwks.keys.some((k) => k.kid === decode(wrongIssuer).header.kid)) {
  throw new Error('the rogue signing key is in the main JWKS');
}

// bad_signature: alice's token with characters in the middle of its signature changed (the
// middle, so that every changed character changes decoded bytes).
const [h, p, s] = alice.split('.');
const mid = Math.floor(s.length / 2);
const flipped = [...s.slice(mid, mid + 8)].map((c) => (c === 'A' ? 'B' : 'A')).join('');
const badSignature = `${h}.${p}.${s.slice(0, mid)}${flipped}${s.slice(mid + 8)}`;
const algNone = `${b64json({ alg: 'none', typ: 'at+jwt' })}.${p}.`;

if (UPSTREAM) await checkUpstream(main, mainMeta, alice);

// Print only once `expired` has expired: now >= exp + 1 s (a verifier rejects at now >= exp).
const { exp } = decode(expired).payload;
const waitMs = (exp + 1) * 1000 - Date.now();
if (waitMs > 0) {
  log(`tokens minted in ${Date.now() - started} ms; waiting ${waitMs} ms for "expired" (exp ${exp}) to expire`);
  await new Promise((r) => { setTimeout(r, waitMs); });
}

const out = {
  issuer: main.issuer,
  jwks_uri: mainMeta.doc.jwks_uri,
  rogue_issuer: rogue.issuer,
  rogue_jwks_uri: rogueMeta.doc.jwks_uri,
  resource: RESOURCE,
  other_resource: OTHER_RESOURCE,
  tokens: {
    alice,
    bob,
    alice_no_mcp: aliceNoMcp,
    wrong_audience: wrongAudience,
    expired,
    wrong_issuer: wrongIssuer,
    bad_signature: badSignature,
    alg_none: algNone,
  },
};
if (UPSTREAM) {
  Object.assign(out, {
    upstream_issuer: main.issuer,
    upstream_resource: UPSTREAM_RESOURCES[0],
    upstream_resources: UPSTREAM_RESOURCES,
    upstream_scopes: UPSTREAM_SCOPES,
    upstream_token_ttl: UPSTREAM_TOKEN_TTL,
    portcullis_client_id: PORTCULLIS_CLIENT_ID,
    ...(PORTCULLIS_PUBLIC ? {} : { portcullis_client_secret: PORTCULLIS_CLIENT_SECRET }),
    portcullis_auth_method: PORTCULLIS_AUTH_METHOD,
    portcullis_redirect_uris: PORTCULLIS_REDIRECTS,
    authorization_endpoint: mainMeta.doc.authorization_endpoint,
    token_endpoint: mainMeta.doc.token_endpoint,
    revocation_endpoint: mainMeta.doc.revocation_endpoint,
    introspection_endpoint: mainMeta.doc.introspection_endpoint,
    revoke_grants_url: new URL('/test/revoke-grants', main.issuer).href,
  });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
ready = true;
log(`ready in ${Date.now() - started} ms; serving until stdin closes, SIGTERM/SIGINT, or ${LIFETIME_SECS} s pass`);
