"""A driver for Portcullis's end-to-end tests around the official MCP Python SDK (`mcp` 2.x).

It connects to one MCP server (a stdio command or a streamable HTTP URL), runs one scenario and
prints ONE JSON object of observations on stdout; the Rust tests make the assertions.
Exit codes: 0 the scenario ran (a failed tools/call is an observation: `error`, `cancelled`);
2 the server answered the scenario's read/prompt/complete/list request with an error (the JSON,
with `error`, is still printed); 1 the driver could not run (bad usage, connection or handshake
failed), with a message on stderr.

    .venv/bin/python tests/py/client.py --scenario list --mode legacy --http http://127.0.0.1:8787/mcp
    .venv/bin/python tests/py/client.py --scenario call --mode 2026-07-28 --tool fx.slow \\
        --args '{"ms":300}' --progress --stdio -- CMD ARGS...

Options: --tool NAME --args JSON --progress --timeout-ms N --cancel-after-ms N --uri URI
--name PROMPT --ref-prompt NAME | --ref-uri TEMPLATE --arg NAME --value PREFIX --context JSON
--answer accept|decline|cancel|never --content JSON --roots JSON (file:// URIs) --kind tools|resources|prompts
--wait-ms N --header 'Name: value' (repeatable, HTTP only).

--mode (the SDK's `Client(mode=...)`), as it really goes on the wire:
  legacy      `initialize` (protocolVersion 2025-11-25) + `notifications/initialized`, then a session:
              the server may send requests (elicitation/create, roots/list) and notifications;
              over HTTP the Mcp-Session-Id and MCP-Protocol-Version headers follow.
  2026-07-28  no handshake at all: every request carries `_meta` with
              io.modelcontextprotocol/protocolVersion, clientInfo and clientCapabilities (plus the
              Mcp-Method / Mcp-Name / MCP-Protocol-Version headers over HTTP). The server's
              capabilities are NOT fetched (a synthesized empty discover result is adopted), so
              `capabilities` is {} and `server` comes from the serverInfo `_meta` stamp of results,
              i.e. null in `list`. A result with resultType "input_required" (inputRequests +
              requestState) is answered through the same callbacks (elicitation, roots) and the
              request is re-sent with inputResponses and the echoed requestState, up to 10 rounds.
              Results without resultType are rejected by the SDK. List changes only arrive through
              `subscriptions/listen` (client.listen), never as spontaneous notifications.
              Cancellation: stdio sends notifications/cancelled; HTTP aborts the request's POST.
  auto        `server/discover` at 2026-07-28 first; on any JSON-RPC error (or a discover result
              without a modern version) it falls back to `initialize` on the same connection, so
              against a session-era server it behaves as legacy with one extra failed request.

Scenarios and their output (every object also has protocol, server, notifications, wire):
  list          {capabilities, instructions, tools[], resources[], templates[], prompts[] (full
                objects), pages (tool pages), pageCounts{tools,resources,templates,prompts},
                skipped[] (kinds the server did not advertise), errors{kind: error}?}
  call          {result | error{code,message,data?}, cancelled, elapsedMs,
                 progress[{progress,total,message}], elicitations[]}  (no elicitation capability)
  elicit        like call, with the elicitation capability declared; each request the callback saw:
                elicitations[{message, requestedSchema, mode, via: "request"|"input_required", url?}]
  --follow-url ACCOUNT (with call or elicit): declares elicitation too; each URL-mode request
                is opened with tests/node/browser.mjs signing in as ACCOUNT (--deny-url: pressing
                deny), then answered accept; browsers[] holds browser.mjs's reports
  --approve-url FILE (with call or elicit): declares URL elicitation only (the SDK would
                declare forms too: its capability ad is narrowed, as a client that only opens
                links declares); each URL-mode request is approved on Portcullis's approval
                page in Chromium with the passkey kept in FILE (tests/node/passkey.mjs), then
                answered accept
  read/prompt/complete  {result | error}
  list_changed  {call, notified, tools[] (listed again), resources[]/prompts[] for --kind;
                 2026-07-28 only: honored (the filter the server acknowledged), events[] (kinds the
                 subscriptions/listen stream yielded)}
  wire          every JSON-RPC message in order, payload-free: {dir: out|in, method?, id?,
                result: resultType|"ok", error: code, progressToken, requestState, inputResponses[],
                inputRequests{key: method}, version (_meta protocolVersion)}

Gotchas found with mcp 2.3.0:
- stdio children get only HOME, LOGNAME, PATH, SHELL, TERM, USER unless given env (this driver
  passes its whole environment).
- `call` declares no elicitation capability (a server that needs an answer must fail closed);
  `elicit` declares form and url. In 2026-07-28 mode the question comes back inside an
  input_required result (`via: "input_required"`, wire: tools/call -> input_required with
  inputRequests + requestState -> tools/call again with inputResponses + requestState ->
  complete); in a session it is a blocking elicitation/create (`via: "request"`). The same
  callback serves both.
- After a tools/call of a tool it has not listed yet, the SDK sends tools/list to fetch the output
  schema and validates structuredContent (a mismatch is a RuntimeError: `error` here).
- 2026-07-28 results must carry resultType (list results also ttlMs and cacheScope); results
  without them fail validation (a ValidationError, reported as `error` / `errors`). A session-era
  server (server-everything) answers a pinned 2026-07-28 client with such results over stdio and
  with -32000 "Server not initialized" over HTTP: use legacy or auto there.
- A pinned 2026-07-28 client sends nothing before the first request, so over stdio `elapsedMs`
  of the first call includes the child's start-up (about 1 s for a Python server).
- Cancellation (`--cancel-after-ms`) is an anyio cancel scope around call_tool: the SDK queues
  notifications/cancelled (it shows in `wire`); the streamable-HTTP transport at 2026-07-28
  turns it into aborting that request's POST instead of sending it. A timeout
  (`--timeout-ms`) is MCPError -32001 "Request 'tools/call' timed out", also followed by
  notifications/cancelled.
- At 2026-07-28 a list change reaches message_handler as notifications/*/list_changed only on a
  `subscriptions/listen` stream; the `list_changed` scenario opens one for all three kinds.

tests/py/stateless_server.py is a small dual-era server on the same SDK to check this driver.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

SCENARIOS = ["list", "call", "elicit", "read", "prompt", "complete", "list_changed"]
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"


def dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [dump(v) for v in value]
    return value


def error_observation(error: BaseException) -> dict[str, Any]:
    if isinstance(error, MCPError):
        out = {"code": error.error.code, "message": error.error.message}
        if error.error.data is not None:
            out["data"] = error.error.data
        return out
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return {"type": "ValidationError", "message": f"{error.title}: {problems}"}
    return {"type": type(error).__name__, "message": str(error)}


def leaf(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def summarize(direction: str, message: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"dir": direction}
    method = getattr(message, "method", None)
    if method is not None:
        entry["method"] = method
        if getattr(message, "id", None) is not None:
            entry["id"] = message.id
        params = message.params or {}
        meta = params.get("_meta") or {}
        if VERSION_KEY in meta:
            entry["version"] = meta[VERSION_KEY]
        if "progressToken" in meta:
            entry["progressToken"] = True
        if "requestState" in params:
            entry["requestState"] = True
        if params.get("inputResponses"):
            entry["inputResponses"] = sorted(params["inputResponses"])
        if method == "notifications/cancelled":
            entry["requestId"] = params.get("requestId")
    elif hasattr(message, "result"):
        entry["id"] = message.id
        result = message.result or {}
        entry["result"] = result.get("resultType") or result.get("action") or "ok"
        if result.get("inputRequests"):
            entry["inputRequests"] = {k: v.get("method") for k, v in result["inputRequests"].items()}
        if "requestState" in result:
            entry["requestState"] = True
    elif hasattr(message, "error"):
        entry["id"] = message.id
        entry["error"] = message.error.code
    return entry


class _TapRead:
    def __init__(self, inner, tap):
        self._inner, self._tap = inner, tap

    def _seen(self, item):
        if isinstance(item, SessionMessage):
            self._tap.record("in", item.message)
        return item

    async def receive(self):
        return self._seen(await self._inner.receive())

    def __aiter__(self):
        return self

    async def __anext__(self):
        return self._seen(await self._inner.__anext__())

    async def aclose(self):
        await self._inner.aclose()

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name):  # last_context and friends
        return getattr(self._inner, name)


class _TapWrite:
    def __init__(self, inner, tap):
        self._inner, self._tap = inner, tap

    async def send(self, item, /):
        if isinstance(item, SessionMessage):
            self._tap.record("out", item.message)
        await self._inner.send(item)

    async def aclose(self):
        await self._inner.aclose()

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class Tap:
    """A transport wrapper that records every JSON-RPC message in both directions."""

    def __init__(self, inner):
        self._inner = inner
        self.wire: list[dict[str, Any]] = []
        self.server_request_ids: set[Any] = set()

    def record(self, direction: str, message: Any) -> None:
        self.wire.append(summarize(direction, message))
        if direction == "in" and getattr(message, "method", None) and getattr(message, "id", None) is not None:
            self.server_request_ids.add(message.id)

    async def __aenter__(self):
        read, write = await self._inner.__aenter__()
        return _TapRead(read, self), _TapWrite(write, self)

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)


async def open_link(url: str, account: str, deny: bool) -> dict[str, Any]:
    """Follows a sign-in link as a person's browser would (tests/node/browser.mjs)."""
    repo = Path(__file__).resolve().parents[2]
    command = [str(repo / "tests/node/node_modules/node/bin/node"),
               str(repo / "tests/node/browser.mjs"), url, "--account", account]
    if deny:
        command.append("--deny")
    done = await anyio.run_process(command, check=False, stderr=None)
    try:
        return {"code": done.returncode, **json.loads(done.stdout)}
    except ValueError:
        return {"code": done.returncode, "output": done.stdout.decode(errors="replace")[:500]}


def url_only(session_class) -> None:
    """Narrows the SDK's capability ad to URL elicitation (it declares form and url whenever
    an elicitation callback is set): a client that can open links but not show forms."""
    build = session_class._build_capabilities

    def narrowed(self, version):
        capabilities = build(self, version)
        if capabilities.elicitation is not None:
            capabilities.elicitation = types.ElicitationCapability(url=types.UrlElicitationCapability())
        return capabilities

    session_class._build_capabilities = narrowed


async def approve_link(url: str, authenticator: str) -> dict[str, Any]:
    """Approves on Portcullis's approval page as a person with a passkey would
    (tests/node/passkey.mjs in Chromium, with the passkey kept in `authenticator`)."""
    repo = Path(__file__).resolve().parents[2]
    command = [str(repo / "tests/node/node_modules/node/bin/node"),
               str(repo / "tests/node/passkey.mjs"), "--authenticator", authenticator,
               "--open", url, "--click", "Approve with your passkey", "--expect", "Approved."]
    done = await anyio.run_process(command, check=False, stderr=None)
    try:
        return {"code": done.returncode, **json.loads(done.stdout)}
    except ValueError:
        return {"code": done.returncode, "output": done.stdout.decode(errors="replace")[:500]}


async def run(args) -> tuple[dict[str, Any], int]:
    observations: dict[str, Any] = {}
    elicitations: list[dict[str, Any]] = []
    browsers: list[dict[str, Any]] = []
    progress: list[dict[str, Any]] = []
    roots_requests = 0
    notifications = {"tools": 0, "resources": 0, "prompts": 0}
    status = 0

    if args.http:
        headers = {}
        for header in args.header:
            name, colon, value = header.partition(":")
            if not colon or not name.strip():
                raise SystemExit(f"client.py: --header wants 'Name: value', got {header!r}")
            headers[name.strip()] = value.strip()
        inner = streamable_http_client(args.http, http_client=create_mcp_http_client(headers=headers))
    else:
        command, *rest = args.command
        inner = stdio_client(StdioServerParameters(command=command, args=rest, env=dict(os.environ)))
    tap = Tap(inner)

    async def on_elicit(context, params):
        mode = getattr(params, "mode", None) or "form"
        elicitations.append({
            "message": params.message,
            "requestedSchema": dump(getattr(params, "requested_schema", None)),
            "mode": mode,
            "via": "request" if context.request_id in tap.server_request_ids else "input_required",
        })
        if mode == "url":
            elicitations[-1]["url"] = params.url
            if args.approve_url:
                # The person opens the approval page and approves with their passkey.
                browsers.append(await approve_link(params.url, args.approve_url))
                return types.ElicitResult(action="accept")
            if not args.follow_url:
                return types.ElicitResult(action="decline")
            # The person opens the link (browser.mjs signs in as the account), then says so.
            browsers.append(await open_link(params.url, args.follow_url, args.deny_url))
            return types.ElicitResult(action="accept")
        if args.answer == "never":  # the person walks away; the server's own timeout must decide
            await anyio.sleep(3600)
        if args.answer == "accept":
            return types.ElicitResult(action="accept", content=args.content)
        return types.ElicitResult(action=args.answer)

    async def on_roots(_context):
        nonlocal roots_requests
        roots_requests += 1
        roots = [r if isinstance(r, dict) else {"uri": r} for r in args.roots]
        return types.ListRootsResult(roots=[types.Root.model_validate(r) for r in roots])

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    async def on_message(message):
        method = getattr(message, "method", None)
        for kind in notifications:
            if method == f"notifications/{kind}/list_changed":
                notifications[kind] += 1

    client = Client(
        tap,
        mode=args.mode,
        elicitation_callback=on_elicit if args.scenario == "elicit" or args.follow_url or args.approve_url else None,
        list_roots_callback=on_roots if args.roots is not None else None,
        message_handler=on_message,
        cache=None,
        client_info=types.Implementation(name="portcullis-e2e-py", version="1.0.0"),
    )
    if args.approve_url:
        url_only(ClientSession)
    async with client:
        observations["protocol"] = client.protocol_version
        info = client.server_info
        observations["server"] = dump(info) if info else None
        arguments = args.args

        async def answered(request):
            nonlocal status
            try:
                observations["result"] = dump(await request())
            except (MCPError, ValidationError) as error:
                observations["error"] = error_observation(error)
                status = 2

        if args.scenario == "list":
            observations["capabilities"] = dump(client.server_capabilities)
            observations["instructions"] = client.instructions
            observations["pageCounts"] = {}
            kinds = [
                ("tools", "tools", client.list_tools),
                ("resources", "resources", client.list_resources),
                ("templates", "resource_templates", client.list_resource_templates),
                ("prompts", "prompts", client.list_prompts),
            ]
            # A kind the server did not advertise is skipped (not an error). A pinned 2026-07-28
            # client never fetched the capabilities, so it asks for every kind.
            known = client.server_capabilities if args.mode != "2026-07-28" else None
            advertised = {"tools": "tools", "resources": "resources", "templates": "resources", "prompts": "prompts"}
            for name, attribute, fetch in kinds:
                if known is not None and getattr(known, advertised[name], None) is None:
                    observations.setdefault("skipped", []).append(name)
                    observations[name] = []
                    observations["pageCounts"][name] = 0
                    continue
                items, cursor, pages = [], None, 0
                try:
                    while True:
                        page = await fetch(cursor=cursor)
                        pages += 1
                        items += getattr(page, attribute)
                        cursor = page.next_cursor
                        if not cursor or pages >= 1000:
                            break
                except (MCPError, ValidationError) as error:
                    observations.setdefault("errors", {})[name] = error_observation(error)
                    status = 2
                observations[name] = dump(items)
                observations["pageCounts"][name] = pages
            observations["pages"] = observations["pageCounts"]["tools"]
        elif args.scenario in ("call", "elicit"):
            timeout = args.timeout_ms / 1000 if args.timeout_ms else None
            started = time.monotonic()
            cancelled = False
            try:
                with anyio.CancelScope() as scope:
                    if args.cancel_after_ms:
                        scope.deadline = anyio.current_time() + args.cancel_after_ms / 1000
                    observations["result"] = dump(
                        await client.call_tool(
                            args.tool,
                            arguments,
                            read_timeout_seconds=timeout,
                            progress_callback=on_progress if args.progress else None,
                        )
                    )
                cancelled = scope.cancelled_caught
            except (MCPError, ValidationError, RuntimeError) as error:
                observations["error"] = error_observation(error)
            observations["elapsedMs"] = round((time.monotonic() - started) * 1000)
            observations["cancelled"] = cancelled
            if cancelled or timeout:
                await anyio.sleep(0.5)  # let the cancellation leave before the connection closes
            observations["progress"] = progress
            observations["elicitations"] = elicitations
            observations["browsers"] = browsers
        elif args.scenario == "read":
            await answered(lambda: client.read_resource(args.uri))
        elif args.scenario == "prompt":
            await answered(lambda: client.get_prompt(args.name, arguments))
        elif args.scenario == "complete":
            if args.ref_prompt:
                ref = types.PromptReference(type="ref/prompt", name=args.ref_prompt)
            else:
                ref = types.ResourceTemplateReference(type="ref/resource", uri=args.ref_uri)
            await answered(
                lambda: client.complete(ref, {"name": args.arg, "value": args.value}, context_arguments=args.context)
            )
        elif args.scenario == "list_changed":
            await list_changed(client, args, observations, notifications)
    observations["notifications"] = notifications
    if args.roots is not None:
        observations["rootsRequests"] = roots_requests
    observations["wire"] = tap.wire
    return observations, status


async def list_changed(client, args, observations, notifications) -> None:
    kind = args.kind
    wait = args.wait_ms / 1000
    before = notifications[kind]

    async def call():
        try:
            observations["call"] = dump(await client.call_tool(args.tool, args.args))
        except (MCPError, ValidationError) as error:
            observations["error"] = error_observation(error)

    if client.protocol_version == "2026-07-28":
        # Stateless: no spontaneous list_changed; listen for change events instead.
        events = {ToolsListChanged: "tools", ResourcesListChanged: "resources", PromptsListChanged: "prompts"}
        async with client.listen(
            tools_list_changed=True, resources_list_changed=True, prompts_list_changed=True
        ) as subscription:
            observations["honored"] = dump(subscription.honored)
            await call()
            # The same change also reaches message_handler as a notifications/*/list_changed
            # (counted in `notifications`); `events` is what the subscription iterator yielded.
            observations["events"] = []
            with anyio.move_on_after(wait):
                async for event in subscription:
                    seen = events.get(type(event), type(event).__name__)
                    observations["events"].append(seen)
                    if seen == kind:
                        break
    else:
        await call()
        with anyio.move_on_after(wait):
            while notifications[kind] == before:
                await anyio.sleep(0.05)
    observations["notified"] = notifications[kind] > before or kind in observations.get("events", [])
    observations["tools"] = dump((await client.list_tools()).tools)
    if kind == "resources":
        observations["resources"] = dump((await client.list_resources()).resources)
    if kind == "prompts":
        observations["prompts"] = dump((await client.list_prompts()).prompts)


def json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None


class Parser(argparse.ArgumentParser):
    def error(self, message):  # exit 1, not argparse's 2: 2 means "the server answered an error"
        self.print_usage(sys.stderr)
        print(f"client.py: {message}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument("--mode", default="legacy", choices=["legacy", "auto", "2026-07-28"])
    parser.add_argument("--http")
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--tool")
    parser.add_argument("--args", type=json_arg, default={})
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--timeout-ms", type=int)
    parser.add_argument("--cancel-after-ms", type=int)
    parser.add_argument("--uri")
    parser.add_argument("--name")
    parser.add_argument("--ref-prompt")
    parser.add_argument("--ref-uri")
    parser.add_argument("--arg")
    parser.add_argument("--value", default="")
    parser.add_argument("--context", type=json_arg)
    parser.add_argument("--answer", default="accept", choices=["accept", "decline", "cancel", "never"])
    parser.add_argument("--content", type=json_arg, default={})
    parser.add_argument("--roots", type=json_arg)
    parser.add_argument("--kind", default="tools", choices=["tools", "resources", "prompts"])
    parser.add_argument("--wait-ms", type=int, default=5000)
    parser.add_argument("--follow-url", metavar="ACCOUNT")
    parser.add_argument("--deny-url", action="store_true")
    parser.add_argument("--approve-url", metavar="FILE")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    if bool(args.http) == bool(args.stdio):
        parser.error("give exactly one of --http URL or --stdio -- CMD ARGS...")
    if args.stdio and not args.command:
        parser.error("--stdio needs a command after --")
    if args.scenario in ("call", "elicit", "list_changed") and not args.tool:
        parser.error(f"--scenario {args.scenario} needs --tool")
    try:
        observations, status = anyio.run(run, args)
    except Exception as error:  # the driver failed to run: report it, the test fails
        error = leaf(error)
        print(f"client.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(observations))
    sys.exit(status)


if __name__ == "__main__":
    main()
