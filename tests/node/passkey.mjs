// A person with a passkey, in a real browser: Debian's Chromium, headless, driven by
// playwright-core, with a CTAP2 virtual authenticator (user verified, presence simulated)
// that can be kept in a file between runs, so a passkey enrolled in one run approves in a
// later one.
//
//   node tests/node/passkey.mjs [--authenticator FILE] [--screenshots DIR] [--timeout-ms N] STEP...
//   STEP: --open URL | --click SELECTOR_OR_TEXT | --fill NAME=VALUE | --expect TEXT
//         (repeatable, run in order)
//
// --open loads URL and waits for it. --click presses the button or link whose accessible name
// is the text (or the element a CSS selector names, when it starts with # . or [). --fill
// types VALUE into the page's input named NAME (a sign-in form's account, say).
// --expect waits until the page shows TEXT (case-sensitive substring of its visible text).
// Each step fails after --timeout-ms (default 20000); the whole run after four times that.
// --authenticator FILE: the authenticator's credentials are loaded from FILE when it exists
// and written back (0600) after the run; without it every run starts with no passkey.
// --screenshots DIR: a PNG of the page on failure.
//
// Prints ONE JSON line on stdout: {"ok": true, "steps": N, "origin": "<last page's origin>",
// "text": "<first 500 chars of its visible text>", "credentials": N}. Never a URL path or
// query (an enrolment link holds its token). Exit 0 when every step passed, 1 on a failure
// (the reason and the page's text on stderr), 2 on bad usage.

import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const USAGE =
  'usage: passkey.mjs [--authenticator FILE] [--screenshots DIR] [--timeout-ms N] ' +
  '(--open URL | --click SELECTOR_OR_TEXT | --fill NAME=VALUE | --expect TEXT)...';
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const log = (msg) => process.stderr.write(`passkey.mjs: ${msg}\n`);

function usage(message) {
  log(`${message}\n${USAGE}`);
  process.exit(2);
}

function parse() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        authenticator: { type: 'string' },
        screenshots: { type: 'string' },
        'timeout-ms': { type: 'string', default: '20000' },
        open: { type: 'string', multiple: true },
        click: { type: 'string', multiple: true },
        fill: { type: 'string', multiple: true },
        expect: { type: 'string', multiple: true },
      },
      strict: true,
      tokens: true,
    });
  } catch (e) {
    usage(e.message);
  }
  const steps = parsed.tokens
    .filter((token) => token.kind === 'option' && ['open', 'click', 'fill', 'expect'].includes(token.name))
    .map((token) => ({ kind: token.name, value: token.value }));
  const timeout = Number(parsed.values['timeout-ms']);
  if (!Number.isInteger(timeout) || timeout <= 0) usage('--timeout-ms must be a positive integer');
  if (steps.length === 0) usage('no step given');
  if (steps[0].kind !== 'open') usage('the first step must be --open URL');
  return { ...parsed.values, timeout, steps };
}

// The virtual authenticator: a platform passkey provider that verifies the user and
// simulates their presence, as a person touching it would.
async function addAuthenticator(cdp, file) {
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const loaded = await loadCredentials(file);
  for (const credential of loaded) {
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
  }
  return { authenticatorId, loaded };
}

async function loadCredentials(file) {
  if (!file) return [];
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
  const credentials = JSON.parse(text);
  if (!Array.isArray(credentials)) throw new Error(`${file} does not hold a list of credentials`);
  return credentials;
}

// The credentials hold private keys: the file is for tests, and private to its owner.
// Chromium 148 leaves `rpId` out of getCredentials for a credential added by addCredential,
// which needs it back next time: it is taken from the loaded copy.
async function saveCredentials(cdp, { authenticatorId, loaded }, file) {
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  for (const credential of credentials) {
    const before = loaded.find((old) => old.credentialId === credential.credentialId);
    credential.rpId ??= before?.rpId;
  }
  if (file) {
    await writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
    await chmod(file, 0o600);
  }
  return credentials.length;
}

function target(page, what) {
  if (/^[#.[]/.test(what)) return page.locator(what).first();
  return page
    .getByRole('button', { name: what, exact: true })
    .or(page.getByRole('link', { name: what, exact: true }))
    .first();
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function runStep(page, step, timeout) {
  switch (step.kind) {
    case 'open': {
      const answer = await page.goto(step.value, { timeout, waitUntil: 'load' });
      if (!answer || !answer.ok()) {
        throw new Error(`opening the page answered ${answer ? answer.status() : 'nothing'}`);
      }
      return;
    }
    case 'click':
      await target(page, step.value).click({ timeout });
      return;
    case 'fill': {
      const at = step.value.indexOf('=');
      if (at <= 0) throw new Error(`--fill ${step.value}: not NAME=VALUE`);
      await page.locator(`input[name="${step.value.slice(0, at)}"]`).first().fill(step.value.slice(at + 1), { timeout });
      return;
    }
    case 'expect':
      await page
        .getByText(new RegExp(escapeRegExp(step.value)))
        .first()
        .waitFor({ state: 'visible', timeout });
      return;
    default:
      throw new Error(`unknown step ${step.kind}`);
  }
}

async function visibleText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 2000 })).slice(0, 500);
  } catch {
    return '';
  }
}

function originOf(page) {
  try {
    return new URL(page.url()).origin;
  } catch {
    return null;
  }
}

async function screenshot(page, dir) {
  if (!dir || !page) return;
  try {
    await mkdir(dir, { recursive: true });
    const path = join(dir, `passkey-failure-${Date.now()}.png`);
    await page.screenshot({ path, fullPage: true, timeout: 5000 });
    log(`screenshot: ${path}`);
  } catch (e) {
    log(`no screenshot: ${e.message}`);
  }
}

function describe(step) {
  // The URL of --open is not repeated: an enrolment link holds its token.
  return step.kind === 'open' ? 'open' : `${step.kind} ${JSON.stringify(step.value)}`;
}

async function run(args) {
  const profile = await mkdtemp(join(tmpdir(), 'portcullis-passkey-'));
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: args.timeout,
    });
    page = context.pages()[0] ?? (await context.newPage());
    const cdp = await context.newCDPSession(page);
    const authenticator = await addAuthenticator(cdp, args.authenticator);
    let failure;
    for (const [index, step] of args.steps.entries()) {
      try {
        await runStep(page, step, args.timeout);
      } catch (e) {
        failure = new Error(`step ${index + 1} (${describe(step)}) failed: ${e.message.split('\n')[0]}`);
        break;
      }
    }
    const credentials = await saveCredentials(cdp, authenticator, args.authenticator);
    const text = await visibleText(page);
    if (failure) {
      await screenshot(page, args.screenshots);
      failure.pageText = text;
      throw failure;
    }
    return { ok: true, steps: args.steps.length, origin: originOf(page), text, credentials };
  } catch (e) {
    if (!e.pageText) await screenshot(page, args.screenshots);
    throw e;
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

const args = parse();
// The whole run is bounded, whatever hangs.
const watchdog = setTimeout(() => {
  log(`gave up after ${args.timeout * 4} ms`);
  process.exit(1);
}, args.timeout * 4);
try {
  const result = await run(args);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  clearTimeout(watchdog);
} catch (e) {
  log(e.message);
  if (e.pageText !== undefined) log(`the page shows: ${JSON.stringify(e.pageText)}`);
  process.exit(1);
}
