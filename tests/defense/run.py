"""Scores Portcullis on mcp-defense-bench's development and benign corpora, per protocol revision.

    .venv/bin/python tests/defense/run.py --bin target/release/portcullis --out target/defense-bench

For each revision (2025-11-25, 2026-07-28) and each approver (`none`: the bench's own client,
which answers no approval form; `yes`: a person who approves every form unread), it scores the
adapter of `portcullis_adapter.py` with the bench's own scorer (`score_matched` for the dev
corpus, `score_benign` for the benign one) and writes, under --out:

    REVISION/APPROVER/dev.json, benign.json   the bench's result documents, as `mcp-defense-bench
                                              run --out-dir` writes them
    summary.json                              versions, revisions adopted, totals, per-vector and
                                              per-case readings
    table.md                                  the same as markdown tables

The verdicts are the bench's `StdioProxyAdapter.assess` verdicts, computed --jobs at a time
(each is two process pairs) and then handed to the bench's scorer in its own order, so the
scores are the ones a sequential `mcp-defense-bench run` would give. `--limit N` scores only
the first N cases of each corpus, `--only PREFIX` those whose id starts so (smoke tests; the
totals then mean nothing).
Exit status: 0 when every run completed (whatever the scores), 1 when a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import portcullis_adapter  # noqa: E402
from mcp_defense_bench import BENCH_COMMIT, BENCH_VERSION  # noqa: E402
from mcp_defense_bench import __version__ as BENCH_PY_VERSION  # noqa: E402
from mcp_defense_bench.adapters import call_assess, meta_dict  # noqa: E402
from mcp_defense_bench.adapters._fixture import FIXTURE_TYPES  # noqa: E402
from mcp_defense_bench.jscompat import stringify  # noqa: E402
from mcp_defense_bench.runner import open_bench  # noqa: E402
from mcp_defense_bench.scoring import score_benign, score_matched, wired  # noqa: E402
from mcp_defense_bench.totals import totals  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Cases whose attack is text in a tool result meant for the model (an instruction, a false
# error, a request for the system prompt). Portcullis relays an allowed call's result as the
# upstream gave it: it does not judge what text says, so such a miss reads "not applicable",
# never "blocked". (A secret in a result is not here: that is a miss, see credential-token-theft.)
CONTENT_VECTORS = {
    "response-injection",
    "indirect-retrieval-injection",
    "false-error-escalation",
    "system-prompt-leakage",
    "tool-transfer",
}


class Recorded:
    """Hands the scorer verdicts computed beforehand, by case id and arm (as the bench's replay)."""

    def __init__(self, meta: Mapping[str, Any], verdicts: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.meta = dict(meta)
        self.verdicts = verdicts

    def assess(self, input: Mapping[str, Any], testcase: Mapping[str, Any]) -> dict[str, Any]:
        arm = "fixture" if input is testcase["fixture"] else "benignControl"
        return self.verdicts[(testcase["id"], arm)]


async def verdicts_of(adapter: Any, cases: list[dict[str, Any]], arms: tuple[str, ...], jobs: int) -> dict[tuple[str, str], dict[str, Any]]:
    meta = meta_dict(adapter)
    gate = asyncio.Semaphore(jobs)
    todo = [(tc, arm) for tc in cases if wired(meta, tc) for arm in arms]

    async def one(tc: dict[str, Any], arm: str) -> tuple[tuple[str, str], dict[str, Any]]:
        async with gate:
            return (tc["id"], arm), await call_assess(adapter, tc[arm], tc)

    return dict(await asyncio.gather(*(one(tc, arm) for tc, arm in todo)))


def harness_failure(verdict: Mapping[str, Any]) -> bool:
    """A drive that timed out or lost its process decided nothing; the bench would count it a block."""
    signal = str(verdict.get("signal") or "")
    return signal.startswith("blocked: ") and ("TimeoutError" in signal or "Connection closed" in signal)


def case_reading(tc: Mapping[str, Any], rec: Mapping[str, Any]) -> str:
    ftype = tc["fixture"].get("type")
    if ftype not in FIXTURE_TYPES:
        return "not applicable: not drivable through a stdio proxy"
    if harness_failure(rec["mal"]) or harness_failure(rec["benign"]):
        return "harness failure (timeout or lost process), not a decision"
    level = rec["level"]
    if level == "enforce":
        return "blocked"
    if level == "detect":
        return "detected (warned only)"
    if rec["falsePositive"]:
        return "blocked on both arms (false positive)"
    if tc["vector"] in CONTENT_VECTORS and ftype == "malicious-tool-result":
        return "not applicable: result content, not judged"
    return "missed"


def vector_reading(cell: Mapping[str, Any], readings: list[str], loaded: bool) -> str:
    if not loaded:
        return "not run (--limit or --only)"
    if not cell["verified"]:
        return "not applicable: not drivable through a stdio proxy"
    distinct = list(dict.fromkeys(readings))
    return "; ".join(distinct)


def selected(cases: list[dict[str, Any]], limit: int | None, only: list[str] | None) -> list[dict[str, Any]]:
    if only:
        cases = [tc for tc in cases if any(tc["id"].startswith(prefix) for prefix in only)]
    return cases[:limit] if limit else cases


async def score_one(binary: Path, revision: str, approver: str, limit: int | None, only: list[str] | None, jobs: int, out: Path) -> dict[str, Any]:
    portcullis_adapter.pin(revision, approver)
    portcullis_adapter.ADOPTED.clear()
    portcullis_adapter.ANSWERED.clear()
    adapter = portcullis_adapter.portcullis(binary)
    bench = open_bench()
    result: dict[str, Any] = {"revision": revision, "approver": approver}
    started = time.monotonic()
    for corpus, arms in (("dev", ("fixture", "benignControl")), ("benign", ("fixture",))):
        cases = selected(bench.load_cases(corpus), limit, only)
        verdicts = await verdicts_of(adapter, cases, arms, jobs)
        result.setdefault("failures", []).extend(
            {"id": case_id, "arm": arm, "signal": v.get("signal")} for (case_id, arm), v in verdicts.items() if harness_failure(v)
        )
        recorded = Recorded(meta_dict(adapter), verdicts)
        if corpus == "dev":
            doc = await score_matched(recorded, cases, bench.rubric, corpus="dev", tool="portcullis")
        else:
            doc = await score_benign(recorded, cases, bench.rubric, tool="portcullis")
        path = out / revision / approver / f"{corpus}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(stringify(doc) + "\n", "utf8")
        result[corpus] = doc
        result[f"{corpus}_cases"] = cases
    result["adopted"] = dict(portcullis_adapter.ADOPTED)
    result["answered"] = dict(portcullis_adapter.ANSWERED)
    result["seconds"] = round(time.monotonic() - started, 1)
    want = {revision}
    if set(result["adopted"]) != want:
        raise SystemExit(f"run at {revision} adopted {result['adopted']}: the revision was not the one asked for")
    return result


def recorded_runs(out: Path, limit: int | None, only: list[str] | None) -> list[dict[str, Any]]:
    """The runs of an earlier invocation, from its documents and summary.json (what only it knew)."""
    bench = open_bench()
    earlier = json.loads((out / "summary.json").read_text("utf8"))
    runs = []
    for old in earlier["runs"]:
        run: dict[str, Any] = {k: old[k] for k in ("revision", "approver", "adopted", "answered", "seconds")}
        for corpus in ("dev", "benign"):
            run[corpus] = json.loads((out / old["revision"] / old["approver"] / f"{corpus}.json").read_text("utf8"))
            run[f"{corpus}_cases"] = selected(bench.load_cases(corpus), limit, only)
        verdicts = [(c["id"], arm, c[key]) for c in run["dev"]["cases"] for arm, key in (("fixture", "mal"), ("benignControl", "benign"))]
        verdicts += [(it["id"], "fixture", it["verdict"]) for it in run["benign"]["items"]]
        run["failures"] = [{"id": i, "arm": arm, "signal": v.get("signal")} for i, arm, v in verdicts if harness_failure(v)]
        runs.append(run)
    return runs


def summarize(runs: list[dict[str, Any]], binary: Path) -> dict[str, Any]:
    rubric = open_bench().rubric
    sources = ["crates", "config", "Cargo.toml", "Cargo.lock"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    built = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", *sources], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *sources], capture_output=True, text=True).stdout.strip()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    summary: dict[str, Any] = {
        "versions": {
            "mcp-defense-bench": BENCH_PY_VERSION,
            "bench": f"{BENCH_VERSION} @ {BENCH_COMMIT}",
            "rubric": rubric["version"],
            "fastmcp": importlib.metadata.version("fastmcp"),
            "mcp (Python SDK)": importlib.metadata.version("mcp"),
            "portcullis": version,
            "portcullis commit": f"{commit} (its code and config last changed in {built})" + (", with uncommitted changes to them" if dirty else ""),
            "python": sys.version.split()[0],
        },
        "config": "shipped default policy; one unclassified upstream in passthrough mode, contained, its working directory as root (tests/defense/portcullis_adapter.py)",
        "runs": [],
    }
    for run in runs:
        dev, benign = run["dev"], run["benign"]
        by_id = {tc["id"]: tc for tc in run["dev_cases"]}
        per_case = []
        for rec in dev["cases"]:
            tc = by_id[rec["id"]]
            per_case.append(
                {
                    "id": rec["id"],
                    "vector": tc["vector"],
                    "type": tc["fixture"].get("type"),
                    "level": rec["level"],
                    "falsePositive": rec["falsePositive"],
                    "reading": case_reading(tc, rec),
                    "malicious": rec["mal"].get("signal"),
                    "control": rec["benign"].get("signal"),
                }
            )
        vectors = {}
        for v in rubric["vectors"]:
            vid = v["id"]
            cell = dev["coverage"][vid]
            readings = [c["reading"] for c in per_case if c["vector"] == vid]
            vectors[vid] = {
                "level": cell["level"],
                "robustCoverage": cell["robustCoverage"],
                "fixtures": cell["fixtures"],
                "fpCount": cell["fpCount"],
                "appliesTo": v.get("appliesTo"),
                "reading": vector_reading(cell, readings, any(tc["vector"] == vid for tc in run["dev_cases"])),
            }
        rev = run["revision"]
        applying = [v["id"] for v in rubric["vectors"] if rev in (v.get("appliesTo") or [rev])]
        applying_total = sum(dev["coverage"][vid]["robustCoverage"] for vid in applying)
        summary["runs"].append(
            {
                "revision": rev,
                "approver": run["approver"],
                "adopted": run["adopted"],
                "harnessFailures": run.get("failures", []),
                "answered": run["answered"],
                "seconds": run["seconds"],
                "dev": {k: v for k, v in dev["summary"].items() if k != "measuredAt"},
                "totals": totals(rubric, dev["coverage"]),
                "revisionTotal": {"vectors": len(applying), "robustCoverage": round(applying_total, 4)},
                "benign": {k: v for k, v in benign["summary"].items() if k != "measuredAt"},
                "benignFalsePositives": [
                    {"id": it["id"], "kind": it["kind"], "signal": it["verdict"].get("signal")} for it in benign["items"] if it["falsePositive"]
                ],
                "vectors": vectors,
                "cases": per_case,
            }
        )
    return summary


def cell(v: Mapping[str, Any]) -> str:
    if v["level"] == "unknown":
        return "unknown"
    fp = f", {v['fpCount']} FP" if v["fpCount"] else ""
    return f"{v['level']} {v['robustCoverage']:g}{fp}"


def grouped_reading(runs: list[Mapping[str, Any]], vid: str) -> str:
    """The vector's readings, each labelled with the runs it holds for (none when it holds for all)."""
    by_reading: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        by_reading.setdefault(r["vectors"][vid]["reading"], []).append(r)
    if len(by_reading) == 1:
        return next(iter(by_reading))
    parts = []
    for reading, holders in by_reading.items():
        approvers = {r["approver"] for r in holders}
        whole = len(approvers) == 1 and len(holders) == sum(1 for r in runs if r["approver"] in approvers)
        label = f"approver {next(iter(approvers))}" if whole else ", ".join(f"{r['revision']} {r['approver']}" for r in holders)
        parts.append(f"{label}: {reading}")
    return "<br>".join(parts)


def markdown(summary: Mapping[str, Any]) -> str:
    runs = summary["runs"]
    heads = [f"{r['revision']}, approver {r['approver']}" for r in runs]
    lines = ["| versions | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary["versions"].items()]
    lines += ["", "| totals (the bench's own) | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(runs)]
    lines.append("| dev: CorpusRobustCoverage, all 37 vectors | " + " | ".join(r["dev"]["overall"] for r in runs) + " |")
    lines.append(
        "| dev: vectors of this revision (rubric `appliesTo`) | "
        + " | ".join(f"{r['revisionTotal']['robustCoverage']:g} / {r['revisionTotal']['vectors']}" for r in runs)
        + " |"
    )
    lines.append("| dev: enforce / detect / none / unknown vectors | " + " | ".join("{enforce} / {detect} / {none} / {unknown}".format(**r["dev"]["covered"]) for r in runs) + " |")
    lines.append("| dev: cases run, matched controls flagged | " + " | ".join(f"{r['dev']['casesRun']}, {r['dev']['falsePositives']}" for r in runs) + " |")
    lines.append(
        "| benign: items, flagged, rate (Wilson 95%) | "
        + " | ".join(
            f"{r['benign']['items']}, {r['benign']['falsePositives']}, {r['benign']['fpRate']:g} ({r['benign']['fpRate95ci']['lo']:g}–{r['benign']['fpRate95ci']['hi']:g})"
            for r in runs
        )
        + " |"
    )
    lines += ["", "| vector | " + " | ".join(heads) + " | reading |", "| --- |" + " --- |" * (len(runs) + 1)]
    for vid in runs[0]["vectors"]:
        cells = [cell(r["vectors"][vid]) for r in runs]
        reading = grouped_reading(runs, vid)
        applies = runs[0]["vectors"][vid]["appliesTo"] or []
        note = "" if "2025-11-25" in applies else " (2026-07-28 only)"
        lines.append(f"| {vid}{note} | " + " | ".join(cells) + f" | {reading} |")
    lines += ["", "| case | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(runs)]
    for i, case in enumerate(runs[0]["cases"]):
        cells = []
        for r in runs:
            c = r["cases"][i]
            why = c["malicious"] or ""
            cells.append(f"{c['level']}{' FP' if c['falsePositive'] else ''}: {c['reading']}" + (f" [{why}]" if why and c["reading"] != "not applicable: not drivable through a stdio proxy" else ""))
        lines.append(f"| {case['id']} | " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    lines += ["", "benign items flagged:", ""]
    for r in runs:
        kinds: dict[str, int] = {}
        for fp in r["benignFalsePositives"]:
            kinds[fp["kind"] or "other"] = kinds.get(fp["kind"] or "other", 0) + 1
        lines.append(f"- {r['revision']}, approver {r['approver']}: {r['benign']['falsePositives']} of {r['benign']['items']} " + (f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, type=Path, help="the portcullis binary")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--revision", action="append", choices=sorted(portcullis_adapter.REVISIONS), help="default: both")
    ap.add_argument("--approver", action="append", choices=portcullis_adapter.APPROVERS, help="default: both")
    ap.add_argument("--limit", type=int, help="score only the first N cases of each corpus (smoke test)")
    ap.add_argument("--only", action="append", metavar="PREFIX", help="score only the cases whose id starts so (repeatable)")
    ap.add_argument("--jobs", type=int, default=2, help="verdicts computed at once")
    ap.add_argument("--summarize-only", action="store_true", help="rewrite summary.json and table.md from the documents under --out")
    a = ap.parse_args()
    binary = a.bin.resolve()
    if not binary.is_file():
        print(f"defense-bench: {binary} does not exist", file=sys.stderr)
        return 1
    runs = []
    if a.summarize_only:
        runs = recorded_runs(a.out, a.limit, a.only)
    for approver in [] if a.summarize_only else a.approver or list(portcullis_adapter.APPROVERS):
        for revision in a.revision or list(portcullis_adapter.REVISIONS):
            print(f"defense-bench: scoring at {revision}, approver {approver}", file=sys.stderr)
            run = asyncio.run(score_one(binary, revision, approver, a.limit, a.only, a.jobs, a.out))
            print(f"defense-bench:   dev {run['dev']['summary']['overall']}; benign {run['benign']['summary']['falsePositives']} of {run['benign']['summary']['items']} flagged; {run['seconds']} s", file=sys.stderr)
            runs.append(run)
    summary = summarize(runs, binary)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf8")
    (a.out / "table.md").write_text(markdown(summary), "utf8")
    print(f"defense-bench: wrote {a.out / 'summary.json'} and {a.out / 'table.md'}", file=sys.stderr)
    failures = [(run["revision"], run["approver"], f) for run in summary["runs"] for f in run["harnessFailures"]]
    for revision, approver, failure in failures:
        print(f"defense-bench: {revision}, approver {approver}: {failure['id']} ({failure['arm']}) did not complete: {failure['signal']}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
