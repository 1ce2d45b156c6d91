// A headless "browser" for Portcullis's OAuth client tests: plays the person who opens the
// authorization link Portcullis hands out, signs in at the provider (oidc.mjs) and comes back.
//
//   tests/node/node_modules/node/bin/node tests/node/browser.mjs URL --account NAME [--deny] [--provider ISSUER]
//
// From URL it follows redirects and submits forms with flow.mjs's user agent (cookie jar, the
// form rule: a 200 HTML page with a <form method="post"> is submitted, `account` filled in, the
// `deny` button pressed with --deny and the first other button otherwise). So it passes a
// consent page of Portcullis's own as well as the provider's login and consent pages. The
// provider is --provider, or else the origin of the first authorization request (a URL with
// client_id and response_type) on the way. When a redirect leaves the provider for another
// origin (Portcullis's callback), that URL is requested too, so Portcullis receives the code
// or the error, and browsing stops there. It also stops at any answer that is neither a
// redirect nor a form to submit (a provider error page, say).
//
// Prints ONE JSON line on stdout about the last request:
//   {"final_url": "<origin and path, no query>", "status": N, "body": "<first 2000 chars>",
//    "query_keys": ["code", "state", "iss"], "location": "<redirect target or null>"}
// query_keys: the parameter names of that URL (never the values: a code is a credential).
// Exit 0 once it printed the line (whatever the status), 1 if it could not browse (message on
// stderr), 2 for bad usage. Each request is logged on stderr, without query strings.

import { parseArgs } from 'node:util';

import { UserAgent, isAuthorizationRequest, withoutQuery } from './flow.mjs';

const USAGE = 'usage: browser.mjs URL --account NAME [--deny] [--provider ISSUER]';
const log = (msg) => process.stderr.write(`browser.mjs: ${msg}\n`);

let parsed;
try {
  parsed = parseArgs({
    options: {
      account: { type: 'string' },
      deny: { type: 'boolean', default: false },
      provider: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
} catch (e) {
  log(`${e.message}\n${USAGE}`);
  process.exit(2);
}
const { values: args, positionals } = parsed;
if (args.help) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(0);
}
if (positionals.length !== 1 || !args.account) {
  log(USAGE);
  process.exit(2);
}
let start;
let provider;
try {
  start = new URL(positionals[0]);
  provider = args.provider ? new URL(args.provider).origin : undefined;
} catch (e) {
  log(`${e.message}\n${USAGE}`);
  process.exit(2);
}

// The provider's origin once known, and where the last request went.
let previous;
const decide = (url) => {
  if (!provider && isAuthorizationRequest(url)) provider = url.origin;
  const leaving = provider !== undefined && previous === provider && url.origin !== provider;
  previous = url.origin;
  return leaving ? 'last' : undefined;
};

try {
  const agent = new UserAgent({ account: args.account, deny: args.deny, log });
  const end = await agent.browse(start.href, { decide });
  const url = new URL(end.url);
  const out = {
    final_url: withoutQuery(url),
    status: end.status,
    body: end.body.slice(0, 2000),
    query_keys: [...new Set(url.searchParams.keys())],
    location: end.location,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (e) {
  log(`error: ${e.cause ? `${e.message}: ${e.cause.message ?? e.cause}` : e.message}`);
  process.exit(1);
}
