"""The documentation site's Benchmarks page, written from `benchmarks/results/` (never by hand).

`python benchmarks/docs_page.py` prints the page; the site's build (`docs/hooks.py`) calls
`page()`. Every result file becomes one section whose first lines say the command that wrote it,
the commit that last changed the file, the machine and the date; its numbers follow as tables,
rendered from the JSON as it is:

- a mapping of numbers becomes a two-column table;
- a mapping of such mappings becomes one table (rows: the outer keys);
- a list of records becomes a table, one row per record (up to 12), or else of each numeric
  field's median over the list (one record per seed, say), with the list's length;
- long lists of numbers (curves, per-round timings) are shown as `median (n values)`;
- a section that has a `summary` shows the summary and the file's top-level numbers only.

Markdown tables that a benchmark script writes itself (`external.md`, `multi_objective.md`) are
included as they are. Interpretation (why a target was missed) lives in the hand-written
explanation pages, which link here.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MAX_ROWS = 40
META = ("command", "machine", "date", "load_average", "load_at_start", "threads")

# file (relative to results/) -> (title, the command that writes it when the file does not record one)
FILES: dict[str, tuple[str, str]] = {
    "startup.json": ("Time to the first trial", "python benchmarks/startup.py"),
    "scale.json": ("Driver work per trial, large studies", "python benchmarks/scale.py --sizes 1000 5000"),
    "issue32/bayesian_ask_before.json": ("Bayesian ask time, before (issue 32)", "python benchmarks/bayesian_ask.py"),
    "issue32/bayesian_ask_after.json": ("Bayesian ask time, after (issue 32)", "python benchmarks/bayesian_ask.py"),
    "population.json": ("Populations: many trials of one architecture at once", "python benchmarks/population.py"),
    "population_realistic_before.json": ("Populations on a realistic space, before",
                                          "python benchmarks/population.py --realistic"),
    "population_realistic_after.json": ("Populations on a realistic space, after",
                                         "python benchmarks/population.py --realistic"),
    "user_code.json": ("Your own code: overhead of `Function` and `Objective`",
                        "python benchmarks/user_code.py --rounds 31"),
    "char_lm/char_lm.json": ("Character LM: multi-fidelity at a third of the epochs",
                              "python benchmarks/char_lm.py run"),
    "external/external.json": ("External tables (HPOBench, NAS-Bench-201)",
                                "python benchmarks/external.py run --budget 100 --seeds 5"),
    "external/versus-bayesian.json": ("External tables: Bayesian against Optuna's GPSampler",
                                       "python benchmarks/external.py versus --before OLD --optimizers bayesian"),
    "multi_objective/multi_objective.json": ("Several objectives on NAS-Bench-201",
                                              "python benchmarks/multi_objective.py run"),
    "multi_objective/cells.json": ("Several objectives: MNIST-1D cells, trained",
                                    "python benchmarks/multi_objective.py cells --seeds 5"),
    "search_quality.json": ("Search quality at equal trials",
                             "python benchmarks/search_quality.py --seeds 5 --trials 20"),
    "freeze_thaw.json": ("Multi-fidelity search at equal epochs",
                          "python benchmarks/freeze_thaw.py --seeds 5 --epochs 600"),
    "replay.json": ("Replay leaderboard", "python benchmarks/replay.py run --seeds 50"),
    "curve_pfn.json": ("The learning-curve PFN: calibration, decision cost and the value-scale A/B",
                       "python benchmarks/curve_pfn.py calibration; python benchmarks/curve_pfn.py cost; "
                       "python benchmarks/curve_pfn.py scale --seeds 20"),
    "replay_overhead.json": ("Replay overhead", "python benchmarks/replay.py overhead"),
    "nas.json": ("Architecture search on MNIST-1D", "python benchmarks/nas.py --seeds 5 --trials 40 --epochs 4"),
    "darts.json": ("DARTS on the same cell space", "python benchmarks/darts.py --seeds 5 --jobs 2 --reference"),
    "stn.json": ("Self-tuning networks", "python benchmarks/stn.py --seeds 3 --jobs 2"),
    "ray_executor.json": ("Ray executor", "python benchmarks/ray_executor.py --trials 20 --epochs 5 --workers 2"),
}
TABLES_WRITTEN = {"external/external.json": "external/external.md",
                  "multi_objective/multi_objective.json": "multi_objective/multi_objective.md"}


def _demote(markdown: str) -> str:
    """A script's own Markdown with its headings two levels down, so they nest under the file's section."""
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
        if len(x) <= 3:
            return "[" + ", ".join(_fmt(v) for v in x) + "]"
        return f"{_fmt(statistics.median(x))} (median of {len(x)})"
    text = str(x).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _scalar(x: Any) -> bool:
    return not isinstance(x, dict | list) or (
        isinstance(x, list) and all(isinstance(v, int | float | str | bool) or v is None for v in x))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    more = len(rows) - MAX_ROWS
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows[:MAX_ROWS]]
    if more > 0:
        out.append(f"| ... {more} more rows in the file | " + " | " * (len(header) - 1))
    return [*out, ""]


def _records(items: list[dict[str, Any]]) -> list[str]:
    """A list of records: one row each when they are few, else each numeric field's median over the list."""
    if len(items) <= 12:
        columns = list(dict.fromkeys(k for r in items for k, v in r.items() if _scalar(v)))[:12]
        return _table(columns, [[_fmt(r.get(c, "")) for c in columns] for r in items]) if columns else []
    fields = [k for k, v in items[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    rows = []
    for k in fields:
        values = [r[k] for r in items if isinstance(r.get(k), int | float)]
        rows.append([k, _fmt(statistics.median(values)), str(len(values))])
    return _table(["field", "median", "n"], rows) if rows else []


def _render(data: Any, title: str, depth: int) -> list[str]:
    heading = "#" * min(depth + 3, 6) + " " + title if title else ""
    if isinstance(data, list):
        if data and all(isinstance(r, dict) for r in data):
            body = _records(data)
            return [heading, "", *body] if body and heading else body
        return [heading, "", _fmt(data), ""] if heading else [_fmt(data), ""]
    if not isinstance(data, dict):
        return [heading, "", _fmt(data), ""] if heading else [_fmt(data), ""]
    out: list[str] = [heading, ""] if heading else []
    scalars = {k: v for k, v in data.items() if _scalar(v) and k not in META}
    if scalars:
        out += _table(["", "value"], [[str(k), _fmt(v)] for k, v in scalars.items()])
    nested = {k: v for k, v in data.items() if not _scalar(v) and k not in META}
    matrix = {k: v for k, v in nested.items() if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())}
    if len(matrix) >= 2:
        columns = list(dict.fromkeys(c for v in matrix.values() for c in v))
        out += _table(["", *columns], [[str(k), *(_fmt(v.get(c, "")) for c in columns)] for k, v in matrix.items()])
        nested = {k: v for k, v in nested.items() if k not in matrix}
    if depth >= 3:
        if nested:
            out += [f"*Deeper entries ({', '.join(map(str, list(nested)[:6]))}) are in the file.*", ""]
        return out
    for k, v in nested.items():
        out += _render(v, str(k), depth + 1)
    return out


def section(relative: str, title: str, command: str) -> str:
    """One result file's section: provenance first, then its numbers.

    Args:
        relative: The file, relative to `benchmarks/results/`.
        title: The section's heading.
        command: The command that writes the file, used when the file does not record its own.

    Returns:
        Markdown.
    """
    path = RESULTS / relative
    data = json.loads(path.read_text())
    meta = data if isinstance(data, dict) else {}
    commit = _git("log", "-1", "--format=%h (%cs)", "--", str(path.relative_to(HERE.parent))) or "not committed"
    machine = meta.get("machine", "not recorded in the file (the project's 2-core x86_64 machine)")
    if isinstance(machine, dict):
        machine = ", ".join(f"{k} {_fmt(v)}" for k, v in machine.items())
    date = meta.get("date") or commit.rpartition("(")[2].rstrip(")") or "unknown"
    lines = [f"## {title}", "", f"- **Command:** `{meta.get('command', command)}`",
             f"- **Commit:** {commit} (the last commit that changed `benchmarks/results/{relative}`)",
             f"- **Machine:** {machine}", f"- **Date:** {date}", ""]
    if relative in TABLES_WRITTEN:
        lines += [f"The table the script wrote (`benchmarks/results/{TABLES_WRITTEN[relative]}`):", "",
                  _demote((RESULTS / TABLES_WRITTEN[relative]).read_text().strip()), ""]
        return "\n".join(lines)
    shown = {k: v for k, v in meta.items() if _scalar(v) or k == "summary"} if "summary" in meta else data
    lines += _render(shown, "", 0)
    return "\n".join(lines)


def page() -> str:
    """The whole Benchmarks page."""
    head = ["Every table below is rendered from a file in `benchmarks/results/` when the site is built "
            "(`benchmarks/docs_page.py`): nothing is copied by hand. What the numbers mean, and why a "
            "target was missed, is in [What the measurements say](explanations/measurements.md).", ""]
    missing = [r for r in FILES if not (RESULTS / r).exists()]
    body = [section(r, *FILES[r]) for r in FILES if r not in missing]
    if missing:
        head += [f"*Not recorded in this checkout: {', '.join(missing)}.*", ""]
    return "\n".join(head + body)


if __name__ == "__main__":
    print(page())
