"""How tunelab's own costs grow with a study, each beside an anchor measured in the same run.

Sections (all by default; `--only` picks some), written to `results/scale.json`:

- `grow`: a Random study on the replayed `digits_mlp` table (`trainers.Replay`, the simulated
  executor: training costs nothing, so what is measured is tunelab's own work) grows to each size
  in `--sizes`. At each size: the driver's time per trial over the last `--window` trials, split
  into database statements, the strategy's ask, the replayed training and the rest (the
  driver's bookkeeping); `optimize(trials=n + 1)` on the same handle and on a freshly loaded one
  (what `tunelab resume` does); `study.trials` on a fresh handle against
  `optuna.load_study(...).trials` on the same database; `study.best`, `dataframe()` and
  `history()` on fresh handles; `tunelab show` in a subprocess against a plain Optuna read in a
  subprocess; the database's size per trial against an Optuna database holding the same
  trials (parameters, curve, value); `Recorder.create_trial`; `Evolution` and
  `OptunaSampler("tpe")` asks on the study's history against a raw Optuna TPE ask on an
  in-memory study of the same trials.
- `asks`: `Bayesian` asks on the 13-parameter conditional space at 20 and 200 finished trials
  (the first fit of a study, then one warm-started from it) against Optuna's `GPSampler` on the
  same trials.
- `pool`: the fixed cost of a process pool: two 2-trial `optimize` calls with `n_workers=2`
  (the first spawns the workers, the second reuses them) against the same trials in process.
- `overhead`: the non-training share of a 30-trial MNIST-1D MLP study at 5 epochs and of a
  10-trial one at 60 (`driver_overhead.py`), against plain Optuna ask/tell around the same
  `Trainer.fit` on the same WAL SQLite storage.
- `imports`: the first model-size measurement and the first optimizer step of a fresh process,
  and whether each imports `torch._dynamo`.

    python benchmarks/scale.py --sizes 1000 5000          # -> results/scale.json

Numbers are ratios within one run on one machine; the README gives them with the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
PY = sys.executable


class Clock:
    """Seconds spent inside wrapped functions, by label; a wrapped call inside another counts in its own label only."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open call: time of the wrapped calls inside it
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                self.spent[label] += elapsed - self._inner.pop()
                if self._inner:
                    self._inner[-1] += elapsed

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _subprocess_s(code: str) -> float:
    """Wall seconds of `python -c code` (interpreter start and imports included)."""
    t = time.perf_counter()
    subprocess.run([PY, "-c", code], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def _optuna_copy(study: Any, path: Path) -> Any:
    """An Optuna database holding `study`'s trials as plain Optuna stores them: params, curve, value."""
    import optuna

    copy = optuna.create_study(storage=f"sqlite:///{path}", direction=study.direction, study_name="copy")
    frozen = []
    for t in study.trials:
        state = optuna.trial.TrialState.COMPLETE if t.value is not None else optuna.trial.TrialState.FAIL
        frozen.append(optuna.trial.create_trial(
            params=t.config, distributions=study.space.distributions(t.config), state=state,
            value=t.value if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={i + 1: v for i, v in enumerate(t.curve)}))
    copy.add_trials(frozen)
    return copy


def _db_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    return path.stat().st_size


def _tpe_step(tpe: Any, history: Any) -> float:
    """Seconds of `tpe`'s ask once the trial it proposed before has finished, as in a running study."""
    from tunelab import search

    smaller = search.History(history.space, history.trials[:-1], history.max_epochs, history.input_shape,
                             history.n_outputs)
    asked = tpe.ask(smaller)  # builds its in-memory study
    last = history.trials[-1]
    done = search.TrialView(last.number, "complete", asked.config, value=last.value, curve=last.curve,
                            epochs=last.epochs, attrs=dict(asked.attrs))
    after = search.History(history.space, (*history.trials[:-1], done), history.max_epochs,
                           history.input_shape, history.n_outputs)
    return _timed(lambda: tpe.ask(after))[0]


def _history_asks(study: Any) -> dict[str, float]:
    """Evolution and OptunaSampler("tpe") asks on the study's history; a raw Optuna TPE ask on the same trials."""
    import optuna

    from tunelab import search

    history = study.history()
    out: dict[str, float] = {}
    evolution = search.Evolution(seed=0)
    evolution.ask(history)
    out["evolution_ask_ms"] = 1000 * _timed(lambda: evolution.ask(history))[0]
    tpe = search.OptunaSampler("tpe", seed=0)
    out["tpe_ask_ms"] = 1000 * _tpe_step(tpe, history)
    raw = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="minimize")
    raw.add_trials([optuna.trial.create_trial(params=t.config, distributions=history.space.distributions(t.config),
                                              value=t.value)
                    for t in history.trials if t.value is not None])
    names = history.space.distributions(history.trials[0].config)

    def raw_ask() -> None:
        trial = raw.ask()
        for name, dist in names.items():
            trial._suggest(name, dist)

    out["raw_tpe_ask_ms"] = 1000 * _timed(raw_ask)[0]
    out["tpe_ratio"] = out["tpe_ask_ms"] / out["raw_tpe_ask_ms"]
    return out


def grow(sizes: list[int], window: int) -> list[dict[str, Any]]:
    import optuna

    from tunelab import search, studies, trainers
    from tunelab.trainers.replay import table_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    replay = trainers.Replay(HERE / "tables" / "digits_mlp.json.gz")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scale.db'}"
        study = studies.create("scale", url, space=table_space(replay), trainer=replay,
                               strategy=search.Random(seed=0))
        for n in sizes:
            row = _at_size(study, replay, n, window, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _at_size(study: Any, replay: Any, n: int, window: int, tmp: Path) -> dict[str, Any]:
    """Every `grow` measure of `study` grown to `n` trials (the last `window` of them timed)."""
    import optuna
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from tunelab import studies, trainers
    from tunelab.studies.driver.recorder import Recorder
    from tunelab.studies.storage.lock import StudyLock

    url, db = study.storage_url, tmp / "scale.db"
    start = max(0, n - window)
    if len(study.trials) < start:
        study.optimize(trials=start, executor="simulated", progress=False)
    clock = Clock()
    for name in ("execute", "flush", "commit", "close"):  # the ORM's work around its statements too
        clock.wrap(Session, name, "database")
    clock.wrap(Connection, "execute", "database")  # every statement, reads and writes
    clock.wrap(Connection, "exec_driver_sql", "database")
    clock.wrap(StudyLock, "acquire", "database")  # with its waits
    clock.wrap(type(study.strategy), "ask", "strategy")
    clock.wrap(trainers.Replay, "fit", "training")  # less the driver's per-epoch work inside it
    creates: list[float] = []
    clock.wrap(Recorder, "create_trial", "create_trial_python")  # its own work; its statements count as database
    original = Recorder.create_trial

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            creates.append(time.perf_counter() - t)

    Recorder.create_trial = create
    try:
        per_trial, _ = _timed(lambda: study.optimize(trials=n, executor="simulated", progress=False))
    finally:
        Recorder.create_trial = original
        clock.undo()
    k = max(1, n - start)
    parts = {f"{label}_ms": 1000 * s / k for label, s in clock.spent.items()}
    total_ms = 1000 * per_trial / k
    bookkeeping = total_ms - sum(parts.values())
    add_one, _ = _timed(lambda: study.optimize(trials=n + 1, executor="simulated", progress=False))
    add_fresh, _ = _timed(lambda: studies.load("scale", url, trainer=replay).optimize(
        trials=n + 2, executor="simulated", progress=False))
    ours, got = _timed(lambda: studies.load("scale", url, trainer=replay).trials)
    theirs, theirs_trials = _timed(lambda: optuna.load_study(study_name="scale", storage=url).trials)
    best_s, _ = _timed(lambda: studies.load("scale", url, trainer=replay).best)
    frame_s, _ = _timed(lambda: studies.load("scale", url, trainer=replay).dataframe())
    history_s, _ = _timed(lambda: studies.load("scale", url, trainer=replay).history())
    fresh = studies.load("scale", url, trainer=replay)
    first_read = len(fresh.trials)
    again_s, _ = _timed(lambda: fresh.trials)  # a handle that has read once reads what changed since
    show_s = _subprocess_s(f"from tunelab.studies.cli import main; main(['show', '--storage', {url!r}])")
    optuna_read_s = _subprocess_s(f"import optuna; optuna.load_study(study_name='scale', storage={url!r}).trials")
    with contextlib.suppress(FileNotFoundError):
        (tmp / "copy.db").unlink()
    _optuna_copy(studies.load("scale", url, read_only=True), tmp / "copy.db")
    ours_bytes, theirs_bytes = _db_bytes(db), _db_bytes(tmp / "copy.db")
    return {
        "trials": len(got), "optuna_trials": len(theirs_trials), "read_once": first_read,
        "driver_ms_per_trial": total_ms, "bookkeeping_ms_per_trial": bookkeeping, **parts,
        "optimize_add_one_s": add_one, "optimize_add_one_fresh_handle_s": add_fresh,
        "study_trials_s": ours, "optuna_trials_s": theirs, "trials_ratio": ours / theirs,
        "study_trials_again_s": again_s, "best_s": best_s, "dataframe_s": frame_s, "history_s": history_s,
        "show_s": show_s, "optuna_read_subprocess_s": optuna_read_s, "show_ratio": show_s / optuna_read_s,
        "bytes_per_trial": ours_bytes / len(got), "optuna_bytes_per_trial": theirs_bytes / len(got),
        "bytes_ratio": ours_bytes / theirs_bytes,
        "create_trial_ms": 1000 * float(np.median(creates)),
        **_history_asks(studies.load("scale", url, trainer=replay)),
    }


def _objective(space: Any) -> Any:
    """A smooth synthetic objective over `space` (numbers near 0.3 of their range, first categories), small noise."""
    from tunelab.search.encoding import MixedEncoding

    enc = MixedEncoding(space)
    cont = [i for i in range(enc.dim) if i not in enc.cat_dims]

    def value(config: Any, rng: Any) -> float:
        x = enc.encode(config)
        return float(np.sum((x[cont] - 0.3) ** 2) + 0.3 * sum(x[j] != 0 for j in enc.cat_dims)
                     + 0.05 * rng.normal())

    return value


def _conditional_history(n: int, seed: int = 0) -> Any:
    from driver_overhead import space

    from tunelab import search

    sp = space()
    objective = _objective(sp)
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        config = sp.sample(rng)
        value = objective(config, rng)
        trials.append(search.TrialView(i, "complete", config, value=value, curve=(value,), epochs=1))
    return search.History(sp, tuple(trials), max_epochs=1)


def _mll(history: Any, fit: dict[str, list[float]]) -> float:
    """Marginal log likelihood per point of the GP `Bayesian` fits to `history`, with hyperparameters `fit`."""
    import torch
    from botorch.models import MixedSingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from tunelab.search.encoding import MixedEncoding
    from tunelab.search.gp_fit import load_fit as _load

    enc = MixedEncoding(history.space)
    X = torch.as_tensor(np.stack([enc.encode(t.config) for t in history.trials]), dtype=torch.float64)
    y = -torch.as_tensor([t.value for t in history.trials], dtype=torch.float64).reshape(-1, 1)
    model = MixedSingleTaskGP(X, y, cat_dims=sorted(enc.cat_dims))
    if not _load(model, fit):
        raise ValueError("the stored fit does not match the model's hyperparameters")
    model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with torch.no_grad():
        return float(mll(model(*model.train_inputs), model.train_targets))


def asks(sizes: tuple[int, ...] = (20, 200)) -> dict[str, Any]:
    """Bayesian asks (a study's first fit, then a warm-started one) against Optuna's GPSampler on the same trials."""
    import optuna

    from tunelab import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search.Bayesian(seed=0).ask(_conditional_history(20))  # imports (BoTorch, GPyTorch) out of the timings
    out: dict[str, Any] = {}
    for n in sizes:
        history = _conditional_history(n + 1)
        before = search.History(history.space, history.trials[:-1], 1)
        bayes = search.Bayesian(seed=0)
        cold, first = _timed(lambda b=bayes, h=before: b.ask(h))
        value = _objective(history.space)(first.config, np.random.default_rng(n))  # the proposal, trained
        trials = (*history.trials[:-1], search.TrialView(n, "complete", first.config, value=value,
                                                         curve=(value,), epochs=1, attrs=dict(first.attrs)))
        after = search.History(history.space, trials, 1)
        warm, warm_request = _timed(lambda b=bayes, h=after: b.ask(h))
        cold_again = search.Bayesian(seed=0, refit_maxiter=None).ask(after)  # the same fit from scratch
        sampler = optuna.samplers.GPSampler(seed=0, warn_independent_sampling=False)
        gp = optuna.create_study(sampler=sampler, direction="minimize")
        gp.add_trials([optuna.trial.create_trial(params=t.config, distributions=history.space.distributions(t.config),
                                                 value=t.value) for t in trials])
        dists = history.space.distributions(trials[0].config)

        def gp_ask(study: Any = gp, dists: dict = dists) -> None:
            trial = study.ask()
            for name, dist in dists.items():
                trial._suggest(name, dist)

        gp_s, _ = _timed(gp_ask)
        out[str(n)] = {"bayesian_first_fit_s": cold, "bayesian_warm_s": warm, "optuna_gp_s": gp_s,
                       "warm_started": n >= bayes.warm_after,
                       "mll_per_point_warm": _mll(after, warm_request.attrs["gp_fit"]),
                       "mll_per_point_cold": _mll(after, cold_again.attrs["gp_fit"])}
        print(json.dumps({n: out[str(n)]}), flush=True)
    return out


def pool() -> dict[str, Any]:
    """Two 2-trial optimize calls with 2 workers (spawn, then reuse) against the same trials in process."""
    from tunelab import search, spaces, studies, trainers

    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)
    sp = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/p.db"
        local = studies.create("local", url, space=sp, trainer=trainer, strategy=search.Random(seed=0))
        local.optimize(trials=1, progress=False)  # imports and first-epoch costs out of the way
        out["in_process_2_trials_s"], _ = _timed(lambda: local.optimize(trials=3, progress=False))
        studies.close_workers()
        pooled = studies.create("pool", url, space=sp, trainer=trainer, strategy=search.Random(seed=0))
        out["pool_first_call_s"], _ = _timed(lambda: pooled.optimize(trials=2, n_workers=2, progress=False))
        out["pool_second_call_s"], _ = _timed(lambda: pooled.optimize(trials=4, n_workers=2, progress=False))
        out["close_workers_s"], _ = _timed(studies.close_workers)
    out["fixed_cost_first_s"] = out["pool_first_call_s"] - out["in_process_2_trials_s"] / 2
    out["fixed_cost_reused_s"] = out["pool_second_call_s"] - out["in_process_2_trials_s"] / 2
    print(json.dumps(out), flush=True)
    return out


def overhead() -> dict[str, Any]:
    """Non-training share at 5 and 60 epochs, and plain Optuna ask/tell around the same fits."""
    import optuna
    from driver_overhead import TimedTrainer, space
    from driver_overhead import overhead as study_overhead

    from tunelab import search, trainers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, Any] = {"tunelab_5_epochs": study_overhead(30, 5, False),
                           "tunelab_60_epochs": study_overhead(10, 60, False)}
    trainer = TimedTrainer(trainers.workloads.mnist1d(), epochs=5, seed=0)
    sp = space()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/o.db"
        from tunelab.studies.storage import open_storage

        storage = open_storage(url)  # the same WAL SQLite set-up
        study = optuna.create_study(storage=storage, study_name="plain", direction="maximize")
        TimedTrainer.fit_seconds = 0.0
        t0 = time.perf_counter()
        for _ in range(30):
            config = sp.sample(rng)
            trial = study.ask()
            for name, dist in sp.distributions(config).items():
                trial._suggest(name, dist)

            def report(epoch: Any, trial: Any = trial) -> None:
                trial.report(epoch.val_metric, epoch.epoch)

            result = trainer.fit(config, report=report)
            study.tell(trial, result.val_metric)
        wall = time.perf_counter() - t0
    out["optuna_ask_tell_5_epochs"] = {"trials": 30, "wall_s": wall, "fit_s": TimedTrainer.fit_seconds,
                                       "overhead": (wall - TimedTrainer.fit_seconds) / wall}
    del search
    print(json.dumps(out), flush=True)
    return out


def imports() -> dict[str, Any]:
    """First model-size measurement and first optimizer step of fresh processes, and whether they import dynamo."""
    size = ("import sys, time, spaces; t = time.perf_counter(); "
            "spaces.model_size(spaces.mlp().default(), (40,), 10); "
            "print(time.perf_counter() - t, 'torch._dynamo' in sys.modules)")
    step = ("import sys, time, torch; m = torch.nn.Linear(4, 2); o = torch.optim.AdamW(m.parameters()); "
            "m(torch.randn(3, 4)).sum().backward(); t = time.perf_counter(); o.step(); "
            "print(time.perf_counter() - t, 'torch._dynamo' in sys.modules)")
    out = {}
    for name, code in (("first_model_size", size), ("first_optimizer_step", step)):
        text = subprocess.run([PY, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout.split()
        out[name] = {"s": float(text[0]), "imports_dynamo": text[1] == "True"}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--only", nargs="+", choices=("grow", "asks", "pool", "overhead", "imports"),
                    default=["grow", "asks", "pool", "overhead", "imports"])
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    args = ap.parse_args()
    out_path = Path(args.out)
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["machine"] = {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()}
    for section in args.only:
        if section == "grow":
            result["grow"] = {"sizes": sorted(args.sizes), "window": args.window,
                              "rows": grow(sorted(args.sizes), args.window)}
        else:
            result[section] = {"asks": asks, "pool": pool, "overhead": overhead, "imports": imports}[section]()
        result.pop("rows", None)  # the layout before sections
        out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
