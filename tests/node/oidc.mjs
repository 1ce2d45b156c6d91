// A real OpenID provider on loopback for Portcullis's resource-server tests.
//
//   tests/node/node_modules/node/bin/node tests/node/oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]
//
// Starts two independent oidc-provider instances on 127.0.0.1 (ephemeral ports): "main" and
// "rogue" (its own keys and issuer, for wrong-issuer tokens). Every token is obtained through the
// provider's real flows: authorization code + PKCE (S256) driven over HTTP with manual redirects
// and a cookie jar, through an interaction handler built on the provider's documented
// interactionDetails/interactionFinished API (it logs in the account named by login_hint and
// grants what was asked), then the token endpoint with resource=URL (RFC 8707), which yields an
// RFC 9068 JWT access token. Prints ONE JSON line on stdout once every token is ready, then
// keeps serving until stdin closes, SIGTERM/SIGINT, or --lifetime-secs pass. Logs go to stderr.
// See tests/node/README.md.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

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

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      resource: { type: 'string' },
      'other-resource': { type: 'string', default: 'http://127.0.0.1:1/other' },
      'lifetime-secs': { type: 'string', default: '300' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (e) {
  fail(`${e.message}\nusage: oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]`);
}
if (args.help) {
  process.stderr.write('usage: oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]\n');
  process.exit(0);
}
if (!args.resource) fail('--resource URL is required\nusage: oidc.mjs --resource URL [--other-resource URL] [--lifetime-secs N]');
const RESOURCE = args.resource;
const OTHER_RESOURCE = args['other-resource'];
for (const [flag, value] of [['--resource', RESOURCE], ['--other-resource', OTHER_RESOURCE]]) {
  let u;
  try { u = new URL(value); } catch { fail(`${flag} ${value}: not an absolute URL`); }
  // RFC 8707: an absolute URI without a fragment.
  if (u.hash) fail(`${flag} ${value}: a resource indicator must not have a fragment`);
}
if (RESOURCE === OTHER_RESOURCE) fail('--resource and --other-resource must differ');
const LIFETIME_SECS = Number(args['lifetime-secs']);
if (!Number.isFinite(LIFETIME_SECS) || LIFETIME_SECS <= 0) fail(`--lifetime-secs ${args['lifetime-secs']}: not a positive number`);

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
};

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  // No kid given: oidc-provider sets the RFC 7638 thumbprint, so the two providers' kids differ.
  return { keys: [{ ...rsa, alg: 'RS256', use: 'sig' }, { ...ec, alg: 'ES256', use: 'sig' }] };
}

function configuration() {
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
    ],
    pkce: { required: () => true },
    jwks: signingKeys(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false }, // our own handler below, on the documented API
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator, client) {
          if (resourceIndicator !== RESOURCE && resourceIndicator !== OTHER_RESOURCE) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            scope: RESOURCE_SCOPE,
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt', // RFC 9068
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const account = ACCOUNTS[token.accountId];
      return account ? { groups: account.groups, tenant: account.tenant } : undefined;
    },
    async findAccount(ctx, sub) {
      if (!Object.hasOwn(ACCOUNTS, sub)) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...ACCOUNTS[sub] }) };
    },
    ttl: {
      AccessToken(ctx, token) {
        const code = ctx?.oidc?.route === 'token' ? ctx.oidc.params?.code : undefined;
        if (code && shortLivedCodes.has(code)) return SHORT_TTL;
        return token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL;
      },
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

// The interaction handler: no pages, it completes each prompt at once. login: the account named
// by login_hint (it must exist). consent: grant exactly what the prompt says is missing.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    if (typeof accountId === 'string' && Object.hasOwn(ACCOUNTS, accountId)) {
      result = { login: { accountId } };
    } else {
      result = { error: 'access_denied', error_description: `unknown login_hint ${JSON.stringify(accountId)}` };
    }
  } else if (prompt.name === 'consent') {
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
  } else {
    result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function startProvider(name) {
  let provider;
  const server = http.createServer((req, res) => {
    if (!provider) { res.statusCode = 503; res.end(); return; }
    if (req.method === 'GET' && /^\/interaction\/[^/?]+(\?|$)/.test(req.url)) {
      interaction(provider, req, res).catch((e) => {
        log(`${name}: interaction failed: ${e.stack ?? e}`);
        if (!res.headersSent) { res.statusCode = 500; res.end(String(e.message ?? e)); }
      });
      return;
    }
    callback(req, res);
  });
  let callback;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration());
  callback = provider.callback();
  provider.on('server_error', (ctx, e) => log(`${name}: server_error: ${e.stack ?? e}`));
  provider.on('grant.error', (ctx, e) => log(`${name}: grant.error: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`));
  provider.on('authorization.error', (ctx, e) => log(`${name}: authorization.error: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`));
  return { name, issuer, provider, server };
}

// ---------------------------------------------------------------------------------------------
// The client side: a headless user agent with a cookie jar and manual redirects.

async function mint(op, { account, scope, resource = RESOURCE, shortLived = false }) {
  const clientId = CLIENT_ID;
  const what = `${op.name}: ${account} scope="${scope}" resource=${resource}${shortLived ? ' (short-lived)' : ''}`;
  const jar = new Map();
  const send = async (url, init = {}) => {
    const headers = { ...init.headers };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const [k, v] = [pair.slice(0, i).trim(), pair.slice(i + 1).trim()];
      const gone = !v || attrs.some((a) => /^\s*(max-age=0|expires=thu, 01 jan 1970)/i.test(a));
      if (gone) jar.delete(k); else jar.set(k, v);
    }
    return res;
  };

  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const state = crypto.randomBytes(16).toString('base64url');
  const auth = new URL('/auth', op.issuer);
  auth.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope,
    resource,
    state,
    login_hint: account,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });

  let url = auth.href;
  let code;
  for (let hop = 0; ; hop += 1) {
    if (hop > 10) throw new Error(`${what}: too many redirects`);
    const res = await send(url);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status > 399 || !location) {
      throw new Error(`${what}: GET ${url} answered ${res.status} without a redirect: ${(await res.text()).slice(0, 500)}`);
    }
    await res.arrayBuffer();
    const next = new URL(location, url);
    if (next.href.startsWith(`${REDIRECT_URI}?`) || next.href === REDIRECT_URI) {
      const p = next.searchParams;
      if (p.get('error')) throw new Error(`${what}: authorization error ${p.get('error')}: ${p.get('error_description')}`);
      if (p.get('state') !== state) throw new Error(`${what}: state mismatch in ${next.href}`);
      if (p.get('iss') !== op.issuer) throw new Error(`${what}: iss ${p.get('iss')} in the authorization response, expected ${op.issuer}`);
      code = p.get('code');
      if (!code) throw new Error(`${what}: no code in ${next.href}`);
      break;
    }
    if (next.origin !== op.issuer) throw new Error(`${what}: redirected off the provider to ${next.href}`);
    url = next.href;
  }

  if (shortLived) shortLivedCodes.add(code);
  const res = await send(new URL('/token', op.issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
      code_verifier: verifier,
      resource,
    }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${what}: token endpoint answered ${res.status}: ${JSON.stringify(body)}`);
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

[main, rogue] = await Promise.all([startProvider('main'), startProvider('rogue')]);
log(`main issuer ${main.issuer}, rogue issuer ${rogue.issuer}; node ${process.version}`);
const [mainMeta, rogueMeta] = await Promise.all([discover(main), discover(rogue)]);

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
process.stdout.write(`${JSON.stringify(out)}\n`);
ready = true;
log(`ready in ${Date.now() - started} ms; serving until stdin closes, SIGTERM/SIGINT, or ${LIFETIME_SECS} s pass`);
