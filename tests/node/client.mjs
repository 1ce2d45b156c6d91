// A driver for Portcullis's end-to-end tests around the official MCP TypeScript SDK client
// (@modelcontextprotocol/sdk, session era: initialize, 2025-11-25). See README.md beside this file.
//
// It connects to one MCP server (a stdio command or a streamable HTTP URL), runs one scenario and
// prints ONE JSON object of observations on stdout; the Rust tests make the assertions.
// Exit codes: 0 the scenario ran (a failed tools/call is an observation: `error`, `cancelled`);
// 2 the server answered the scenario's read/prompt/complete/list request with an error (the JSON,
// with `error`, is still printed); 1 the driver could not run (bad usage, connection or handshake
// failed), with a message on stderr.
//
//   node client.mjs --scenario list --http http://127.0.0.1:8787/mcp
//   node client.mjs --scenario call --tool fx.slow --args '{"ms":300}' --progress --stdio -- CMD ARGS...
import { spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const USAGE = `usage: node client.mjs --scenario NAME [options] (--http URL | --stdio -- CMD ARGS...)
scenarios: list, call, elicit, read, prompt, complete, list_changed
options: --tool NAME --args JSON --progress --timeout-ms N --cancel-after-ms N
         --uri URI --name PROMPT --ref-prompt NAME --ref-uri TEMPLATE --arg NAME --value PREFIX
         --context JSON --answer accept|decline|cancel|never --content JSON --roots JSON
         --kind tools|resources|prompts --wait-ms N --header 'Name: value' (repeatable, HTTP only)
         --follow-url ACCOUNT (declare URL elicitation; open each link with browser.mjs as ACCOUNT)
         --deny-url (with --follow-url: deny on the consent page) --calls N (call N times)
         --form (declare form elicitation too, answered with --answer and --content)
         --approve-url FILE (declare URL elicitation; approve each approval page's link in
           Chromium with the passkey kept in FILE, through passkey.mjs)
         --then JSON (repeatable: after the --calls, call the tool again with these arguments)`;
const SWITCHES = new Set(["progress", "stdio", "denyUrl", "form"]);
const VALUES = new Set([
  "scenario", "http", "tool", "args", "timeoutMs", "cancelAfterMs", "uri", "name", "refPrompt",
  "refUri", "arg", "value", "context", "answer", "content", "roots", "waitMs", "header", "kind",
  "followUrl", "calls", "approveUrl", "then",
]);
const SCENARIOS = new Set(["list", "call", "elicit", "read", "prompt", "complete", "list_changed"]);

class UsageError extends Error {}

function parse(argv) {
  const options = { args: "{}", answer: "accept", content: "{}", value: "", headers: [], then: [] };
  const dash = argv.indexOf("--");
  options.command = dash >= 0 ? argv.slice(dash + 1) : [];
  const flags = dash >= 0 ? argv.slice(0, dash) : argv;
  for (let i = 0; i < flags.length; i++) {
    if (!flags[i].startsWith("--")) throw new UsageError(`unexpected argument ${flags[i]}`);
    const key = flags[i].slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (SWITCHES.has(key)) options[key] = true;
    else if (VALUES.has(key)) {
      if (i + 1 >= flags.length) throw new UsageError(`${flags[i]} needs a value`);
      if (key === "header") options.headers.push(flags[++i]);
      else if (key === "then") options.then.push(flags[++i]);
      else options[key] = flags[++i];
    } else throw new UsageError(`unknown option ${flags[i]}`);
  }
  if (!SCENARIOS.has(options.scenario)) throw new UsageError(`unknown scenario ${options.scenario}`);
  if (Boolean(options.http) === Boolean(options.stdio)) {
    throw new UsageError("give exactly one of --http URL or --stdio -- CMD ARGS...");
  }
  if (options.stdio && options.command.length === 0) throw new UsageError("--stdio needs a command after --");
  if (!["accept", "decline", "cancel", "never"].includes(options.answer)) throw new UsageError("--answer accept|decline|cancel|never");
  options.kind ??= "tools";
  if (!["tools", "resources", "prompts"].includes(options.kind)) throw new UsageError("--kind tools|resources|prompts");
  if (["call", "elicit", "list_changed"].includes(options.scenario) && !options.tool) {
    throw new UsageError(`--scenario ${options.scenario} needs --tool`);
  }
  options.then = options.then.map((text) => {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new UsageError(`--then is not JSON: ${error.message}`);
    }
  });
  for (const key of ["args", "content", "context", "roots"]) {
    if (options[key] === undefined) continue;
    try {
      options[key] = JSON.parse(options[key]);
    } catch (error) {
      throw new UsageError(`--${key} is not JSON: ${error.message}`);
    }
  }
  return options;
}

// A compact record of every JSON-RPC message in both directions (no payloads).
function summarize(dir, message) {
  const entry = { dir };
  if (message.method) {
    entry.method = message.method;
    if (message.id !== undefined) entry.id = message.id;
    if (message.params?._meta?.progressToken !== undefined) entry.progressToken = true;
    if (message.method === "notifications/cancelled") entry.requestId = message.params?.requestId;
  } else if (message.id !== undefined) {
    entry.id = message.id;
    if (message.error) entry.error = message.error.code;
    else entry.result = message.result?.resultType ?? (message.result?.action ?? "ok");
  }
  return entry;
}

function tap(transport, wire, onVersion, watchers) {
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    wire.push(summarize("out", message));
    for (const watch of watchers) watch("out", message);
    return send(message, options);
  };
  let handler;
  Object.defineProperty(transport, "onmessage", {
    configurable: true,
    get: () => handler && ((message, extra) => {
      wire.push(summarize("in", message));
      for (const watch of watchers) watch("in", message);
      handler(message, extra);
    }),
    set: (value) => {
      handler = value;
    },
  });
  // The SDK tells HTTP transports the negotiated version; stdio has no such hook, so add one.
  const setVersion = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (version) => {
    onVersion(version);
    setVersion?.(version);
  };
}

function errorObservation(error) {
  if (error && typeof error === "object" && "code" in error) {
    const out = { code: error.code, message: String(error.message ?? error) };
    if (error.data !== undefined) out.data = error.data;
    return out;
  }
  return { message: String(error?.message ?? error) };
}

async function listAll(fetch, key) {
  const items = [];
  let cursor;
  let pages = 0;
  do {
    const page = await fetch(cursor ? { cursor } : {});
    pages += 1;
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor && pages < 1000);
  return { items, pages };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Opens a sign-in link the way a person's browser would: browser.mjs beside this file follows
// it (consent page, the provider's login as ACCOUNT, the redirect back) and reports where it
// ended. Resolves with that report.
function openLink(url, account, deny) {
  return new Promise((resolve) => {
    const args = [new URL("./browser.mjs", import.meta.url).pathname, url, "--account", account];
    if (deny) args.push("--deny");
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.on("close", (code) => {
      try {
        resolve({ code, ...JSON.parse(out) });
      } catch {
        resolve({ code, output: out.slice(0, 500) });
      }
    });
  });
}

// Approves on Portcullis's approval page the way a person with a passkey would: passkey.mjs
// beside this file opens the link in Chromium with the authenticator kept in `authenticator`
// and presses "Approve". Resolves with its report.
function approveLink(url, authenticator) {
  return new Promise((resolve) => {
    const args = [
      new URL("./passkey.mjs", import.meta.url).pathname, "--authenticator", authenticator,
      "--open", url, "--click", "Approve with your passkey", "--expect", "Approved.",
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.on("close", (code) => {
      try {
        resolve({ code, ...JSON.parse(out) });
      } catch {
        resolve({ code, output: out.slice(0, 500) });
      }
    });
  });
}

async function main() {
  const options = parse(process.argv.slice(2));
  const elicitations = [];
  const rootsRequests = [];
  const notifications = { tools: 0, resources: 0, prompts: 0 };
  const wire = [];
  const watchers = [];
  let protocol = null;

  const capabilities = {};
  if (options.scenario === "elicit" || options.form) capabilities.elicitation = { form: {} };
  if (options.followUrl || options.approveUrl) capabilities.elicitation = { ...capabilities.elicitation, url: {} };
  const browsers = [];
  if (options.roots !== undefined) capabilities.roots = { listChanged: false };
  const client = new Client({ name: "portcullis-e2e-ts", version: "1.0.0" }, { capabilities });
  if (options.scenario === "elicit" || options.followUrl || options.form || options.approveUrl) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      if (request.params.mode === "url" && options.approveUrl) {
        // The person opens the approval page and approves with their passkey.
        elicitations.push({ message: request.params.message, mode: "url", url: request.params.url });
        browsers.push(approveLink(request.params.url, options.approveUrl));
        return { action: "accept" };
      }
      if (request.params.mode === "url") {
        // The person agrees to open the link; the server waits for the sign-in to finish.
        elicitations.push({ message: request.params.message, mode: "url", url: request.params.url });
        if (!options.followUrl) return { action: "decline" };
        browsers.push(openLink(request.params.url, options.followUrl, options.denyUrl));
        return { action: "accept" };
      }
      elicitations.push({
        message: request.params.message,
        requestedSchema: request.params.requestedSchema ?? null,
        mode: request.params.mode ?? "form",
      });
      // `never`: the person walks away; the server's own timeout must decide.
      if (options.answer === "never") return new Promise(() => {});
      return options.answer === "accept"
        ? { action: "accept", content: options.content }
        : { action: options.answer };
    });
  }
  if (options.roots !== undefined) {
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      rootsRequests.push(Date.now());
      return { roots: options.roots.map((r) => (typeof r === "string" ? { uri: r } : r)) };
    });
  }
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => void (notifications.tools += 1));
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void (notifications.resources += 1));
  client.setNotificationHandler(PromptListChangedNotificationSchema, () => void (notifications.prompts += 1));

  let transport;
  if (options.http) {
    const headers = {};
    for (const header of options.headers) {
      const colon = header.indexOf(":");
      if (colon <= 0) throw new UsageError(`--header wants 'Name: value', got ${header}`);
      headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
    }
    transport = new StreamableHTTPClientTransport(new URL(options.http), { requestInit: { headers } });
  } else {
    transport = new StdioClientTransport({
      command: options.command[0],
      args: options.command.slice(1),
      // The SDK passes only HOME, LOGNAME, PATH, SHELL, TERM and USER by default.
      env: { ...process.env },
      stderr: "inherit",
    });
  }
  tap(transport, wire, (version) => {
    protocol = version;
  }, watchers);
  await client.connect(transport);

  const observations = {
    protocol,
    server: client.getServerVersion() ?? null,
  };
  let status = 0;
  const args = options.args;

  // Requests whose failure is the scenario's answer: print it and exit 2.
  const answered = async (request) => {
    try {
      observations.result = await request();
    } catch (error) {
      observations.error = errorObservation(error);
      status = 2;
    }
  };

  switch (options.scenario) {
    case "list": {
      observations.capabilities = client.getServerCapabilities() ?? null;
      observations.instructions = client.getInstructions() ?? null;
      observations.pageCounts = {};
      const kinds = [
        ["tools", "tools", (p) => client.listTools(p)],
        ["resources", "resources", (p) => client.listResources(p)],
        ["templates", "resourceTemplates", (p) => client.listResourceTemplates(p)],
        ["prompts", "prompts", (p) => client.listPrompts(p)],
      ];
      // A kind the server did not advertise is skipped, not an error.
      const advertised = { tools: "tools", resources: "resources", templates: "resources", prompts: "prompts" };
      for (const [name, key, fetch] of kinds) {
        if (!observations.capabilities?.[advertised[name]]) {
          observations.skipped = [...(observations.skipped ?? []), name];
          observations[name] = [];
          observations.pageCounts[name] = 0;
          continue;
        }
        try {
          const { items, pages } = await listAll(fetch, key);
          observations[name] = items;
          observations.pageCounts[name] = pages;
        } catch (error) {
          observations[name] = [];
          observations.errors = { ...observations.errors, [name]: errorObservation(error) };
          status = 2;
        }
      }
      observations.pages = observations.pageCounts.tools ?? 0;
      break;
    }
    case "call":
    case "elicit": {
      // Progress as it arrived on the wire for this call's token. The SDK's own onprogress can
      // miss the last one: it runs notification handlers a microtask later, and a response read
      // in the same chunk has already dropped the token by then (see README.md).
      const progress = [];
      let delivered = 0;
      let token;
      watchers.push((dir, message) => {
        if (dir === "out" && message.method === "tools/call") token = message.params?._meta?.progressToken;
        if (dir === "in" && message.method === "notifications/progress" && token !== undefined
            && message.params?.progressToken === token) {
          const p = message.params;
          progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null });
        }
      });
      const controller = new AbortController();
      const requestOptions = { signal: controller.signal };
      if (options.progress) {
        requestOptions.onprogress = () => void (delivered += 1);
        requestOptions.resetTimeoutOnProgress = true;
      }
      if (options.timeoutMs) requestOptions.timeout = Number(options.timeoutMs);
      if (options.cancelAfterMs) {
        setTimeout(() => controller.abort("cancelled by the test"), Number(options.cancelAfterMs));
      }
      const started = Date.now();
      const calls = Number(options.calls ?? 1);
      const argumentsOfCalls = [...Array(calls).fill(args), ...options.then];
      observations.results = [];
      for (const callArgs of argumentsOfCalls) {
        try {
          observations.result = await client.callTool(
            { name: options.tool, arguments: callArgs },
            CallToolResultSchema,
            requestOptions,
          );
          delete observations.error;
        } catch (error) {
          observations.error = errorObservation(error);
          delete observations.result;
        }
        observations.results.push(observations.result ?? { error: observations.error });
      }
      observations.browsers = await Promise.all(browsers);
      observations.elapsedMs = Date.now() - started;
      observations.cancelled = controller.signal.aborted;
      // The SDK sends notifications/cancelled without waiting; let it leave before closing.
      if (observations.cancelled || options.timeoutMs) await sleep(500);
      observations.progress = progress;
      if (options.progress) observations.progressDelivered = delivered;
      observations.elicitations = elicitations;
      break;
    }
    case "read":
      await answered(() => client.readResource({ uri: options.uri }));
      break;
    case "prompt":
      await answered(() => client.getPrompt({ name: options.name, arguments: args }));
      break;
    case "complete": {
      const ref = options.refPrompt
        ? { type: "ref/prompt", name: options.refPrompt }
        : { type: "ref/resource", uri: options.refUri };
      const params = { ref, argument: { name: options.arg, value: options.value } };
      if (options.context) params.context = { arguments: options.context };
      await answered(() => client.complete(params));
      break;
    }
    case "list_changed": {
      const before = { ...notifications };
      try {
        observations.call = await client.callTool({ name: options.tool, arguments: args });
      } catch (error) {
        observations.error = errorObservation(error);
      }
      const kind = options.kind;
      const deadline = Date.now() + Number(options.waitMs ?? 5000);
      while (notifications[kind] === before[kind] && Date.now() < deadline) await sleep(50);
      observations.notified = notifications[kind] > before[kind];
      observations.tools = (await listAll((p) => client.listTools(p), "tools")).items;
      if (kind === "resources") {
        observations.resources = (await listAll((p) => client.listResources(p), "resources")).items;
      }
      if (kind === "prompts") {
        observations.prompts = (await listAll((p) => client.listPrompts(p), "prompts")).items;
      }
      break;
    }
  }
  observations.notifications = notifications;
  if (options.roots !== undefined) observations.rootsRequests = rootsRequests.length;
  observations.wire = wire;
  await client.close();
  process.stdout.write(JSON.stringify(observations) + "\n");
  return status;
}

main().then(
  (status) => process.exit(status),
  (error) => {
    if (error instanceof UsageError) process.stderr.write(`client.mjs: ${error.message}\n${USAGE}\n`);
    else process.stderr.write(`client.mjs: ${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
