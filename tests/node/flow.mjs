// A headless user agent for the OAuth flows of the tests: a cookie jar, manual redirects, and
// the one form rule a test needs. Shared by oidc.mjs (which mints its tokens through it) and
// browser.mjs (which plays the person in front of Portcullis). See tests/node/README.md.
//
// The form rule: a 200 text/html answer holding a `<form method="post">` is submitted: every
// named <input> with its value (checkboxes and radios only when `checked`), an input named
// `account` set to the agent's account, and one submit button: the one named `deny` when the
// agent denies and the form has one, otherwise the first other submit button. The parser is
// a few regular expressions: attributes must be quoted ("..." or '...'); entities &amp; &lt;
// &gt; &quot; &#39; &#x27; are decoded. That is enough for the provider's pages in oidc.mjs
// and for a plain consent page; it is not an HTML parser.

import * as crypto from 'node:crypto';

const MAX_STEPS = 30;

// Cookies are kept per origin (scheme, host and port): stricter than a browser, which shares
// cookies between ports of one host, so the provider's cookies never reach Portcullis's pages
// on the same 127.0.0.1. Path, expiry and flags are ignored except that a cookie set empty,
// with Max-Age=0 or with an expiry in 1970 is deleted (how oidc-provider clears its cookies).
export class UserAgent {
  #jars = new Map();

  constructor({ account, deny = false, log = () => {} } = {}) {
    this.account = account;
    this.deny = deny;
    this.log = log;
  }

  // One request, redirects not followed, cookies sent and stored.
  async send(url, init = {}) {
    const target = new URL(url);
    const jar = this.#jars.get(target.origin) ?? new Map();
    this.#jars.set(target.origin, jar);
    const headers = { ...init.headers };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(target, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      if (i < 0) continue;
      const [k, v] = [pair.slice(0, i).trim(), pair.slice(i + 1).trim()];
      const gone = !v || attrs.some((a) => /^\s*(max-age=0|expires=thu, 01 jan 1970)/i.test(a));
      if (gone) jar.delete(k); else jar.set(k, v);
    }
    this.log(`${init.method ?? 'GET'} ${withoutQuery(target)} -> ${res.status}`);
    return res;
  }

  // Navigates from `url` like a person clicking through: follows redirects (GET) and submits
  // the forms the rule above accepts. Before each request `decide(url)` (a URL object) says
  //   'stop': do not request it; browse returns { url, stopped: true };
  //   'last': request it and stop there, whatever it answers;
  //   anything else: request it and go on.
  // Browsing also stops at an answer that is neither a redirect nor a form to submit. Then it
  // returns { url, status, location, body, stopped: false } (location of a redirect, or null).
  async browse(url, { decide = () => undefined, maxSteps = MAX_STEPS } = {}) {
    let request = { url: new URL(url).href, init: {} };
    for (let step = 0; step < maxSteps; step += 1) {
      const verdict = decide(new URL(request.url));
      if (verdict === 'stop') return { url: request.url, stopped: true };
      const res = await this.send(request.url, request.init);
      const location = res.headers.get('location');
      const redirect = res.status >= 300 && res.status <= 399 && location;
      const body = await res.text();
      const form = !redirect && res.status === 200 && /^text\/html/i.test(res.headers.get('content-type') ?? '')
        ? postForm(body, request.url)
        : undefined;
      if (verdict === 'last' || (!redirect && !form)) {
        return { url: request.url, status: res.status, location: redirect ? location : null, body, stopped: false };
      }
      request = redirect
        ? { url: new URL(location, request.url).href, init: {} }
        : {
          url: form.action,
          init: {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: this.fill(form).toString(),
          },
        };
    }
    throw new Error(`more than ${maxSteps} steps from ${withoutQuery(new URL(url))}`);
  }

  // The submission of a parsed form under the rule above.
  fill(form) {
    const fields = new URLSearchParams();
    for (const { name, value } of form.inputs) {
      fields.append(name, name === 'account' && this.account !== undefined ? this.account : value);
    }
    const deny = form.buttons.find((b) => b.name === 'deny');
    const button = this.deny && deny ? deny : form.buttons.find((b) => b.name !== 'deny');
    if (button?.name) fields.append(button.name, button.value);
    return fields;
  }
}

export function withoutQuery(url) {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

// ---------------------------------------------------------------------------------------------
// The form rule's parser.

const decode = (text) => text
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"')
  .replace(/&#39;|&#x27;/gi, "'")
  .replace(/&amp;/g, '&');

function attributes(tag) {
  const out = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'))?/g)) {
    out[m[1].toLowerCase()] = decode(m[2] ?? m[3] ?? '');
  }
  return out;
}

// The first <form method="post"> of a page: its absolute action, named inputs, submit buttons.
export function postForm(html, pageUrl) {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1]);
    if ((attrs.method ?? 'get').toLowerCase() !== 'post') continue;
    const inputs = [];
    const buttons = [];
    for (const t of m[2].matchAll(/<(input|button)\b([^>]*)>/gi)) {
      const a = attributes(t[2]);
      const type = (a.type ?? (t[1].toLowerCase() === 'button' ? 'submit' : 'text')).toLowerCase();
      if (type === 'submit') {
        buttons.push({ name: a.name, value: a.value ?? '' });
      } else if (a.name && !['button', 'reset', 'image', 'file'].includes(type)) {
        if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
        inputs.push({ name: a.name, value: a.value ?? (type === 'checkbox' ? 'on' : '') });
      }
    }
    return { action: new URL(attrs.action || pageUrl, pageUrl).href, inputs, buttons };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The client's side of authorization code + PKCE.

export function pkcePair() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

// True when `url` is an OAuth authorization request (RFC 6749 §4.1.1): how browser.mjs tells
// the provider's origin when it is not given.
export function isAuthorizationRequest(url) {
  const p = new URL(url).searchParams;
  return p.has('client_id') && p.has('response_type');
}
