"""Record learning-curve tables with tunelab's own trainer, for replay benchmarks (never run in CI).

A table is every configuration of a grid space trained to the end, with every metric of every
epoch, its seconds and gradient evaluations, and its test metric; a few configurations are also
trained on two more seeds, so seed noise is known. A recording is a tunelab study (an `Enqueue`
of the grid, in an SQLite database under `benchmarks/tables/`), so a killed recording continues
where it stopped when the same command runs again. Configurations of one architecture are
queued together and trained as populations (`optimize(population=16)`).

    python benchmarks/record_tables.py record mnist1d_mlp --threads 1   # resumable; exports when it stops
    python benchmarks/record_tables.py export mnist1d_mlp               # -> benchmarks/tables/mnist1d_mlp.json.gz

The committed table file is the durable part of a recording: `record` queues only what it lacks
(and continues the local recording study when its database is here).

Tables:
    mnist1d_mlp: MNIST-1D, 20 epochs, 2,880 configurations of 9 hyperparameters: optimizer (SGD,
        AdamW, NAdam, SAM with an SGD or AdamW base), learning rate (6 values), weight decay,
        momentum or beta1, schedule (constant, cosine), MLP width (64, 256), depth (1-3),
        dropout (0, 0.2).
    mnist1d_cells: MNIST-1D, 10 epochs, 320 genotypes of the 1-D NAS-Bench-201 cell (a uniform
        sample of the 15,625), 16 channels, one cell per stage, AdamW lr 3e-3 with a cosine
        schedule; replayed with `outside="nearest"` (the other genotypes are answered by the
        nearest recorded one).
    digits_mlp: scikit-learn digits, 20 epochs, 1,152 configurations: SGD, AdamW or NAdam with
        their grids, two schedules, MLP width (32, 128), depth (1, 2), dropout (0, 0.3).
    char_lm: the character-level transformer of `examples/char_lm.py` (the own-code workload: its
        own model, loss and bits-per-character metric) on 80,000 characters of the standard
        library's source, context 64, 20 epochs, 240 configurations: AdamW, Lion or SGD with five
        learning rates and two beta1 / momentum values each, a 5% warm-up-cosine schedule, width
        (64, 128), depth (1, 2), dropout (0, 0.2). Its task loss cannot be vectorised, so it
        records with `--population 1` and two worker processes.
Each table also holds a few configurations on seeds 1 and 2 (5; 3 for the cells).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import itertools
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tunelab.studies.tables  # noqa: F401  (studies.tables below)
from tunelab import search, spaces, studies, trainers
from tunelab.spaces import Categorical, Fixed
from tunelab.spaces.cells import all_genotypes
from tunelab.trainers.replay import Curve, ReplayTable, TableHeader

FOLDER = Path(__file__).resolve().parent / "tables"
SEEDS_CONFIGS = 5  # configurations also trained on seeds 1 and 2

LR_SGD = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
LR_ADAM = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SGD = {"lr": LR_SGD, "momentum": (0.5, 0.9), "weight_decay": (1e-5, 1e-3)}
ADAM = {"lr": LR_ADAM, "beta1": (0.8, 0.9), "weight_decay": (1e-4, 1e-1)}
MODEL = {"width": (64, 256), "depth": (1, 2, 3), "dropout": (0.0, 0.2)}
SCHEDULES = ("constant", "cosine")


def mnist1d_mlp_space() -> spaces.Space:
    """The grid of the mnist1d_mlp table as a tunelab space (every parameter categorical or fixed)."""
    grid: dict[str, Any] = {"sgd.nesterov": Fixed(False), "sam.rho": Fixed(0.05), "sam.sgd.nesterov": Fixed(False)}
    for prefix, values in (("sgd", SGD), ("adamw", ADAM), ("nadam", ADAM), ("sam.sgd", SGD), ("sam.adamw", ADAM)):
        grid.update({f"{prefix}.{k}": Categorical(v) for k, v in values.items()})
    optimizers = spaces.optimizers(["sgd", "adamw", "nadam", "sam"]).replace(**grid)
    model = spaces.mlp(**{k: Categorical(v) for k, v in MODEL.items()}, activation="relu")
    return optimizers | spaces.schedules(list(SCHEDULES)) | model


def _grid_configs(families: tuple[tuple[str, dict[str, tuple]], ...], model: dict[str, tuple]) -> list[dict[str, Any]]:
    """Every (optimizer family grid) x schedule x MLP configuration, those of one architecture together.

    A family named `sam.<base>` is SAM over that base optimizer's grid.
    """
    def product(prefix: str, values: dict[str, tuple]) -> list[dict[str, Any]]:
        keys = list(values)
        return [{f"{prefix}.{k}": v for k, v in zip(keys, combo, strict=True)}
                for combo in itertools.product(*(values[k] for k in keys))]

    fixed = {"sgd": {"optimizer": "sgd", "sgd.nesterov": False},
             "sam.sgd": {"optimizer": "sam", "sam.rho": 0.05, "sam.base": "sgd", "sam.sgd.nesterov": False},
             "sam.adamw": {"optimizer": "sam", "sam.rho": 0.05, "sam.base": "adamw"}}
    optimizer_parts = [{**fixed.get(prefix, {"optimizer": prefix}), **p}
                       for prefix, values in families for p in product(prefix, values)]
    names = [f"model.{k}" for k in model]
    models = [{"model": "mlp", "model.activation": "relu", **dict(zip(names, combo, strict=True))}
              for combo in itertools.product(*model.values())]
    configs = [{**o, "schedule": s, **m} for m in models for o in optimizer_parts for s in SCHEDULES]
    configs.sort(key=lambda c: (tuple(c[k] for k in sorted(c) if k.startswith("model")), c["optimizer"] == "sam"))
    return configs


def mnist1d_mlp_configs() -> list[dict[str, Any]]:
    """Every configuration of the grid, those of one architecture (and vectorised optimizer) together."""
    return _grid_configs((("sgd", SGD), ("adamw", ADAM), ("nadam", ADAM), ("sam.sgd", SGD), ("sam.adamw", ADAM)),
                         MODEL)


CELL_GENOTYPES = 320  # of the 5^6 = 15,625: a uniform sample without replacement (seeded)
CELL_FIXED = {"optimizer": "adamw", "adamw.lr": 3e-3, "adamw.weight_decay": 1e-4, "adamw.beta1": 0.9,
              "schedule": "cosine", "model": "cells", "model.dim": 1, "model.channels": 16,
              "model.cells_per_stage": 1}


def mnist1d_cells_space() -> spaces.Space:
    """The 1-D NAS-Bench-201 cell (6 edges x 5 operations) with a fixed AdamW recipe."""
    fixed = {k: Fixed(v) for k, v in CELL_FIXED.items() if not k.startswith("model")}
    return spaces.Space(**fixed) | spaces.cells(dim=1, channels=16, cells_per_stage=1)


def mnist1d_cells_configs() -> list[dict[str, Any]]:
    """`CELL_GENOTYPES` genotypes drawn uniformly without replacement (seed 0), in a fixed order."""
    genotypes = list(all_genotypes())
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(genotypes), CELL_GENOTYPES, replace=False))
    return [{**CELL_FIXED, **genotypes[i].to_config()} for i in picked]


DIGITS_SGD = {"lr": LR_SGD, "momentum": (0.5, 0.9), "weight_decay": (1e-5, 1e-3)}
DIGITS_MODEL = {"width": (32, 128), "depth": (1, 2), "dropout": (0.0, 0.3)}


def digits_mlp_space() -> spaces.Space:
    """scikit-learn digits: SGD, AdamW or NAdam with their grids, two schedules, 8 MLPs (1,152 configurations)."""
    grid: dict[str, Any] = {"sgd.nesterov": Fixed(False)}
    for prefix, values in (("sgd", DIGITS_SGD), ("adamw", ADAM), ("nadam", ADAM)):
        grid.update({f"{prefix}.{k}": Categorical(v) for k, v in values.items()})
    optimizers = spaces.optimizers(["sgd", "adamw", "nadam"]).replace(**grid)
    model = spaces.mlp(**{k: Categorical(v) for k, v in DIGITS_MODEL.items()}, activation="relu")
    return optimizers | spaces.schedules(list(SCHEDULES)) | model


def digits_mlp_configs() -> list[dict[str, Any]]:
    """Every configuration of the digits grid, those of one architecture together."""
    return _grid_configs((("sgd", DIGITS_SGD), ("adamw", ADAM), ("nadam", ADAM)), DIGITS_MODEL)


CHAR_LM_CHARS, CHAR_LM_BLOCK = 80_000, 64
CHAR_LM_OPTIMIZERS = {
    "adamw": {"lr": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "beta1": (0.8, 0.9), "weight_decay": (0.01,)},
    "lion": {"lr": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3), "beta1": (0.8, 0.9), "weight_decay": (0.1,)},
    "sgd": {"lr": (0.01, 0.03, 0.1, 0.3, 1.0), "momentum": (0.5, 0.9), "weight_decay": (1e-5,), "nesterov": (False,)},
}
CHAR_LM_MODEL = {"width": (64, 128), "depth": (1, 2), "heads": (2,), "dropout": (0.0, 0.2)}
CHAR_LM_WARMUP = 0.05


def _char_lm() -> Any:
    """`examples/char_lm.py` (importing it registers the `char_transformer` family).

    The examples folder goes first on the path (worker processes inherit it), ahead of this folder's
    `char_lm.py` benchmark, so the workload's recipe (`char_lm:workload`) names the example.
    """
    examples = Path(__file__).resolve().parent.parent / "examples"
    if sys.path[0] != str(examples):
        sys.path.insert(0, str(examples))
    module = sys.modules.get("char_lm")
    if module is None or Path(getattr(module, "__file__", "") or "").parent != examples:
        spec = importlib.util.spec_from_file_location("char_lm", examples / "char_lm.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["char_lm"] = module
        spec.loader.exec_module(module)
    module.register()  # again, should a caller have reset the model registry since the import
    return module


def _categorical_or_fixed(values: tuple) -> Any:
    return Fixed(values[0]) if len(values) == 1 else Categorical(values)


def char_lm_space() -> spaces.Space:
    """The char_lm grid as a tunelab space: the example's space with every range cut to the grid's values."""
    _char_lm()
    grid = {f"{o}.{k}": _categorical_or_fixed(v) for o, values in CHAR_LM_OPTIMIZERS.items() for k, v in values.items()}
    optimizers = spaces.optimizers(list(CHAR_LM_OPTIMIZERS)).replace(**grid)
    schedule = spaces.schedules(["warmup_cosine"]).replace(**{"warmup_cosine.warmup": Fixed(CHAR_LM_WARMUP)})
    model = spaces.model_space("char_transformer", **{k: _categorical_or_fixed(v) for k, v in CHAR_LM_MODEL.items()})
    return optimizers | schedule | model


def char_lm_configs() -> list[dict[str, Any]]:
    """Every configuration of the char_lm grid, the small networks first."""
    optimizer_parts = [{"optimizer": o, **{f"{o}.{k}": v for k, v in zip(values, combo, strict=True)}}
                       for o, values in CHAR_LM_OPTIMIZERS.items() for combo in itertools.product(*values.values())]
    models = [{"model": "char_transformer", **{f"model.{k}": v for k, v in zip(CHAR_LM_MODEL, combo, strict=True)}}
              for combo in itertools.product(*CHAR_LM_MODEL.values())]
    return [{**o, "schedule": "warmup_cosine", "warmup_cosine.warmup": CHAR_LM_WARMUP, **m}
            for m in models for o in optimizer_parts]


def char_lm_workload() -> Any:
    """The example's workload at the table's size."""
    return _char_lm().workload(CHAR_LM_CHARS, CHAR_LM_BLOCK)


TABLES = {
    "mnist1d_mlp": (mnist1d_mlp_space, mnist1d_mlp_configs, trainers.workloads.mnist1d, 20),
    "mnist1d_cells": (mnist1d_cells_space, mnist1d_cells_configs, trainers.workloads.mnist1d, 10),
    "digits_mlp": (digits_mlp_space, digits_mlp_configs, trainers.workloads.digits, 20),
    "char_lm": (char_lm_space, char_lm_configs, char_lm_workload, 20),
}
SEEDS_CONFIGS_OF = {"mnist1d_cells": 3}
TRUST = {"char_lm": ["char_lm"]}  # its own recording database names the example's workload factory


def _key(config: dict[str, Any], seed: int) -> str:
    return json.dumps([config, seed], sort_keys=True)


def _recorded(table: str) -> dict[str, Curve]:
    """The rows of the committed table file (the durable part of a recording), by configuration and seed."""
    path = FOLDER / f"{table}.json.gz"
    if not path.exists():
        return {}
    with gzip.open(path, "rt") as f:
        first = json.loads(f.readline())
    if "tunelab_table" in first:
        return {_key(c.config, c.seed): c for c in ReplayTable.load(path).curves}
    with gzip.open(path, "rt") as f:  # the first rows were written before tables had a header
        rows = [json.loads(line) for line in f if line.strip()]
    return {_key(r["config"], r["seed"]): Curve.from_json(r) for r in rows}


def _queue(table: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Every (configuration, seed) of the table, in recording order: the grid on seed 0, then a few on seeds 1, 2."""
    configs = TABLES[table][1]()
    rng = np.random.default_rng(0)
    n = SEEDS_CONFIGS_OF.get(table, SEEDS_CONFIGS)
    again = [configs[i] for i in sorted(rng.choice(len(configs), n, replace=False))]
    return configs + [c for c in again for _ in (1, 2)], [0] * len(configs) + [s for _ in again for s in (1, 2)]


def _study(table: str, create: bool) -> studies.Study | None:
    """The recording study: the one in this folder's database, or a new one of what the table file lacks."""
    space_fn, _, workload_fn, epochs = TABLES[table]
    db = FOLDER / f"{table}.db"
    url = f"sqlite:///{db}"
    if db.exists() or not create:
        return studies.load(table, url, trust=TRUST.get(table, [])) if db.exists() else None
    done = _recorded(table)
    todo = [(c, s) for c, s in zip(*_queue(table), strict=True) if _key(c, s) not in done]
    if not todo:
        return None
    trainer = trainers.Trainer(workload_fn(), epochs=epochs, seed=0)
    strategy = search.Enqueue([c for c, _ in todo], seeds=[s for _, s in todo])
    return studies.create(table, url, space=space_fn(), trainer=trainer, strategy=strategy)


def record(table: str, workers: int, population: int) -> None:
    """Train what the table lacks (continuing this folder's recording study if there is one), then export."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    study = _study(table, create=True)
    t0 = time.time()
    try:
        if study is not None:
            study.optimize(trials=len(study.strategy.configs), n_workers=workers, population=population,
                           keep_checkpoints="none", checkpoint_seconds=120)
    finally:
        export(table, time.time() - t0, f"python benchmarks/record_tables.py record {table} --workers {workers} "
                                        f"--population {population} --threads {torch.get_num_threads()}")


def export(table: str, seconds: float = 0.0, command: str | None = None) -> Path:
    """Merge the recording study's full-length curves into the table file; update its manifest.

    The table file is what is committed: a recording that stops (or a machine that is lost) continues
    from it, because `record` only queues the configurations it lacks.
    """
    space_fn, _, workload_fn, epochs = TABLES[table]
    rows = _recorded(table)
    study = _study(table, create=False)
    if study is not None:
        rows.update({_key(c.config, c.seed): c for c in studies.tables.study_curves(study)})
    trainer = trainers.Trainer(workload_fn(), epochs=epochs, seed=0)
    w = trainer.workload
    header = TableHeader(
        name=table, space=json.loads(space_fn().to_json()), metric=w.metric, direction=w.direction, epochs=epochs,
        workload={"name": w.name, "task": w.task, "input_shape": list(w.input_shape), "n_outputs": w.n_outputs,
                  "batch_size": trainer.batch_size, "steps_per_epoch": trainer.steps_per_epoch(trainer.batch_size)},
        notes=f"recorded by benchmarks/record_tables.py ({TABLES[table][1].__doc__.strip()})")
    out = ReplayTable(header, list(rows.values())).write(FOLDER / f"{table}.json.gz")
    manifest = FOLDER / f"{table}.manifest.json"
    old = json.loads(manifest.read_text()) if manifest.exists() else {"wall_s": 0.0, "commands": []}
    total = len(_queue(table)[0])
    manifest.write_text(json.dumps({
        "table": table, "rows": len(rows), "of": total, "complete": len(rows) == total,
        "diverged": sum(c.status == "diverged" for c in rows.values()),
        "seeds": {str(seed): sum(c.seed == seed for c in rows.values())
                  for seed in sorted({c.seed for c in rows.values()})},
        "wall_s": old["wall_s"] + seconds, "commands": old["commands"] + ([command] if command else []),
        "notes": old.get("notes", []),
        "machine": platform.platform(), "threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__,
        "packages": [p for p in subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True,
                                               text=True).stdout.splitlines() if "==" in p],
    }, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "export"))
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process (1 leaves a core free: two processes that each use "
                             "every core slow each other down many times over)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.action == "record":
        record(args.table, args.workers, args.population)
    else:
        print(export(args.table))


if __name__ == "__main__":
    main()
