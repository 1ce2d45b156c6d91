// A driver for Portcullis's end-to-end tests around the official MCP TypeScript SDK client.
//
// It connects to one MCP server (stdio command or streamable HTTP URL), runs one scenario and
// prints ONE JSON object of observations on stdout; the Rust tests make the assertions. It exits
// non-zero, with a message on stderr, only when the driver itself cannot run.
//
//   node client.mjs --scenario list --http http://127.0.0.1:8787/mcp
//   node client.mjs --scenario call --tool fx.slow --args '{"ms":300}' --progress --stdio -- CMD ARGS...
//
// Scenarios: list, call (--progress, --cancel-after-ms N), read (--uri), prompt (--name --args),
// complete (--ref-prompt NAME | --ref-uri TEMPLATE, --arg, --value), elicit (--answer, --content),
// list_changed (calls --tool, waits up to 5 s for tools/list_changed, lists again).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  ElicitRequestSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

function parse(argv) {
  const options = { args: "{}", answer: "accept", content: "{}", value: "" };
  const dash = argv.indexOf("--");
  options.command = dash >= 0 ? argv.slice(dash + 1) : [];
  const flags = dash >= 0 ? argv.slice(0, dash) : argv;
  for (let i = 0; i < flags.length; i++) {
    const key = flags[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (["progress", "stdio"].includes(key)) options[key] = true;
    else options[key] = flags[++i];
  }
  return options;
}

async function main() {
  const options = parse(process.argv.slice(2));
  const elicitations = [];
  const client = new Client(
    { name: "portcullis-e2e-ts", version: "1.0.0" },
    { capabilities: options.scenario === "elicit" ? { elicitation: { form: {} } } : {} },
  );
  if (options.scenario === "elicit") {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      elicitations.push({
        message: request.params.message,
        requestedSchema: request.params.requestedSchema,
      });
      return options.answer === "accept"
        ? { action: "accept", content: JSON.parse(options.content) }
        : { action: options.answer };
    });
  }
  let listChanged = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged += 1;
  });

  const transport = options.http
    ? new StreamableHTTPClientTransport(new URL(options.http))
    : new StdioClientTransport({
        command: options.command[0],
        args: options.command.slice(1),
        stderr: "inherit",
      });
  await client.connect(transport);
  const observations = {
    protocol: transport.protocolVersion ?? null,
    server: client.getServerVersion() ?? null,
  };
  const args = JSON.parse(options.args);

  switch (options.scenario) {
    case "list": {
      const tools = [];
      let cursor;
      let pages = 0;
      do {
        const page = await client.listTools(cursor ? { cursor } : {});
        pages += 1;
        tools.push(...page.tools.map((t) => ({ name: t.name })));
        cursor = page.nextCursor;
      } while (cursor);
      observations.tools = tools;
      observations.pages = pages;
      observations.capabilities = client.getServerCapabilities() ?? null;
      observations.resources = (await client.listResources()).resources.map((r) => ({
        uri: r.uri,
        name: r.name,
      }));
      observations.templates = (await client.listResourceTemplates()).resourceTemplates.map(
        (t) => ({ uriTemplate: t.uriTemplate }),
      );
      observations.prompts = (await client.listPrompts()).prompts.map((p) => ({ name: p.name }));
      break;
    }
    case "call":
    case "elicit": {
      const progress = [];
      const controller = new AbortController();
      const requestOptions = { signal: controller.signal };
      if (options.progress) {
        requestOptions.onprogress = (p) =>
          progress.push({ progress: p.progress, total: p.total, message: p.message });
      }
      if (options.timeoutMs) requestOptions.timeout = Number(options.timeoutMs);
      if (options.cancelAfterMs) {
        setTimeout(() => controller.abort("cancelled by the test"), Number(options.cancelAfterMs));
      }
      try {
        observations.result = await client.callTool(
          { name: options.tool, arguments: args },
          CallToolResultSchema,
          requestOptions,
        );
      } catch (error) {
        observations.error = String(error?.message ?? error);
        observations.cancelled = controller.signal.aborted;
        // The SDK sends notifications/cancelled without waiting; let it leave before closing.
        if (observations.cancelled) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      observations.progress = progress;
      observations.elicitations = elicitations;
      break;
    }
    case "read":
      observations.result = await client.readResource({ uri: options.uri });
      break;
    case "prompt":
      observations.result = await client.getPrompt({ name: options.name, arguments: args });
      break;
    case "complete": {
      const ref = options.refPrompt
        ? { type: "ref/prompt", name: options.refPrompt }
        : { type: "ref/resource", uri: options.refUri };
      observations.result = await client.complete({
        ref,
        argument: { name: options.arg, value: options.value },
      });
      break;
    }
    case "list_changed": {
      const before = listChanged;
      observations.call = await client.callTool({ name: options.tool, arguments: args });
      const deadline = Date.now() + 5000;
      while (listChanged === before && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      observations.notified = listChanged > before;
      observations.tools = (await client.listTools()).tools.map((t) => ({ name: t.name }));
      break;
    }
    default:
      throw new Error(`unknown scenario ${options.scenario}`);
  }
  await client.close();
  process.stdout.write(JSON.stringify(observations) + "\n");
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`client.mjs: ${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
