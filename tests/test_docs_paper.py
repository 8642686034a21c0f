"""docs/paper.md covers the recorded departures, and nothing in the repository points outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/work/|PROTOCOL\.md|ENVIRONMENT\.md")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".md", ".yaml", ".yml", ".smk", ".rst", ".toml", ".sh", ".cfg", ".txt", ".csv"}
    files = [REPO / p for p in out.splitlines() if Path(p).suffix in suffixes or Path(p).name == "Snakefile"]
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def test_no_file_points_outside_the_repository():
    files = _tracked_text_files()
    assert len(files) > 50 and REPO / "params" / "paper.yaml" in files
    hits = [f"{f.relative_to(REPO)}:{i}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert hits == []


def test_paper_md_records_each_departure_with_a_source():
    text = (REPO / "docs" / "paper.md").read_text(encoding="utf-8")
    for heading in ("### Gradient clipping", "### CIFAR-10 training length", "### VE noise range for data in [-1, 1]",
                    "### Which path did the paper's \"Score Matching\" row use",
                    "### Diffusion end time eps and its effect on NLL",
                    "### The dequantization estimate is not a strict bound",
                    "### NFE depends on the evaluation batch"):
        assert heading in text, heading
    assert text.lower().count("our choice") >= 6 and "Table 3" in text and "score_sde" in text
    assert "docs/paper.md" in (REPO / "README.md").read_text(encoding="utf-8")
