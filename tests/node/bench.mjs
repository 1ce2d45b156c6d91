// The Node client case of Portcullis's benchmark (crates/bench, `--node-client`): the official
// MCP TypeScript SDK client calls `echo` N times, one after another, over streamable HTTP, and
// prints ONE JSON object: {"micros":[...]} with each call's duration in microseconds, timed
// from just before the request is handed to the client until its result is back (the
// handshake and the tool list are not timed). Exit 1 with a message on stderr when it cannot run.
//
//   node bench.mjs --http http://127.0.0.1:8787/mcp --calls 2000
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function usage(message) {
  process.stderr.write(`bench.mjs: ${message}\nusage: node bench.mjs --http URL --calls N\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const value = (name) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : undefined;
};
const url = value("http") ?? usage("--http URL is required");
const calls = Number.parseInt(value("calls") ?? "", 10);
if (!Number.isInteger(calls) || calls < 1) usage("--calls must be a positive integer");

const client = new Client({ name: "portcullis-bench", version: "1" });
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const { tools } = await client.listTools();
  if (!tools.some((tool) => tool.name === "echo")) usage(`no \`echo\` tool at ${url}`);
  const micros = [];
  for (let i = 0; i < calls; i += 1) {
    const started = process.hrtime.bigint();
    const result = await client.callTool({ name: "echo", arguments: { text: "ping" } });
    micros.push(Number((process.hrtime.bigint() - started) / 1000n));
    if (result.isError) usage(`\`echo\` answered with an error: ${JSON.stringify(result.content)}`);
  }
  process.stdout.write(`${JSON.stringify({ micros })}\n`);
  await client.close();
} catch (error) {
  process.stderr.write(`bench.mjs: ${error?.stack ?? error}\n`);
  process.exit(1);
}
