"""Cold start: how long a fresh process takes to answer `--help`, to import tunelab, and to finish a first trial.

Every measurement runs in a fresh subprocess, `--rounds` times (default 5) in rotating order, and
the median is reported:

- `tunelab_help` / `optuna_help`: the console scripts `tunelab --help` and `optuna --help` (from
  the same virtual environment); target: tunelab at most 1.5x optuna;
- `import_studies`: `python -c "import tunelab.studies"`; `import_torch`: `python -c "import
  torch"` (the floor of anything that trains);
- `tunelab_list` / `tunelab_show`: the console scripts `tunelab list --storage URL` and `tunelab
  show --storage URL --study startup` on a small study (MNIST-1D with 256 training examples, 2
  trials of 1 epoch) that the script makes once, untimed, in its temporary folder. Neither needs
  torch; an untimed run of each in a child that reports its `sys.modules` records which of
  torch, gpytorch and botorch it imported (`heavy_imports`; expected: none);
- `first_trial_cold` / `first_trial_warm`: process start to first trial, a script that imports
  tunelab, builds the built-in MNIST-1D workload (`trainers.workloads.mnist1d()`), creates a
  study (an SQLite file in a temporary folder) of `spaces.optimizers(["adamw"]) | spaces.mlp()`
  with `trainers.Trainer(..., epochs=1)` and the default strategy, and runs
  `study.optimize(trials=1)`. The time is from just before the parent starts the process to
  when `optimize` returns in it (the first trial's one epoch is then trained and recorded in
  the database; interpreter start-up included). `cold` gives every run an empty data cache
  (`TUNELAB_CACHE_DIR`, so MNIST-1D is generated), `warm` one filled by an untimed run before.
  The script also reports its phases (imports, data, `studies.create`, the trial) and whether
  `torch._dynamo` was imported by then. Target: at most 3 s.

Children run with `OMP_NUM_THREADS=--threads` (default 1). `--only NAME ...` runs only the named
measurements. Writes `--out` (default benchmarks/results/startup.json).

    python benchmarks/startup.py [--rounds 5] [--cache both|cold|warm] [--threads 1] [--only NAME ...]
                                 [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HELP_TARGET = 1.5  # tunelab --help / optuna --help
FIRST_TRIAL_TARGET_S = 3.0
HEAVY = ("torch", "gpytorch", "botorch")  # what `tunelab list` and `show` must not import
STUDY = "startup"

SMALL_STUDY = textwrap.dedent("""
    import sys
    from tunelab import spaces, studies, trainers
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=1), epochs=1, seed=0)
    space = spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=8)
    study = studies.create(sys.argv[2], sys.argv[1], space=space, trainer=trainer)
    study.optimize(trials=2, progress=False)
    assert len(study.trials) == 2, study.trials
""")

# one CLI command in a child that reports, as its last line, which of HEAVY it imported
HEAVY_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from tunelab.studies.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(sys.argv[2:])
    print(json.dumps({"code": code, "heavy": sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)}))
""")

FIRST_TRIAL = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from tunelab import spaces, studies, trainers
    t1 = time.perf_counter()
    workload = trainers.workloads.mnist1d()
    t2 = time.perf_counter()
    trainer = trainers.Trainer(workload, epochs=1, seed=0)
    space = spaces.optimizers(["adamw"]) | spaces.mlp()
    study = studies.create("startup", sys.argv[1], space=space, trainer=trainer)
    t3 = time.perf_counter()
    dynamo_at_create = "torch._dynamo" in sys.modules
    study.optimize(trials=1, progress=False)
    end = time.time()
    t4 = time.perf_counter()
    assert len(study.trials) == 1 and study.trials[0].epochs == 1, study.trials
    print(json.dumps({"end": end, "imports": t1 - t0, "data": t2 - t1, "create": t3 - t2, "trial": t4 - t3,
                      "dynamo_at_create": dynamo_at_create, "dynamo_at_trial": "torch._dynamo" in sys.modules}))
""")


def _script(name: str) -> str:
    """The console script `name` of this interpreter's environment (else the one on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"startup.py: no `{name}` console script next to {sys.executable} or on PATH")
    return found


def _env(threads: int, cache: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if cache is not None:
        env["TUNELAB_CACHE_DIR"] = cache
    return env


def _timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from start to exit of `cmd` (its output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"startup.py: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def _first_trial(env: dict[str, str], work: Path) -> dict[str, Any]:
    """One first-trial run in a fresh process and folder: total seconds from process start, and its phases."""
    folder = Path(tempfile.mkdtemp(dir=work))
    url = f"sqlite:///{folder / 'startup.db'}"
    start = time.time()
    done = subprocess.run([sys.executable, "-c", FIRST_TRIAL, url], env=env, cwd=folder, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"startup.py: the first-trial script failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return {"total": out.pop("end") - start, **out}


def _small_study(env: dict[str, str], work: Path) -> str:
    """The URL of a small finished study (2 trials of 1 epoch on MNIST-1D), made once, untimed."""
    url = f"sqlite:///{work / 'small.db'}"
    done = subprocess.run([sys.executable, "-c", SMALL_STUDY, url, STUDY], env=env, cwd=work, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"startup.py: making the small study failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return url


def _heavy_imports(argv: list[str], env: dict[str, str], cwd: str) -> list[str]:
    """Which of `HEAVY` the CLI command `argv` imports (one untimed run in a fresh process)."""
    done = subprocess.run([sys.executable, "-c", HEAVY_PROBE, json.dumps(HEAVY), *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    out = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    if out is None or out["code"] != 0:
        raise SystemExit(f"startup.py: tunelab {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return out["heavy"]


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per measurement (the median is kept)")
    ap.add_argument("--cache", choices=("both", "cold", "warm"), default="both",
                    help="first trial with an empty data cache, a filled one, or both (default)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every child (default 1)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help="run only these measurements (tunelab_help, optuna_help, import_studies, import_torch, "
                    "tunelab_list, tunelab_show, first_trial_cold, first_trial_warm)")
    ap.add_argument("--out", default="benchmarks/results/startup.json")
    args = ap.parse_args()
    only = None if args.only is None else set(args.only)

    py, tunelab, optuna = sys.executable, _script("tunelab"), _script("optuna")
    with tempfile.TemporaryDirectory(prefix="tunelab-startup-") as tmp:
        work = Path(tmp)
        warm_cache = work / "warm-cache"
        plain = _env(args.threads, str(work / "unused-cache"))
        jobs: dict[str, Any] = {
            "tunelab_help": lambda: _timed([tunelab, "--help"], plain, tmp),
            "optuna_help": lambda: _timed([optuna, "--help"], plain, tmp),
            "import_studies": lambda: _timed([py, "-c", "import tunelab.studies"], plain, tmp),
            "import_torch": lambda: _timed([py, "-c", "import torch"], plain, tmp),
        }
        heavy: dict[str, list[str]] = {}
        if only is None or only & {"tunelab_list", "tunelab_show"}:
            url = _small_study(_env(args.threads, str(warm_cache)), work)
            commands = {"tunelab_list": ["list", "--storage", url],
                        "tunelab_show": ["show", "--storage", url, "--study", STUDY]}
            for name, argv in commands.items():
                heavy[name] = _heavy_imports(argv, plain, tmp)
                jobs[name] = lambda argv=argv: _timed([tunelab, *argv], plain, tmp)
        if args.cache in ("both", "cold") and (only is None or "first_trial_cold" in only):
            jobs["first_trial_cold"] = lambda: _first_trial(
                _env(args.threads, tempfile.mkdtemp(dir=work, prefix="cold-cache-")), work)
        if args.cache in ("both", "warm") and (only is None or "first_trial_warm" in only):
            _first_trial(_env(args.threads, str(warm_cache)), work)  # untimed: fills the cache
            jobs["first_trial_warm"] = lambda: _first_trial(_env(args.threads, str(warm_cache)), work)
        jobs = {name: job for name, job in jobs.items() if only is None or name in only}
        if not jobs:
            raise SystemExit(f"startup.py: --only {' '.join(args.only)} names no measurement")
        runs: dict[str, list[Any]] = {name: [] for name in jobs}
        names = list(jobs)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotating order
                runs[name].append(jobs[name]())
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    results: dict[str, Any] = {}
    for name, values in runs.items():
        if name.startswith("first_trial"):
            phases = {k: _summary([v[k] for v in values]) for k in ("total", "imports", "data", "create", "trial")}
            results[name] = {**phases, "dynamo_at_create": [v["dynamo_at_create"] for v in values],
                             "dynamo_at_trial": [v["dynamo_at_trial"] for v in values]}
        else:
            results[name] = _summary(values)
    med = {name: r.get("total", r)["median"] for name, r in results.items()}
    ratios: dict[str, float] = {}
    if "tunelab_help" in med and "optuna_help" in med:
        ratios["tunelab_help/optuna_help"] = med["tunelab_help"] / med["optuna_help"]
    for name in ("first_trial_cold", "first_trial_warm"):
        if name in med and "import_torch" in med:
            ratios[f"{name}/import_torch"] = med[name] / med["import_torch"]
    report = {
        "benchmark": "startup",
        "command": " ".join(["python", "benchmarks/startup.py", *sys.argv[1:]]),
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()), "python": platform.python_version(),
                    "platform": platform.platform()},
        "targets": {"tunelab_help/optuna_help": HELP_TARGET, "first_trial_s": FIRST_TRIAL_TARGET_S},
        "median_seconds": med,
        "ratios": ratios,
        "heavy_imports": heavy,
        "results": results,
    }
    for name, seconds in med.items():
        line = f"{name:18s} {seconds:6.2f} s (median of {args.rounds})"
        if name.startswith("first_trial"):
            r = results[name]
            line += (f"  imports {r['imports']['median']:.2f}, data {r['data']['median']:.2f}, create "
                     f"{r['create']['median']:.2f}, trial {r['trial']['median']:.2f}; torch._dynamo imported by "
                     f"create: {sum(r['dynamo_at_create'])}/{args.rounds}, by the trial's end: "
                     f"{sum(r['dynamo_at_trial'])}/{args.rounds}")
        if name in heavy:
            line += f"  imports {', '.join(heavy[name]) or 'none of ' + ', '.join(HEAVY)}"
        print(line)
    for name, ratio in ratios.items():
        print(f"{name:28s} {ratio:5.2f}x")
    print(f"targets: tunelab --help <= {HELP_TARGET}x optuna --help; first trial <= {FIRST_TRIAL_TARGET_S} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
