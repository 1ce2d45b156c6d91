"""A driver for Portcullis's end-to-end tests around the official MCP Python SDK (`mcp` 2.x).

It connects to one MCP server (stdio command or streamable HTTP URL), runs one scenario and prints
ONE JSON object of observations on stdout; the Rust tests make the assertions. It exits non-zero,
with a message on stderr, only when the driver itself cannot run.

    python client.py --scenario list --mode legacy --http http://127.0.0.1:8787/mcp
    python client.py --scenario call --tool fx.slow --args '{"ms":300}' --progress --stdio -- CMD ARGS...

--mode: `legacy` (initialize handshake, 2025-11-25), `auto` (probe server/discover, fall back),
or `2026-07-28` (stateless: per-request _meta, input-required results retried by the SDK).

Scenarios and their output:
  list      {protocol, server, tools[{name}], resources[{uri,name}], templates[{uriTemplate}], prompts[{name}]}
  call      {protocol, result, progress[{progress,total,message}]}
  read      {protocol, result}
  prompt    {protocol, result}
  complete  {protocol, result}
  elicit    {protocol, elicitations[{message, requestedSchema}], result}   (answers --answer)
"""

import argparse
import asyncio
import json
import sys

from mcp import Client, StdioServerParameters, types


def dump(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


async def run(args):
    observations = {}
    elicitations = []
    progress = []

    async def on_elicit(_context, params):
        elicitations.append({
            "message": params.message,
            "requestedSchema": getattr(params, "requested_schema", None) and dump(params.requested_schema),
        })
        if args.answer == "accept":
            return types.ElicitResult(action="accept", content=json.loads(args.content))
        return types.ElicitResult(action=args.answer)

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    if args.http:
        server = args.http
    else:
        command, *rest = args.command
        server = StdioServerParameters(command=command, args=rest)

    client = Client(
        server,
        mode=args.mode,
        elicitation_callback=on_elicit if args.scenario == "elicit" else None,
        cache=None,
    )
    async with client:
        observations["protocol"] = client.protocol_version
        arguments = json.loads(args.args)
        if args.scenario == "list":
            info = client.server_info
            observations["server"] = dump(info) if info else None
            tools, cursor, pages = [], None, 0
            while True:
                page = await client.list_tools(cursor=cursor)
                pages += 1
                tools += [{"name": t.name} for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            observations["tools"] = tools
            observations["pages"] = pages
            observations["resources"] = [
                {"uri": str(r.uri), "name": r.name} for r in (await client.list_resources()).resources
            ]
            observations["templates"] = [
                {"uriTemplate": t.uri_template} for t in (await client.list_resource_templates()).resource_templates
            ]
            observations["prompts"] = [{"name": p.name} for p in (await client.list_prompts()).prompts]
        elif args.scenario in ("call", "elicit"):
            result = await client.call_tool(
                args.tool, arguments, progress_callback=on_progress if args.progress else None
            )
            observations["result"] = dump(result)
            observations["progress"] = progress
            observations["elicitations"] = elicitations
        elif args.scenario == "read":
            observations["result"] = dump(await client.read_resource(args.uri))
        elif args.scenario == "prompt":
            observations["result"] = dump(await client.get_prompt(args.name, arguments))
        elif args.scenario == "complete":
            if args.ref_prompt:
                ref = types.PromptReference(type="ref/prompt", name=args.ref_prompt)
            else:
                ref = types.ResourceTemplateReference(type="ref/resource", uri=args.ref_uri)
            result = await client.complete(ref, {"name": args.arg, "value": args.value})
            observations["result"] = dump(result)
        else:
            raise SystemExit(f"unknown scenario {args.scenario!r}")
    return observations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--mode", default="legacy")
    parser.add_argument("--http")
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--tool")
    parser.add_argument("--args", default="{}")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--uri")
    parser.add_argument("--name")
    parser.add_argument("--ref-prompt")
    parser.add_argument("--ref-uri")
    parser.add_argument("--arg")
    parser.add_argument("--value", default="")
    parser.add_argument("--answer", default="accept", choices=["accept", "decline", "cancel"])
    parser.add_argument("--content", default="{}")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    if bool(args.http) == bool(args.stdio):
        parser.error("give exactly one of --http URL or --stdio -- CMD ARGS...")
    if args.stdio and not args.command:
        parser.error("--stdio needs a command after --")
    try:
        observations = asyncio.run(run(args))
    except Exception as error:  # the driver failed to run: report it, the test fails
        print(f"client.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(observations))


if __name__ == "__main__":
    main()
