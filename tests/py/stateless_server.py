"""A tiny dual-era MCP server on the official Python SDK (`mcp` 2.x MCPServer), for checking the
client drivers (tests/py/client.py, tests/node/client.mjs) against a server that speaks the
stateless 2026-07-28 era as well as the session era. Not used by Portcullis itself.

    .venv/bin/python tests/py/stateless_server.py                 # stdio
    .venv/bin/python tests/py/stateless_server.py --http 8931     # streamable HTTP at /mcp

The SDK picks the era per connection: a first request with the 2026-07-28 `_meta` envelope (or a
`server/discover` probe) makes it stateless, `initialize` makes it a session.

Tools: echo(text), add(a, b), slow(ms, steps) with progress, ask(question) which elicits
{confirm: bool} (a blocking elicitation/create in the session era, an input-required result with
requestState in 2026-07-28) and answers "answer: accept confirm=true" / "answer: decline" /
"answer: cancel", roots() which lists the client's roots the same two ways, add_tool(name) which
registers a tool and announces the change (notifications/tools/list_changed in a session,
subscriptions/listen events when stateless).
Resources: test://static/hello (text), template test://files/{name}. Prompt: greet(name) with
completion of `name` (alice, bob, carol) and of the template's `name` (readme.txt, notes.txt).
"""

import argparse
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, ListRoots, MCPServer, Resolve
from mcp_types import Completion, ListRootsResult, PromptReference, ResourceTemplateReference
from pydantic import BaseModel

server = MCPServer("portcullis-py-test-server", version="1.0.0", instructions="A test server for the drivers.")


class Confirm(BaseModel):
    confirm: bool


def confirm_question(question: str) -> Elicit[Confirm]:
    return Elicit(question, Confirm)


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
async def slow(ctx: Context, ms: int = 300, steps: int = 3) -> str:
    """Sleep ms milliseconds in `steps` steps, reporting progress after each."""
    for step in range(1, steps + 1):
        await anyio.sleep(ms / 1000 / steps)
        await ctx.report_progress(step, steps, f"step {step}")
    return f"slept {ms} ms"


@server.tool()
def ask(question: str, answer: Annotated[ElicitationResult[Confirm], Resolve(confirm_question)]) -> str:
    """Ask the user a yes/no question through elicitation."""
    if answer.action == "accept":
        return f"answer: accept confirm={str(answer.data.confirm).lower()}"
    return f"answer: {answer.action}"


def client_roots() -> ListRoots:
    return ListRoots()


@server.tool()
def roots(listed: Annotated[ListRootsResult, Resolve(client_roots)]) -> str:
    """The client's roots (roots/list in a session, an input-required round when stateless)."""
    return "roots: " + " ".join(str(root.uri) for root in listed.roots)


@server.tool()
async def add_tool(ctx: Context, name: str) -> str:
    """Register a new tool named `name` and announce the list change."""

    def added() -> str:
        return f"{name} was added"

    server.add_tool(added, name=name, description="added at run time")
    if ctx.protocol_version == "2026-07-28":
        await ctx.notify_tools_changed()
    else:
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.resource("test://static/hello", mime_type="text/plain")
def hello() -> str:
    return "hello from the python test server"


@server.resource("test://files/{name}", mime_type="text/plain")
def file(name: str) -> str:
    return f"contents of {name}"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Please greet {name} warmly."


@server.completion()
async def complete(ref, argument, context):
    if isinstance(ref, PromptReference) and argument.name == "name":
        pool = ["alice", "bob", "carol"]
    elif isinstance(ref, ResourceTemplateReference) and argument.name == "name":
        pool = ["readme.txt", "notes.txt"]
    else:
        return None
    return Completion(values=[v for v in pool if v.startswith(argument.value)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
