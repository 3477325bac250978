"""Runs every reading and training entry point on one (corrupted) study database: the child of test_hostile_db.

Usage: python hostile_runner.py CONFIG.json

The config names the storage URL, the report folder, the address-space limit, the time each
command may take and the commands to run. The limits are set before anything heavy is imported.
Each command runs in turn in this one process (importing torch costs seconds):
`tunelab list`, `show`, `report --out ...`, `studies.load(name, url, read_only=True).trials`,
`tunelab compare --report-only` (the study is no comparison: a typed error), then `tunelab resume`.
For each the runner records the exit code `tunelab.studies.cli.main` returned, or the type, message and
traceback of an exception that escaped it (a raw one is what the test refuses), with what the
command wrote on stdout and stderr, and the error types `tunelab list` showed for studies it
could not read that are not tunelab's own.

Progress goes to the real stdout as `@@hostile begin <command>` / `@@hostile end <command>`
lines, so the parent can name the command that hung; a command that runs past its time is ended
by `faulthandler.dump_traceback_later(exit=True)`, which dumps every thread's stack to stderr. The
summary is one JSON object on the last line of stdout, prefixed `@@hostile summary `.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import re
import resource
import sys
import time
import traceback

TAIL = 2000  # characters kept of the head and of the tail of each command's stdout and stderr


def _limit(config: dict) -> None:
    address_space = int(config["address_space"])
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    file_size = int(config.get("file_size", 1 << 30))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _say(line: str) -> None:
    sys.__stdout__.write(f"@@hostile {line}\n")
    sys.__stdout__.flush()


def _run(name: str, fn, seconds: float) -> dict:
    out, err = io.StringIO(), io.StringIO()
    result: dict = {"command": name}
    _say(f"begin {name}")
    t0 = time.monotonic()
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result["rc"] = fn()
    except BaseException as exc:  # the point: record whatever escapes
        result["exception"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        result["message"] = str(exc)[:1000]
        result["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]
        result["tunelab_error"] = _is_tunelab_error(exc)
    finally:
        faulthandler.cancel_dump_traceback_later()
    result["seconds"] = round(time.monotonic() - t0, 2)
    stdout, stderr = out.getvalue(), err.getvalue()
    result["typed_error"] = "tunelab: error:" in stderr  # what main prints for a TunelabError
    result["traceback_printed"] = "Traceback (most recent call last)" in stderr
    result["output_chars"] = len(stdout) + len(stderr)
    result["stdout"] = _clip(stdout)
    result["stderr"] = _clip(stderr)
    _say(f"end {name}")
    return result


def _tunelab_error_names() -> set[str]:
    try:
        from tunelab.studies import TunelabError
    except BaseException:
        return set()
    names, todo = set(), [TunelabError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def _clip(text: str) -> str:
    """The head and tail of a command's output (a message that echoes a huge stored value stays readable)."""
    if len(text) <= 2 * TAIL:
        return text
    return f"{text[:TAIL]}\n[... {len(text) - 2 * TAIL} characters ...]\n{text[-TAIL:]}"


def _is_tunelab_error(exc: BaseException) -> bool:
    try:
        from tunelab.studies import TunelabError
    except BaseException:
        return False
    return isinstance(exc, TunelabError)


def _vm_peak() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmPeak:"))
    except (OSError, StopIteration, ValueError):
        return None


def main() -> int:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    _limit(config)
    faulthandler.enable(file=sys.__stderr__)
    os.environ.setdefault("MPLBACKEND", "Agg")
    url, seconds = config["url"], config["seconds"]
    results = []

    def cli(*argv: str):
        def call() -> int:
            from tunelab.studies.cli import main as tunelab

            return tunelab(list(argv))

        return call

    def load_trials() -> int:
        from tunelab import studies

        names = studies.study_names(url)
        name = names[0] if len(names) == 1 else config.get("study", "hostile")
        trials = studies.load(name, url, read_only=True).trials
        print(f"{len(trials)} trials")
        return 0

    commands = [
        ("import", lambda: __import__("tunelab.studies") and 0),
        ("list", cli("list", "--storage", url)),
        ("show", cli("show", "--storage", url)),
        ("report", cli("report", "--storage", url, "--out", config["report_out"])),
        ("load", load_trials),
        ("compare", cli("compare", "--storage", url, "--name", config.get("study", "hostile"), "--report-only",
                        "--out", config["report_out"] + "-compare", "--quiet")),
        ("resume", cli("resume", "--storage", url, *config["resume"], "--quiet")),
    ]
    for name, fn in commands:
        results.append(_run(name, fn, seconds.get(name, seconds["default"])))
    for r in results:  # `tunelab list` prints a study it cannot read with the error's type: which are not typed?
        if r["command"] == "list":
            shown = re.findall(r"\(cannot be read: ([A-Za-z_][A-Za-z0-9_]*):", r["stdout"])
            r["untyped_errors"] = sorted(set(shown) - _tunelab_error_names())
    summary = {
        "results": results,
        "imported": sorted(m for m in sys.modules if m.split(".")[0] in config.get("forbidden_modules", [])),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vm_peak_kib": _vm_peak(),
    }
    sys.__stdout__.flush()
    _say("summary " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
