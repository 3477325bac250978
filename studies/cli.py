"""The `tunelab` command line: `demo`, `list`, `show`, `importance`, `resume`, `report`, `unlock`, `compare`.

`dashboard` serves optuna-dashboard on 127.0.0.1 (`tunelab.studies.dashboard`).

Each command imports what it uses when it runs: `tunelab --help`, `list` and `show` import
neither torch nor gpytorch nor BoTorch (tests/studies/test_cold_start.py, benchmarks/startup.py).

Size: a little over 500 lines: one short function and one parser block per command, kept in the
module that `main` dispatches from.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STRATEGIES = ("bayesian", "random", "quasi", "tpe", "evolution", "freeze_thaw", "asha", "hyperband", "darts",
              "self_tuning")
MULTI_FIDELITY = ("freeze_thaw", "asha", "hyperband")


def _strategy(name: str, seed: int) -> Any:
    from tunelab import search

    return {
        "bayesian": lambda: search.Bayesian(seed=seed),
        "random": lambda: search.Random(seed=seed),
        "quasi": lambda: search.Random(seed=seed, quasi=True),
        "tpe": lambda: search.OptunaSampler("tpe", seed=seed),
        "evolution": lambda: search.Evolution(seed=seed),
        "freeze_thaw": lambda: search.FreezeThaw(seed=seed),
        "asha": lambda: search.ASHA(seed=seed),
        "hyperband": lambda: search.Hyperband(seed=seed),
        # scaled for a demo on MNIST-1D or digits: a short first-order search with DARTS-PT selection
        "darts": lambda: search.Darts(seed=seed, epochs=8, pt_interval=1, arch_lr=3e-3),
        # the model space's dropout, learned in one run (2 warm-up epochs: the demo's runs are short)
        "self_tuning": lambda: search.SelfTuning(seed=seed, tune=["model.dropout"], warmup=2),
    }[name]()


def _demo(args: argparse.Namespace) -> int:
    from tunelab import spaces, studies, trainers

    if args.strategy == "darts" and args.model != "cells":
        print("tunelab demo: --strategy darts searches a cell architecture; add --model cells", file=sys.stderr)
        return 2
    if args.strategy == "self_tuning" and args.model == "cells":
        print("tunelab demo: --strategy self_tuning tunes the dropout of --model mlp or cnn", file=sys.stderr)
        return 2
    workload = {"mnist1d": trainers.workloads.mnist1d, "digits": trainers.workloads.digits}[args.workload]()
    dim = 1 if args.workload == "mnist1d" else 2
    model_space = {"mlp": spaces.mlp(), "cnn": spaces.cnn(dim=dim), "cells": spaces.cells(dim=dim)}[args.model]
    space = spaces.optimizers(args.optimizers) | spaces.schedules(["constant", "cosine", "warmup_cosine"]) | model_space
    trainer = trainers.Trainer(workload, epochs=args.epochs, device=args.device, seed=args.seed)
    name = args.name or f"{args.workload}-{args.model}-{args.strategy}"
    study = studies.create(name, args.storage, space=space, trainer=trainer,
                           strategy=_strategy(args.strategy, args.seed))
    # multi-fidelity strategies pause and resume trials: they get the same work counted in epochs
    budget = {"epochs": args.trials * args.epochs} if args.strategy in MULTI_FIDELITY else {"trials": args.trials}
    if args.strategy in ("darts", "self_tuning"):  # one search or run, then the trial that retrains or replays it
        budget = {"trials": 2}
    if not args.quiet:
        what = f"{args.trials * args.epochs} epochs" if "epochs" in budget else f"{args.trials} trials"
        print(f"study {name!r}: {args.strategy} search over {', '.join(args.optimizers)} x schedules x {args.model}, "
              f"{what} (runs of {args.epochs} epochs) on {workload.name} ({trainer.device})")
    best = study.optimize(**budget, n_workers=args.workers, progress=not args.quiet, **_executor(args))
    _print_best(study, best)
    print(f"\ndatabase: {args.storage} (study {name!r}); checkpoints: {study.artifacts}")
    exe = _self_command()
    print(f"next: {exe} show --storage {args.storage} --study {name}  |  {exe} report --storage {args.storage} "
          f"--study {name} --out report/")
    return 0


def _self_command() -> str:
    """How to run `tunelab` again from this shell: `tunelab` if it is on PATH, else the path of this one."""
    import shutil

    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("tunelab")
    if here is None or here.name != "tunelab" or (found and Path(found).resolve() == here):
        return "tunelab"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    """The study the arguments name: read-only (from the database alone) or ready to train."""
    from tunelab import studies

    name = args.study
    if name is None:
        names = studies.study_names(args.storage)
        if len(names) != 1:
            raise studies.StudyNotFoundError(
                f"{args.storage} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                f"choose one with --study NAME"
            )
        name = names[0]
    if read_only:
        return studies.load(name, args.storage, read_only=True)
    trainer = None
    if getattr(args, "workload", None):
        trainer = _user_trainer(args, name)
    elif getattr(args, "function", None):
        trainer = _user_function(args, name)
    return studies.load(name, args.storage, device=getattr(args, "device", "auto"), trust=args.trust, trainer=trainer)


def _import_named(path: str, option: str, what: str) -> Any:
    """The object `module:attr` names, imported because the user named it on the command line."""
    import importlib

    from tunelab import studies
    from tunelab.spaces.trust import split_path

    module, attr = split_path(path, option)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: the user's modules in the working directory
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise studies.WorkloadError(f"{option} {path}: cannot import it ({err}); give module:function of {what} "
                                    f"importable from {str(Path.cwd())!r}") from err


def _user_function(args: argparse.Namespace, name: str) -> Any:
    """The `trainers.Function` / `Objective` of `--function module:fn`, rebuilt with the study's stored settings."""
    from tunelab import studies
    from tunelab.studies.recipes import build_user_trainer

    fn = _import_named(args.function, "--function", "the study's training function")
    spec = studies.load(name, args.storage, read_only=True).stored_trainer
    return build_user_trainer(spec, device=getattr(args, "device", "auto"), fn=fn)


def _user_trainer(args: argparse.Namespace, name: str) -> Any:
    """The trainer of `--workload module:function`: the user's own data, imported because they named it."""
    from tunelab import studies, trainers

    factory = _import_named(args.workload, "--workload", "a function that returns the Workload")
    workload = factory()
    if trainers.is_trainable(workload):  # a Trainer, Function or Objective made by the user's factory
        return workload
    if not isinstance(workload, trainers.Workload):
        raise studies.WorkloadError(f"--workload {args.workload} returned {type(workload).__name__}; it must return "
                                    f"a trainers.Workload (or a trainable: trainers.Trainer, Function, Objective)")
    spec = studies.load(name, args.storage, read_only=True).stored_trainer
    return trainers.Trainer(workload, epochs=spec.get("epochs"), batch_size=spec.get("batch_size"),
                            device=getattr(args, "device", "auto"), seed=int(spec.get("seed", 0)))


def _print_best(study: Any, best: Any) -> None:
    metric = study.metric
    if best is None:
        print("no trial has completed yet")
        return
    test = f", test {metric} {best.test_metric:.4f}" if best.test_metric is not None else ""
    print(f"best: trial {best.number}, validation {metric} {best.value:.4f}{test}")
    for k, v in best.config.items():
        print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")


def _list(args: argparse.Namespace) -> int:
    """List the studies from what is stored: no workload is rebuilt and no code named by the database is imported."""
    from tunelab import studies
    from tunelab.studies.storage.reader import read_studies

    st = studies.open_storage(args.storage, create=False)
    summaries = read_studies(st)
    if not summaries:
        print(f"no studies in {args.storage}")
        return 0
    print(f"{'study':30s} {'strategy':10s} {'workload':12s} {'trials':>14s} {'best':>8s}")
    for summary in summaries:
        try:
            print(_list_line(st, summary, args.trust))
        except Exception as err:  # one damaged study must not hide the others
            print(f"{summary.name[:60]:30s} (cannot be read: {type(err).__name__}: {str(err)[:200]})")
    return 0


def _list_line(st: Any, summary: Any, trust: Any) -> str:
    """One study's line of `tunelab list` (raises on a damaged study; the caller reports it)."""
    from tunelab.studies.recipes import MANIFEST, STRATEGY, TRAINER, untrusted_imports
    from tunelab.studies.records import state_of
    from tunelab.studies.storage.limits import mapping
    from tunelab.studies.storage.reader import read_study_attrs, read_trials

    name = summary.name
    attrs = read_study_attrs(st, summary.study_id)
    if MANIFEST in attrs:
        m = attrs[MANIFEST]
        return (f"{name:30s} comparison of {', '.join(map(str, m['optimizers']))} on "
                f"{', '.join(str(p['name']) for p in m['problems'])} (tunelab compare --name {name} --report-only)")
    if STRATEGY not in attrs or TRAINER not in attrs:
        return f"{name:30s} (not a tunelab study)"
    strategy = mapping(attrs[STRATEGY], f"study {name!r}'s stored strategy")
    trainer = mapping(attrs[TRAINER], f"study {name!r}'s stored trainer")
    workload = trainer.get("workload_name") or mapping(trainer.get("workload"), "its workload").get("name", "?")
    trials = read_trials(st, summary.study_id, curves=False)
    done = [t for t in trials if state_of(t) == "complete" and t.value is not None]
    maximize = summary.directions[:1] == ("maximize",)
    best = (max if maximize else min)((t.value for t in done), default=float("nan"))
    line = (f"{name:30s} {str(strategy.get('name'))[:10]:10s} {str(workload)[:12]:12s} "
            f"{f'{len(done)}/{len(trials)} complete':>14s} {best:8.4f}")
    refused = untrusted_imports(trainer, strategy, trust)
    if refused:
        line += f"  [untrusted code: {', '.join(refused)}; open with --trust PACKAGE]"
    return line


def _show(args: argparse.Namespace) -> int:
    study = _open(args, read_only=True)
    trials = study.records(curves=False)  # what the table shows: no per-epoch data
    print(f"study {study.name!r} in {args.storage}: {study.strategy_text}, workload {study.workload_name}, "
          f"{study.epochs} epochs per trial, budget {study.budget()}")
    _print_best(study, study.best_of(trials))  # from the trials read once
    if study.objectives is not None:
        _print_front(study, trials)
    metric = study.metric
    print(f"\n{'trial':>5s} {'state':9s} {'val ' + metric:>13s} {'epochs':>6s} {'seconds':>8s} {'params':>8s}"
          f"  config / error")
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        print(f"{t.number:5d} {t.state.value:9s} {value:>13s} {t.epochs:6d} {t.seconds:8.1f} "
              f"{_count(t.n_params):>8s}  {(t.error or _config_line(t))[:180]}")
    return 0


def _importance(args: argparse.Namespace) -> int:
    """Print which hyperparameters matter (`Study.importance`), from the database alone (nothing imported)."""
    study = _open(args, read_only=True)
    print(f"study {study.name!r} in {args.storage}\n")
    print(study.importance(args.method, objective=args.objective).table())
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """Serve optuna-dashboard on 127.0.0.1 (`tunelab.studies.dashboard`) until Ctrl-C."""
    from tunelab.studies.dashboard import serve

    try:
        serve(args.storage, port=args.port)
    except KeyboardInterrupt:
        print("dashboard stopped")
    return 0


def _print_front(study: Any, trials: list[Any]) -> None:
    """A multi-objective study's Pareto front: one line per trial on it, by its first objective."""
    front = study.pareto_front_of(trials)
    goals = study.objectives
    print(f"\nPareto front: {len(front)} of {sum(t.state == 'complete' for t in trials)} complete trials ("
          + ", ".join(f"{n} {'max' if d == 'maximize' else 'min'}" for n, d in goals.as_dict().items()) + ")")
    print(f"{'trial':>5s} " + " ".join(f"{n[:12]:>12s}" for n in goals.names) + "  config")
    for t in front:
        print(f"{t.number:5d} " + " ".join(f"{v:12.5g}" for v in t.values) + f"  {_config_line(t)[:150]}")


def _count(n: int | None) -> str:
    """12345 -> '12.3k' (a column of parameter counts)."""
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _config_line(t: Any) -> str:
    """A trial's config on one line; a cell's six edges are shown as its genotype string."""
    genotype = t.genotype
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.config.items()
             if not (genotype and k.startswith("model.op_"))]
    return (f"{genotype}  " if genotype else "") + ", ".join(items)


def _resume(args: argparse.Namespace) -> int:
    study = _open(args)
    given = {k: getattr(args, k) for k in ("trials", "epochs", "seconds", "grad_evals") if getattr(args, k) is not None}
    budget = given or {k: v for k, v in (study.budget() or {}).items() if v is not None}
    if not budget:
        from tunelab import studies

        raise studies.BudgetError("the study has no stored budget; pass --trials, --epochs, --seconds or --grad-evals")
    print(f"resuming {study.name!r} with budget {budget}")
    best = study.optimize(**budget, n_workers=args.workers, progress=not args.quiet, **_executor(args))
    _print_best(study, best)
    return 0


def _report(args: argparse.Namespace) -> int:
    from tunelab.studies.artifacts import safe_name
    from tunelab.studies.report import report

    study = _open(args, read_only=True)
    path = report(study, Path(args.out) if args.out else Path(safe_name(study.name) + "-report"))
    print(f"report written to {path}")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    """Break a study's lock (a driver that died on another host, or a clock that is wrong), after asking."""
    from tunelab import studies
    from tunelab.studies.storage.lock import break_lock, describe_holder, read_lock

    study = _open(args, read_only=True)
    holder = read_lock(study.storage, study.study_id)
    if not holder or not holder.get("owner"):
        print(f"study {study.name!r} is not locked")
        return 0
    print(f"study {study.name!r} is locked by {describe_holder(holder)}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise studies.ConfigError("tunelab unlock asks before it breaks a lock; answer at a terminal or pass --yes")
        answer = input("Break the lock? A driver that still runs would then share the study unsafely [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("left locked")
            return 1
    break_lock(study.storage, study.study_id)
    print(f"unlocked study {study.name!r}")
    return 0


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """`--executor`, `--ray-address` and `--population` of the commands that train."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="where trials train: local (this machine) or ray (a Ray cluster; pip install "
                             "'tunelab[ray]')")
    parser.add_argument("--ray-address", dest="ray_address", default=None,
                        help="with --executor ray: 'auto' or host:port of a running cluster (default: start Ray here)")
    parser.add_argument("--population", type=int, default=1,
                        help="train up to this many trials of one architecture at once, as one vectorised model")


def _executor(args: argparse.Namespace) -> dict[str, Any]:
    """`optimize`'s executor arguments from `--executor`, `--ray-address` and `--population`."""
    extra = {"population": args.population} if args.population != 1 else {}
    if args.executor != "ray":
        if args.ray_address is not None:
            from tunelab import studies

            raise studies.ConfigError("--ray-address needs --executor ray")
        return extra
    return {"executor": "ray", "ray_address": args.ray_address, **extra}


def _compare(args: argparse.Namespace) -> int:
    from tunelab import studies
    from tunelab.studies.artifacts import safe_name
    from tunelab.studies.compare import Comparison
    from tunelab.studies.compare.report import write_report
    from tunelab.studies.compare.tables import verdict

    if args.optimizers is None:  # continue (or report) a stored comparison
        comparison = Comparison.load(args.name, args.storage, device=args.device, trust=args.trust)
        if not args.report_only:
            comparison.run(n_workers=args.workers, progress=not args.quiet, **_executor(args))
    else:
        if args.report_only:
            raise studies.ConfigError("--report-only reads a stored comparison: give --name (and --storage), not "
                                      "--optimizers")
        problems = [studies.problems.get(p)(epochs=args.epochs, device=args.device) if args.epochs else
                    studies.problems.get(p)(device=args.device) for p in args.problems]
        budget = {"grad_evals": args.grad_evals} if args.grad_evals else args.budget
        comparison = studies.compare(
            problems, optimizers=args.optimizers, schedules=args.schedules, budget=budget,
            strategy=_strategy(args.strategy, args.seed), seeds=args.seeds, reruns=args.reruns,
            storage=args.storage, name=args.name, equalize=args.equalize, one_shot=not args.no_one_shot,
            n_workers=args.workers, progress=not args.quiet, **_executor(args),
        )
    table = comparison.table()  # computed once: the report and the printed verdict read it
    path = write_report(comparison, Path(args.out) if args.out else Path(safe_name(args.name) + "-report"), table)
    print(verdict(comparison, table))
    print(f"report written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tunelab`."""
    from tunelab.studies import DEFAULT_STORAGE, __version__

    parser = argparse.ArgumentParser(prog="tunelab", description="Search hyperparameters and architectures of "
                                     "PyTorch models.")
    parser.add_argument("--version", action="version", version=f"tunelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def storage_args(p: argparse.ArgumentParser, study: bool = True) -> None:
        p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})")
        p.add_argument("--trust", action="append", default=None, metavar="PACKAGE",
                       help="a package whose code the database may import (a workload factory or strategy "
                       "outside tunelab); repeat for several. Without it nothing outside tunelab is imported")
        if study:
            p.add_argument("--study", default=None, help="study name (optional when the storage holds one study)")

    demo = sub.add_parser("demo", help="run a short real study on MNIST-1D into a SQLite file")
    storage_args(demo, study=False)
    demo.add_argument("--name", default=None, help="study name (default: <workload>-<model>-<strategy>)")
    demo.add_argument("--strategy", choices=STRATEGIES, default="bayesian")
    demo.add_argument("--workload", choices=["mnist1d", "digits"], default="mnist1d")
    demo.add_argument("--model", choices=["mlp", "cnn", "cells"], default="cnn")
    demo.add_argument("--optimizers", nargs="+", default=["adamw", "sgd", "acprop"],
                      help="optimizer families to search (see spaces.optimizers.names())")
    demo.add_argument("--trials", type=int, default=12,
                      help="full runs of budget (multi-fidelity strategies get trials x epochs epochs)")
    demo.add_argument("--epochs", type=int, default=15, help="epochs per trial")
    demo.add_argument("--workers", type=int, default=1)
    _add_executor_arguments(demo)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_demo)

    lst = sub.add_parser("list", help="list the studies of a storage")
    storage_args(lst, study=False)
    lst.set_defaults(func=_list)

    show = sub.add_parser("show", help="print a study's best trial and a table of its trials")
    storage_args(show)
    show.set_defaults(func=_show)

    imp = sub.add_parser("importance", help="rank a study's hyperparameters by how much they matter (PED-ANOVA, "
                         "fANOVA)")
    storage_args(imp)
    imp.add_argument("--method", choices=("ped_anova", "fanova"), default="ped_anova",
                     help="Optuna's evaluator: ped_anova (default, fast) or fanova (a random forest, slower)")
    imp.add_argument("--objective", default=None, help="the objective to assess (required for a multi-objective study)")
    imp.set_defaults(func=_importance)

    dash = sub.add_parser("dashboard", help="serve optuna-dashboard for a storage on 127.0.0.1 (an optional extra)",
                          description="Serve optuna-dashboard on 127.0.0.1 only; from another machine, use the SSH "
                          "tunnel it prints rather than binding to all interfaces (the dashboard has no login).")
    storage_args(dash, study=False)
    dash.add_argument("--port", type=int, default=8080, help="the port on 127.0.0.1 (0: any free port)")
    dash.set_defaults(func=_dashboard)

    resume = sub.add_parser("resume", help="continue a study until its budget (or a new one) is spent",
                            description="Continue a study until its budget is spent. Budgets are totals for the "
                            "study (finished trials count); without one, the budget of the last run is used.")
    storage_args(resume)
    resume.add_argument("--trials", type=int, help="total trials of the study (e.g. 60 to extend a 40-trial study)")
    resume.add_argument("--epochs", type=int, help="total epochs, summed over trials")
    resume.add_argument("--seconds", type=float, help="total seconds spent in optimize, over all runs")
    resume.add_argument("--grad-evals", dest="grad_evals", type=int, help="total gradient evaluations")
    resume.add_argument("--workload", default=None, metavar="MODULE:FUNCTION",
                        help="your workload, for a study on your own data: a function (importable from the working "
                        "directory) that returns the same trainers.Workload the study was created with")
    resume.add_argument("--function", default=None, metavar="MODULE:FUNCTION",
                        help="your training function, for a study of trainers.Function or trainers.Objective defined "
                        "in a script: the same function, importable from the working directory")
    resume.add_argument("--workers", type=int, default=1)
    _add_executor_arguments(resume)
    resume.add_argument("--device", default="auto")
    resume.add_argument("--quiet", action="store_true")
    resume.set_defaults(func=_resume)

    rep = sub.add_parser("report", help="write a Markdown summary with PNG plots")
    storage_args(rep)
    rep.add_argument("--out", default=None, help="folder (default <study>-report)")
    rep.set_defaults(func=_report)

    unlock = sub.add_parser("unlock", help="break a study's lock left by a dead driver (asks first)",
                            description="Break the lock of a study whose driver died on another host or whose "
                            "host's clock is wrong, so that `resume` stops waiting. Shows who holds it and asks.")
    storage_args(unlock)
    unlock.add_argument("--yes", action="store_true", help="do not ask")
    unlock.set_defaults(func=_unlock)

    cmp_ = sub.add_parser("compare", help="compare optimizers under equal tuning budgets and write a report",
                          description="Tune each optimizer with the same budget, rerun the selected configurations "
                          "on fresh seeds, and write a Markdown report with plots. Rerunning the same command "
                          "continues an interrupted comparison; with only --name it continues the stored one.")
    storage_args(cmp_, study=False)
    cmp_.add_argument("--name", default="compare", help="comparison name (default compare)")
    cmp_.add_argument("--problems", nargs="+", default=["mnist1d_mlp"],
                      help="built-in problems: mnist1d_mlp, mnist1d_cnn, digits_cnn (default mnist1d_mlp)")
    cmp_.add_argument("--optimizers", nargs="+", default=None,
                      help="optimizer families, e.g. sgd adamw adabelief acprop sam lion")
    cmp_.add_argument("--schedules", nargs="+", default=None, help="learning-rate schedules (default cosine)")
    cmp_.add_argument("--budget", type=int, default=20, help="trials per tuning study (default 20)")
    cmp_.add_argument("--grad-evals", dest="grad_evals", type=int, default=None,
                      help="budget in gradient evaluations per tuning study instead of trials")
    cmp_.add_argument("--strategy", choices=("quasi", "random", "bayesian", "tpe"), default="quasi",
                      help="tuner of every study (default quasi: scrambled Halton, as AlgoPerf)")
    cmp_.add_argument("--seed", type=int, default=0, help="seed of the tuner (study seed s adds s)")
    cmp_.add_argument("--seeds", type=int, default=1, help="independent tuning studies per optimizer")
    cmp_.add_argument("--reruns", type=int, default=3, help="fresh seeds per selected configuration")
    cmp_.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the problem's, 20)")
    cmp_.add_argument("--equalize", choices=("grad_evals", "epochs"), default="grad_evals",
                      help="equal trial length in gradient evaluations (default) or in epochs")
    cmp_.add_argument("--no-one-shot", action="store_true", help="do not train the defaults")
    cmp_.add_argument("--out", default=None, help="report folder (default <name>-report)")
    cmp_.add_argument("--report-only", action="store_true", help="write the report of a stored comparison")
    cmp_.add_argument("--workers", type=int, default=1)
    _add_executor_arguments(cmp_)
    cmp_.add_argument("--device", default="auto")
    cmp_.add_argument("--quiet", action="store_true")
    cmp_.set_defaults(func=_compare)
    return parser


def _shorten(text: str, limit: int = 4000) -> str:
    """A message cut to `limit` characters (one that echoes a huge stored value must not flood the terminal)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tunelab` console script."""
    from tunelab.studies import TunelabError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `tunelab show | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except TunelabError as exc:
        print(f"tunelab: error: {_shorten(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database failure outside the study layer's own guards: named, not a traceback
        from tunelab.studies.storage import is_storage_fault, storage_fault

        if not is_storage_fault(exc):
            raise
        print(f"tunelab: error: {storage_fault(exc, getattr(args, 'storage', '?'))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
