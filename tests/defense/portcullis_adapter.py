"""Portcullis as the defence under test of mcp-defense-bench, driven through the bench's own
stdio-proxy adapter (`mcp_defense_bench.adapters.stdio.StdioProxyAdapter`).

The bench puts a proxy in front of a fixture server's launch command, drives the pair with
`fastmcp.Client` over stdio once without the proxy and once through it, and compares the two
runs (see the adapter's docstring in the installed package). Portcullis is such a proxy once
the server command becomes its one upstream: `wrap` writes, per run, the configuration a user
would get from `portcullis import` for a server it knows nothing about, and starts
`portcullis serve --config FILE` over stdio:

- one upstream, served in passthrough mode (one upstream, its names unchanged: the client
  calls the tools the bench's fixture lists);
- the shipped Cedar schema and default policy (no `[policy]` table): reads run, every other
  call needs a person's approval, and a tool config does not classify counts as a side effect,
  so with no classification every call of this unknown server asks;
- contained (landlock and seccomp, the default), with the server's working directory as its
  root (where the bench's fixture server records the calls it receives) and `HOME` (FastMCP
  will not start without one; the environment is otherwise scrubbed), plus the fixture's
  `configuredBoundary` when the case names the filesystem boundary the deployment configured;
- pins (`tofu`), description hygiene, schema checks, untrusted taint: the shipped defaults.

Nothing here reads a case's expected outcome or names a case. Portcullis's own files (config,
pins, evidence log) live in a directory of their own beside the run's, since a root may not hold
them.

Two things the stock adapter leaves open are fixed here, both outside Portcullis:

- the protocol revision: the stock harness builds `Client(transport)` (mode "auto"); `pin`
  makes both arms (direct and proxied) speak one revision, "2025-11-25" (the initialize
  handshake) or "2026-07-28" (stateless), and counts the revision each connection adopted;
- who answers Portcullis's approval forms: nobody (`approver="none"`, the stock client declares
  no elicitation, so an asked call does not run), or a person who approves every form unread
  (`approver="yes"`, the case SECURITY.md says Portcullis does not protect against), which shows
  what Portcullis does before and besides asking.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastmcp import Client
from mcp_defense_bench.adapters import stdio as bench_stdio
from mcp_defense_bench.adapters.stdio import StdioProxyAdapter

REVISIONS = {"2025-11-25": "legacy", "2026-07-28": "2026-07-28"}
APPROVERS = ("none", "yes")

# The revision each connection of the harness adopted, both arms ("2025-11-25", "2026-07-28").
ADOPTED: collections.Counter[str] = collections.Counter()
# Approval forms answered by the approving person (approver="yes").
ANSWERED: collections.Counter[str] = collections.Counter()


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string for what we write here


def config_text(server_cmd: list[str], workdir: Path, boundary: str | None) -> str:
    """The configuration of one run: the fixture server as one imported, unclassified upstream."""
    roots = [str(workdir)]
    if boundary:
        roots.append(boundary)
    command = ", ".join(toml_string(a) for a in server_cmd)
    return "\n".join(
        [
            "# One mcp-defense-bench fixture server behind Portcullis: the shipped policy, an",
            "# unclassified upstream as `portcullis import` writes it, its working directory as root.",
            "[server]",
            'namespacing = "passthrough"',
            'evidence = "state/evidence.jsonl"',
            "",
            "[identity.local]",
            'user = "bench"',
            "",
            "[[upstream]]",
            'name = "server"',
            f"command = [{command}]",
            f"cwd = {toml_string(str(workdir))}",
            f"roots = [{', '.join(toml_string(r) for r in roots)}]",
            "# FastMCP's settings need a home directory (platformdirs); the scrubbed environment has none.",
            f"env = {{ HOME = {toml_string(str(workdir))} }}",
            "",
        ]
    )


class PortcullisWrap:
    """`wrap(server_cmd, workdir) -> (cmd, env)` for the bench's StdioProxyAdapter."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        # $PORTCULLIS_BENCH_STATE keeps every run's config, pins and evidence log there, to read.
        kept = os.environ.get("PORTCULLIS_BENCH_STATE")
        self.base = Path(tempfile.mkdtemp(prefix="portcullis-bench-", dir=kept))
        self.runs = 0
        if not kept:
            atexit.register(shutil.rmtree, self.base, True)

    def __call__(self, server_cmd: list[str], workdir: Path) -> tuple[list[str], dict[str, str]]:
        self.runs += 1
        home = self.base / f"run-{self.runs}"
        home.mkdir()
        fixture = json.loads((workdir / "fixture.json").read_text(encoding="utf-8"))
        boundary = fixture.get("configuredBoundary") if isinstance(fixture, dict) else None
        config = home / "portcullis.toml"
        config.write_text(config_text(server_cmd, workdir, boundary if isinstance(boundary, str) else None), encoding="utf-8")
        return [str(self.binary), "serve", "--config", str(config)], {}


async def approve_unread(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
    """A person who approves every form without reading it: `approve: true`, nothing else."""
    schema = getattr(params, "requested_schema", None) or {}
    if "approve" not in (schema.get("properties") or {}):
        ANSWERED["declined (not an approval form)"] += 1
        from fastmcp.client.elicitation import ElicitResult

        return ElicitResult(action="decline")  # type: ignore[return-value]
    ANSWERED["approved"] += 1
    return {"approve": True}


def pin(revision: str, approver: str) -> None:
    """Make the bench's stdio harness speak `revision` on both arms, with `approver` answering."""
    mode = REVISIONS[revision]
    handler = approve_unread if approver == "yes" else None

    class PinnedClient(Client):  # type: ignore[type-arg]
        mode_pinned = revision

        def __init__(self, transport: Any, **kwargs: Any) -> None:
            if handler is not None:
                kwargs.setdefault("elicitation_handler", handler)
            super().__init__(transport, mode=mode, **kwargs)

        async def __aenter__(self) -> Any:
            entered = await super().__aenter__()
            ADOPTED[str(self.protocol_version)] += 1
            return entered

    bench_stdio.Client = PinnedClient  # the harness's module global, read at each connection


class PortcullisProxy(StdioProxyAdapter):
    """The bench's stdio-proxy adapter, unchanged but for one thing: the direct arm (the fixture
    server without Portcullis) of an input already driven at this revision is not driven again.
    It is deterministic, and the two approvers' runs would otherwise drive it twice."""

    async def _drive(self, fx: Any, *, proxied: bool) -> dict[str, Any]:
        if proxied:
            return await super()._drive(fx, proxied=True)
        key = (bench_stdio.Client.mode_pinned, json.dumps(fx, sort_keys=True))
        if key not in DIRECT:
            DIRECT[key] = await super()._drive(fx, proxied=False)
        return DIRECT[key]


DIRECT: dict[tuple[str, str], dict[str, Any]] = {}


def portcullis(binary: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> StdioProxyAdapter:
    """The adapter: `mcp-defense-bench run portcullis_adapter:portcullis` (binary from $PORTCULLIS_BIN)."""
    path = Path(binary or os.environ.get("PORTCULLIS_BIN") or shutil.which("portcullis") or "portcullis").resolve()
    # Detect: the one warning Portcullis gives without changing anything, a tool description
    # that names other upstreams' tools or tells the model what to do (`hygiene::shadowing`).
    # Everything else it does to a list or a call changes what the client sees (enforce).
    return PortcullisProxy(
        "portcullis",
        PortcullisWrap(path),
        warn_pattern=WARN_PATTERN,
        tool_class="runtime-proxy",
        timeout=timeout,
    )


WARN_PATTERN = r"possible cross-server shadowing"
