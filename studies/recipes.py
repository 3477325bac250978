"""How a study's trainer and workload are stored and rebuilt from the database alone.

This module imports neither `trainers` nor `search` (nor torch) at import time: `tunelab list`
and `show` read a study's recipe through it. What rebuilds a trainer imports `trainers` when
it runs; the names it needs beforehand (the study attributes' keys, the built-in workload
factories, which built-in strategies name no code) are constants here, each tested against
what it mirrors (tests/studies/test_cold_start.py).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tunelab.spaces.errors import UntrustedImportError, WorkloadError
from tunelab.spaces.trust import Trust, check, current_path, resolve
from tunelab.studies.storage.limits import MAX_EPOCHS, count, mapping, optional_count

if TYPE_CHECKING:
    from tunelab.trainers.protocol import Trainable

# Study user attributes that hold a study's recipe (written once, when it is created).
VERSION = "tunelab:version"
SPACE = "tunelab:space"
STRATEGY = "tunelab:strategy"
TRAINER = "tunelab:trainer"
SEED = "tunelab:seed"
UID = "tunelab:uid"  # the study's identity: its artifact folder's marker names it
# The study user attribute of a comparison's manifest (`studies.compare.manifest` writes it; re-exported there).
MANIFEST = "tunelab:comparison"
# The study user attribute of the last `optimize` call's budget (the driver writes it).
BUDGET = "tunelab:budget"

# tunelab's workload factories: `trainers.workloads.__all__`, named here so that checking a stored
# recipe (`tunelab list`) needs no torch.
BUILTIN_WORKLOADS = ("digits", "mnist1d", "mnist1d_published")
# tunelab's registered strategies whose stored arguments never name code to import (their
# `Strategy.stored_imports` is the default, which names none); "optuna" (`search.OptunaSampler`)
# names code only through its `sampler` argument, when it is not a plain name of Optuna's samplers.
CODE_FREE_STRATEGIES = ("asha", "bayesian", "curve_pruner", "darts", "enqueue", "evolution", "freeze_thaw",
                        "hyperband", "random", "self_tuning")


def builtin_factories() -> frozenset[str]:
    """Import paths of tunelab's own workload factories (loadable from any database without trust)."""
    return frozenset(f"tunelab.trainers.workloads:{name}" for name in BUILTIN_WORKLOADS)


def factory_path(spec: Mapping[str, Any]) -> str | None:
    """The workload factory a stored trainer spec names (None for in-memory data)."""
    recipe = spec.get("workload") or {}
    factory = recipe.get("factory") if isinstance(recipe, Mapping) else None
    return str(current_path(factory)) if factory else None


def trainer_conflict(stored: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """How a given trainer spec differs from a study's stored one in what trials measure (None: it does not).

    The data fingerprint is compared when both specs have one (studies made before it was
    stored have none), so reusing a study name with other data is a conflict.
    """
    a, b = identity(stored), json.loads(json.dumps(identity(given)))
    fa, fb = (x["workload"].get("function") if isinstance(x["workload"], Mapping) else None for x in (a, b))
    if (isinstance(fa, str) and isinstance(fb, str) and "__main__:" in (fa[:9], fb[:9])
            and fa.rpartition(":")[2] == fb.rpartition(":")[2]):
        b["workload"] = {**b["workload"], "function": fa}  # a script's function, given as module:function
    if a != b:
        return f"a different trainer (stored: {a}, given: {b})"
    da, db = stored.get("data"), json.loads(json.dumps(given.get("data")))
    if da is not None and db is not None and da != db:
        return (f"other data under the same workload name {b['workload']} (stored: {da}, given: {db}); give the new "
                f"data its own study name")
    return None


def identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a trainer spec that define what a trial measures (device and precision excluded).

    A workload factory stored by tunelab 0.3.0 under its old top-level package compares as the
    path it has now (`spaces.trust.current_path`).
    """
    out = {k: spec.get(k) for k in ("workload", "epochs", "batch_size", "seed")}
    recipe = out["workload"]
    if isinstance(recipe, Mapping) and "factory" in recipe:
        out["workload"] = {**recipe, "factory": current_path(recipe["factory"])}
    return out


def build_trainer(spec: Mapping[str, Any], *, device: str = "auto", trust: Trust = None) -> Trainable:
    """Rebuild the trainer of a stored spec (`Trainer.spec()`).

    Built-in workloads load by name; any other factory is imported only when its package is in
    `trust` (see `spaces.trust`).

    Raises:
        UntrustedImportError: The factory is not built in and its package is not trusted.
        WorkloadError: The workload has no recipe (it was built from in-memory tensors), or its
            factory cannot be imported or called with the stored arguments.
    """
    from tunelab.trainers import Trainer

    spec = mapping(spec, "the study's stored trainer")
    if "function" in spec or "objective" in spec:
        return build_user_trainer(spec, device=device, trust=trust)
    recipe = mapping(spec.get("workload"), "the stored trainer's workload")
    factory = recipe.get("factory")
    if spec.get("replay"):
        replay = spec["replay"]
        raise WorkloadError(
            f"the study replays the table {replay.get('table')!r} (digest {replay.get('digest')}); a table file is "
            f"opened only where you say: studies.load(name, storage, trainer=trainers.Replay(path_of_the_table))")
    if not factory:
        raise WorkloadError(
            f"the study's workload {recipe.get('name')!r} was built from in-memory data and has no recipe to "
            f"rebuild it; pass the trainer again: studies.load(name, storage, trainer=Trainer(workload, ...)) (CLI: "
            f"tunelab resume --workload module:function), or give the Workload a recipe={{'factory': "
            f"'module:function', 'kwargs': {{...}}}}. Reading needs none of this: studies.load(..., read_only=True), "
            f"tunelab show/report/list"
        )
    try:
        fn = resolve(factory, what="workload factory", trust=trust, builtins=builtin_factories())
    except (ImportError, AttributeError) as err:
        raise WorkloadError(
            f"cannot import the workload factory {factory!r} stored with the study ({err}); make it importable "
            f"or pass trainer= to studies.load"
        ) from err
    kwargs = recipe.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise WorkloadError(f"the stored arguments of the workload factory {factory!r} are not a mapping: {kwargs!r}")
    try:
        workload = fn(**dict(kwargs))
    except TypeError as err:
        raise WorkloadError(
            f"the workload factory {factory!r} does not take the stored arguments {dict(kwargs)}: {err}; pass "
            f"trainer= to studies.load"
        ) from err
    where = "the study's stored trainer setting"
    return Trainer(
        workload,
        epochs=optional_count(spec.get("epochs"), f"{where} 'epochs'", low=1, limit=MAX_EPOCHS),
        batch_size=optional_count(spec.get("batch_size"), f"{where} 'batch_size'", low=1, limit=10**7),
        device=device,
        seed=count(spec.get("seed", 0), f"{where} 'seed'", low=-(2**63), limit=2**64),
        compile=bool(spec.get("compile", False)),
    )


def user_code(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """`(kind, "module:function")` of a stored `trainers.Function` or `trainers.Objective`, else None."""
    for kind in ("function", "objective"):
        if isinstance(spec, Mapping) and isinstance(spec.get(kind), str):
            return kind, spec[kind]
    return None


def build_user_trainer(spec: Mapping[str, Any], *, device: str = "auto", trust: Trust = None,
                       fn: Any = None) -> Trainable:
    """Rebuild a stored `trainers.Function` or `trainers.Objective` (its function imported only when trusted).

    Args:
        spec: The stored trainer spec.
        device: Where a `Function` trains.
        trust: Packages whose code may be imported (`spaces.trust`).
        fn: The function itself (the caller's consent: CLI `--function module:fn`); else the stored path.

    Raises:
        UntrustedImportError: The function's package is not trusted.
        WorkloadError: The function was defined in the script that ran the study (`__main__`) and
            `fn` was not given, or it cannot be imported.
    """
    from tunelab.trainers import Function, Objective
    from tunelab.trainers.usercode import rebind

    kind, path = user_code(spec) or ("function", "?")
    if fn is None:
        if str(path).startswith("__main__:"):
            raise WorkloadError(
                f"the study trains {path.split(':', 1)[1]}, a {kind} of the script that ran it; rerun that script "
                f"to continue the study (it reopens it), or import the {kind} from a module and pass it: "
                f"tunelab resume --function module:{path.split(':', 1)[1]} (Python: studies.load(name, storage, "
                f"trainer=trainers.{kind.capitalize()}(fn, ...)))")
        try:
            fn = resolve(path, what=f"training {kind}", trust=trust)
        except (ImportError, AttributeError) as err:
            raise WorkloadError(f"cannot import the {kind} {path!r} stored with the study ({err}); make it "
                                f"importable, or pass trainer= to studies.load") from err
    where = "the study's stored trainer setting"
    recipe = mapping(spec.get("workload"), "its workload")
    if "bound" in recipe and not isinstance(fn, functools.partial):
        fn = rebind(fn, recipe["bound"], where)
    metric, direction = str(spec.get("metric", "")), str(spec.get("direction", ""))
    seed = count(spec.get("seed", 0), f"{where} 'seed'", low=-(2**63), limit=2**64)
    name = str(recipe.get("name") or "")[:200] or None
    if kind == "objective":
        return Objective(fn, metric=metric, direction=direction, seed=seed, name=name)
    epochs = count(spec.get("epochs"), f"{where} 'epochs'", low=1, limit=MAX_EPOCHS)
    return Function(fn, epochs=epochs, metric=metric, direction=direction, seed=seed, device=device, name=name)


def untrusted_imports(trainer_spec: Any, strategy_spec: Any, trust: Trust = None) -> list[str]:
    """Import paths a stored study names that `studies.load` would refuse under `trust` (nothing is imported).

    A malformed spec is reported as its text, since loading refuses it too. A built-in strategy
    that names no code is recognised without importing `search` (`tunelab list` needs no torch).
    """
    paths: list[tuple[str, frozenset[str]]] = []
    factory = factory_path(trainer_spec) if isinstance(trainer_spec, Mapping) else None
    if factory:
        paths.append((factory, builtin_factories()))
    code = user_code(trainer_spec)
    if code is not None and not code[1].startswith("__main__:"):  # a script's own function: its script reopens it
        paths.append((code[1], frozenset()))
    name = strategy_spec.get("name") if isinstance(strategy_spec, Mapping) else None
    if not isinstance(name, str):
        return [p for p, b in paths if not _allowed(p, trust, b)] + [repr(strategy_spec)]
    args = strategy_spec.get("args") or {}
    args = args if isinstance(args, Mapping) else {}
    if ":" in name:
        paths.append((name, frozenset()))
    elif not names_no_code(name, args):
        from tunelab import search

        if name in search.strategies:
            paths += [(p, frozenset()) for p in search.strategies.get(name).stored_imports(args)]
    return [p for p, b in paths if not _allowed(p, trust, b)]


def names_no_code(strategy: str, args: Mapping[str, Any]) -> bool:
    """Whether the registered strategy `strategy`, built from stored `args`, surely imports no code.

    Answered without importing `search`, and only while it is not imported: the registry then
    holds tunelab's own strategies alone (a user's strategy, which may take a built-in name,
    registers itself when its module imports `search`). False means "ask the registry".
    """
    if "tunelab.search" in sys.modules:
        return False
    if strategy in CODE_FREE_STRATEGIES:
        return True
    sampler = args.get("sampler", "tpe")
    return strategy == "optuna" and isinstance(sampler, str) and ":" not in sampler


def _allowed(path: str, trust: Trust, builtins: frozenset[str]) -> bool:
    try:
        check(path, what="import path", trust=trust, builtins=builtins)
    except UntrustedImportError:
        return False
    return True
