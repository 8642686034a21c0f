"""Summary figures of the fault-injection suite, computed from the results its tests wrote.

    .venv/bin/python -m pytest tests/faults          # runs the suite, appends JSON lines
    .venv/bin/python -m tests.faults.summary         # faults injected / survived, inputs, data lost
    .venv/bin/python -m tests.faults.summary --write-docs   # + regenerate the tables in docs/faults.md

Each pytest session writes its own ``.pytest_cache/fmrepro-faults/results-<time>-<pid>.jsonl``
(``$FMREPRO_FAULTS_RESULTS`` overrides it); the summary reads the newest. Each line is one
JSON object: ``kind`` = ``fault`` (``injected``: faults
injected, ``survived``: how many the pipeline survived, ``data_lost``: results lost or left
truncated), ``input`` (one bad-input case: ``ok``, ``exit``, ``message``) or ``security``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / ".pytest_cache" / "fmrepro-faults"  # git-ignored


def session_results() -> Path:
    """The results file of this pytest session: ``$FMREPRO_FAULTS_RESULTS``, else a new file per
    session (several people may run the suite at once in one checkout)."""
    if not os.environ.get("FMREPRO_FAULTS_RESULTS"):
        name = f"results-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"
        os.environ["FMREPRO_FAULTS_RESULTS"] = str(RESULTS_DIR / name)
    return Path(os.environ["FMREPRO_FAULTS_RESULTS"])


def latest_results() -> Path | None:
    """``$FMREPRO_FAULTS_RESULTS`` if set, else the newest session file."""
    if os.environ.get("FMREPRO_FAULTS_RESULTS"):
        return Path(os.environ["FMREPRO_FAULTS_RESULTS"])
    files = sorted(RESULTS_DIR.glob("results-*.jsonl"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None
DOC = REPO / "docs" / "faults.md"
BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"


def load_results(path: Path) -> list[dict]:
    """The result lines (the last line per (kind, name) wins, so a rerun replaces a case)."""
    latest: dict[tuple[str, str], dict] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[(rec["kind"], rec["name"])] = rec
    return list(latest.values())


def figures(results: list[dict]) -> dict[str, int]:
    faults = [r for r in results if r["kind"] == "fault"]
    inputs = [r for r in results if r["kind"] == "input"]
    security = [r for r in results if r["kind"] == "security"]
    return {
        "fault scenarios": len(faults),
        "faults injected": sum(int(r.get("injected", 0)) for r in faults),
        "faults survived": sum(int(r.get("survived", 0)) for r in faults),
        "data lost": sum(int(r.get("data_lost", 0)) for r in faults),
        "bad inputs tried": len(inputs),
        "bad inputs refused cleanly": sum(bool(r.get("ok")) for r in inputs),
        "security checks": len(security),
        "security checks passed": sum(bool(r.get("ok")) for r in security),
    }


def format_summary(results: list[dict]) -> str:
    figs = figures(results)
    width = max(len(k) for k in figs)
    lines = [f"{k:<{width}}  {v}" for k, v in figs.items()]
    bad = [r for r in results
           if r["kind"] == "fault" and int(r.get("survived", 0)) < int(r.get("injected", 0))]
    bad += [r for r in results if r["kind"] in ("input", "security") and not r.get("ok")]
    bad += [r for r in results if r["kind"] == "fault" and int(r.get("data_lost", 0))]
    for r in bad:
        lines.append(f"NOT SURVIVED: {r['kind']} {r['name']}: {r.get('failed') or r.get('detail', '')}")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def tables(results: list[dict]) -> dict[str, str]:
    """Markdown tables for docs/faults.md, keyed by the name of their generated block."""
    faults = sorted((r for r in results if r["kind"] == "fault"), key=lambda r: r["name"])
    inputs = sorted((r for r in results if r["kind"] == "input"), key=lambda r: (r["group"], r["name"]))
    security = sorted((r for r in results if r["kind"] == "security"), key=lambda r: r["name"])
    out = {"summary": "```\n" + format_summary(results) + "\n```"}
    rows = ["| scenario | injected | survived | data lost | what was checked |", "|---|---|---|---|---|"]
    rows += [f"| `{r['name']}` | {r.get('injected', 0)} | {r.get('survived', 0)} | {r.get('data_lost', 0)} | "
             f"{_md_escape(r.get('detail', ''))} |" for r in faults]
    out["faults"] = "\n".join(rows)
    rows = ["| case | bad input | command (cwd = workspace) | exit | error line | ok |",
            "|---|---|---|---|---|---|"]
    rows += [f"| `{r['name']}` | {_md_escape(r['what'])} | `{_md_escape(r['command'])}` | {r['exit']} | "
             f"`{_md_escape(r['message'])}` | {'yes' if r['ok'] else 'NO: ' + ', '.join(r['failed'])} |"
             for r in inputs]
    out["inputs"] = "\n".join(rows)
    rows = ["| check | result | detail |", "|---|---|---|"]
    rows += [f"| `{r['name']}` | {'pass' if r.get('ok') else 'FAIL'} | {_md_escape(r.get('detail', ''))} |"
             for r in security]
    out["security"] = "\n".join(rows)
    return out


def write_docs(results: list[dict], doc: Path = DOC) -> None:
    """Replace each generated block of ``doc`` with the table computed from ``results``."""
    text = doc.read_text(encoding="utf-8")
    for name, body in tables(results).items():
        begin, end = BEGIN.format(name), END.format(name)
        if begin not in text or end not in text:
            raise SystemExit(f"error: {doc}: no generated block {begin!r} ... {end!r}")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.summary",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=None,
                        help=f"results file (default: the newest {RESULTS_DIR.name}/results-*.jsonl)")
    parser.add_argument("--write-docs", action="store_true", help=f"regenerate the tables in {DOC.name}")
    args = parser.parse_args(argv)
    args.results = args.results or latest_results()
    if args.results is None or not args.results.is_file():
        print(f"error: {args.results or RESULTS_DIR}: no results; run `.venv/bin/python -m pytest "
              f"tests/faults` first", file=sys.stderr)
        return 2
    print(f"results: {args.results}")
    results = load_results(args.results)
    print(format_summary(results))
    if args.write_docs:
        write_docs(results)
        print(f"wrote {DOC}")
    figs = figures(results)
    ok = (figs["data lost"] == 0 and figs["faults survived"] == figs["faults injected"]
          and figs["bad inputs refused cleanly"] == figs["bad inputs tried"]
          and figs["security checks passed"] == figs["security checks"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
