"""A hostile study database: whatever is stored, tunelab answers with success or a typed error.

Property-based: `hypothesis` draws corruptions of a real study's database (stored attributes,
user attributes, intermediate values, specs, the driver lock, trial rows, parameters and
checkpoint files) and `hostile_runner.py` runs every CLI command that reads a study (`list`,
`show`, `report`, `compare --report-only`, `resume`) and `studies.load(..., read_only=True).trials`
on the result, in one subprocess per example, under an address-space limit and a time limit per
command (and `TUNELAB_LOCK_WAIT` for the study lock). The assertion: each command succeeds or
fails with a typed tunelab error (exit code 2 with "tunelab: error:", or a `TunelabError` from
`load`); never a raw exception (nor one `tunelab list` shows for a study it cannot read), a
traceback, a hang, a blown memory limit, an import of code the database names, a file written
outside the example's folder (through a symlink too), or a megabyte of output echoing a stored value.

The default run draws a handful of examples; `pytest -m slow` draws many, family by family
(`TUNELAB_HOSTILE_EXAMPLES` sets how many per family; `TUNELAB_HOSTILE_LOG=path.jsonl` appends
every example's corruptions and outcome to a file, for triage).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import small_space
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tunelab import search, studies

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "hostile_runner.py"
EVIL = "evilpkg_hostile"
NAME = "hostile"
MARKER = "tunelab-study.json"  # what studies.artifacts calls the marker of a study's artifact folder
ADDRESS_SPACE = 3 << 30  # a normal run peaks at about 1.3 GiB of address space (torch, OMP_NUM_THREADS=1)
SECONDS = {"default": 30, "import": 60, "report": 60, "resume": 60}  # per command; a normal run takes < 5 s each
LOCK_WAIT_S = 10  # TUNELAB_LOCK_WAIT: how long resume waits for a study lock that another driver holds
MAX_OUTPUT = 200_000  # characters one command may print (an error echoing a 1 MB stored value floods a terminal)
DEADLINE_S = 240  # the whole child, should its own per-command watchdog fail
TEMPLATE_EPOCHS = 9  # what the template study trains (ASHA: 3 complete trials of 2 epochs, 3 paused after 1)
N_TRIALS = 6
RESUME = ["--epochs", str(TEMPLATE_EPOCHS + 1)]  # resume trains one epoch more (or refuses, with a typed error)
SLOW_EXAMPLES = int(os.environ.get("TUNELAB_HOSTILE_EXAMPLES", "25"))
LOG = os.environ.get("TUNELAB_HOSTILE_LOG")

EVIL_MODULE = """
import os, pathlib
pathlib.Path(os.environ["HOSTILE_MARKER"]).write_text("imported")

def _ran(*args, **kwargs):
    pathlib.Path(os.environ["HOSTILE_MARKER"]).write_text("called")

workload = system = Routine = Strat = Sampler = _ran
"""

# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Deep:
    """JSON nested `depth` levels deep (`[[[...]]]` or `{"a": {"a": ...}}`)."""

    depth: int
    kind: str = "list"

    def render(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "]" * self.depth
        return '{"a": ' * self.depth + "0" + "}" * self.depth


@dataclass(frozen=True)
class Long:
    """A JSON string of `n` characters."""

    n: int

    def render(self) -> str:
        return json.dumps("x" * self.n)


@dataclass(frozen=True)
class Raw:
    """Text stored as is (not valid JSON)."""

    text: str

    def render(self) -> str:
        return self.text


class Ctx:
    """What placeholders in drawn values stand for in one example.

    `{SENTINEL}`: the folder around the example's folder; `{HOST}`: this host's name; `{CKPT1}`:
    the checkpoint name trial 1 stores (another trial's file, for the others).
    """

    def __init__(self, sentinel: Path, checkpoints: dict[int, str]) -> None:
        self.sentinel = sentinel
        self.checkpoints = checkpoints

    def sub(self, value):
        if isinstance(value, str):
            return (value.replace("{SENTINEL}", str(self.sentinel)).replace("{HOST}", socket.gethostname())
                    .replace("{CKPT1}", self.checkpoints.get(1, "tunelab-trial-2.pt")))
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        if isinstance(value, dict):
            return {self.sub(k): self.sub(v) for k, v in value.items()}
        return value

    def json(self, value) -> str:
        if isinstance(value, (Deep, Long, Raw)):
            return value.render()
        return json.dumps(self.sub(value))  # NaN and Infinity as Python's json (and Optuna's reader) spell them


NAN, INF = float("nan"), float("inf")
SCALARS = [10**9, -1, "many", NAN, INF, -INF, 10**18, 0, 2**64, -(10**18), 1e308, 0.5, True, None, "", "nan",
           "../../etc/passwd", "{SENTINEL}/outside.pt", "/tmp/x", f"{EVIL}:workload", "os:system",
           "\u202e\x00\ud7ff", "{CKPT1}", "tunelab-trial-999.pt", "darts", "self_tuning",
           "{HOST}:1:cafe0001", "otherhost.example:4242:cafe0001", "paused", "running", "interrupt"]
CONTAINERS = [[], {}, [1, 2, 3], {"evil": 1}, {"rung": 10**9}, [NAN], Deep(100_000), Deep(100_000, "dict"),
              Long(1_000_000), Raw("{"), Raw("")]
hostile = st.one_of(st.sampled_from(SCALARS), st.sampled_from(CONTAINERS))

# ---------------------------------------------------------------------------------------------- corruptions
# Each corruption is a plain tuple (so a falsifying example reads as what was done to the database).

STUDY_PATHS = [
    ("tunelab:strategy", ("args",)), ("tunelab:strategy", ("args", "eta")),
    ("tunelab:strategy", ("args", "min_epochs")), ("tunelab:strategy", ("args", "seed")),
    ("tunelab:strategy", ("name",)), ("tunelab:strategy", ()),
    ("tunelab:trainer", ("epochs",)), ("tunelab:trainer", ("batch_size",)), ("tunelab:trainer", ("seed",)),
    ("tunelab:trainer", ("compile",)), ("tunelab:trainer", ("metric",)), ("tunelab:trainer", ("workload",)),
    ("tunelab:trainer", ("workload", "kwargs")), ("tunelab:trainer", ("workload", "kwargs", "n_train")),
    ("tunelab:trainer", ("workload", "kwargs", "max_epochs")),
    ("tunelab:trainer", ("workload", "kwargs", "batch_size")), ("tunelab:trainer", ("workload", "kwargs", "n_val")),
    ("tunelab:trainer", ("workload", "factory")), ("tunelab:trainer", ("workload_name",)),
    ("tunelab:trainer", ("replay",)), ("tunelab:trainer", ("data",)), ("tunelab:trainer", ()),
    ("tunelab:space", ()), ("tunelab:space", ("params",)), ("tunelab:space", ("tunelab_space",)),
    ("tunelab:space", ("params", 0)), ("tunelab:space", ("params", 0, "param", "choices")),
    ("tunelab:space", ("params", 4, "param", "high")), ("tunelab:space", ("params", 4, "param", "low")),
    ("tunelab:space", ("params", 4, "param", "type")), ("tunelab:space", ("params", 10, "param", "high")),
    ("tunelab:space", ("params", 0, "name")), ("tunelab:space", ("params", 5, "when")),
    ("tunelab:seed", ()), ("tunelab:budget", ()), ("tunelab:budget", ("epochs",)), ("tunelab:budget", ("trials",)),
    ("tunelab:budget", ("seconds",)), ("tunelab:seconds_spent", ()), ("tunelab:version", ()), ("tunelab:uid", ()),
    ("tunelab:lock_ttl", ()),
]
STUDY_KEYS = sorted({k for k, _ in STUDY_PATHS})
STRATEGY_ARGS = {name: sorted(search.strategies.get(name)(**({"configs": [{}]} if name == "enqueue" else {}))
                              .spec()["args"]) for name in search.strategies.names()}
FACTORIES = [f"{EVIL}:workload", "os:system", "builtins:eval", "subprocess:getoutput", "trainers.workloads:digits",
             "trainers.workloads:mnist1d_published", "trainers.workloads:Workload", "trainers.workloads:nope",
             "not a path"]
FACTORY_KWARGS = [{}, {"command": "touch {SENTINEL}/shell-ran"}, {"n_train": 10**9}, {"max_epochs": 10**9},
                  {"batch_size": -1}, {"n_val": 10**9}, {"n_train": "many"}]
TRIAL_USER = ["metrics", "epochs", "seconds", "grad_evals", "error", "strategy", "n_params", "flops", "best_value",
              "test_metric", "seed", "device", "darts", "self_tuning"]
METRIC_PATHS = [("metrics", "train_loss"), ("metrics", "seconds"), ("metrics", "grad_evals"),
                ("metrics", "val_metric"), ("metrics", "lr")]
TRIAL_SYSTEM = ["tunelab:state", "tunelab:checkpoint", "tunelab:lease", "tunelab:owner", "tunelab:target_epochs",
                "tunelab:proposal", "tunelab:routine", "tunelab:routine_options", "tunelab:paused_by",
                "tunelab:retries", "tunelab:retry_of", "tunelab:superseded", "tunelab:run_seed", "artifacts"]
TRIALS = st.integers(0, N_TRIALS - 1)  # a trial of the template, by number (its trial id is number + 1)
LOCKS = [
    {"owner": "otherhost.example:4242:cafe0001", "until": 1e18, "token": "t", "seq": 3},
    {"owner": "{HOST}:1:cafe0001", "until": 1e18, "token": "t", "seq": 3},
    {"owner": "otherhost.example:4242:cafe0001", "until": NAN, "seq": 3},
    {"owner": "otherhost.example:4242:cafe0001", "until": INF, "seq": 3},
    {"owner": "{HOST}:99999999999999999999:cafe0001", "until": 1e18, "seq": 3},
    {"owner": "x", "until": "soon"}, {"owner": "x", "until": 0, "seq": "many"}, {"owner": ["a"], "until": 0},
    {"owner": None, "seq": 10**18}, {"owner": None, "seq": NAN}, "held", 5, [1], Deep(100_000), Raw("{"), Raw(""),
]
DISTRIBUTIONS = [
    '{"name": "CategoricalDistribution", "attributes": {"choices": []}}',
    '{"name": "FloatDistribution", "attributes": {"low": 1.0, "high": 0.0, "log": false, "step": null}}',
    '{"name": "IntDistribution", "attributes": {"low": 0, "high": 10, "log": false, "step": 1}}',
    '{"name": "CategoricalDistribution", "attributes": {"choices": ["adamw"]}}',
    '{"name": "EvilDistribution", "attributes": {}}', "not json", Deep(100_000).render(),
]


def op(name, *parts):
    """A corruption: the tuple `(name, *drawn parts)`."""
    return st.tuples(st.just(name), *parts)


some = st.sampled_from
study_attr = op("study_attr", some(STUDY_PATHS), hostile)
study_attr_delete = op("study_attr_delete", some(STUDY_KEYS))
factory = op("factory", some(FACTORIES), some(FACTORY_KWARGS))
strategy_spec = some(sorted(STRATEGY_ARGS)).flatmap(  # one or two arguments: Evolution(population=2, sample=10**9)
    lambda name: op("strategy_spec", st.just(name),
                    st.dictionaries(some(STRATEGY_ARGS[name]), st.one_of(hostile, some([1, 2, 4])), min_size=1,
                                    max_size=2)))
trial_user = op("trial_attr", st.just("user"), TRIALS, some([(k,) for k in TRIAL_USER] + METRIC_PATHS), hostile)
trial_system = op("trial_attr", st.just("system"), TRIALS, some([(k,) for k in TRIAL_SYSTEM]), hostile)
trial_attr_delete = op("trial_attr_delete", some(["user", "system"]), TRIALS, some(TRIAL_USER[:4] + TRIAL_SYSTEM[:6]))
intermediate = op("intermediate", TRIALS, some([10**9, -1, 2**62, -(10**9), 0, 3, 1000, 10**6]),
                  some([0.5, NAN, INF, -INF, 1e308, "BOGUS"]))
lock = op("lock", some(LOCKS))
param = st.one_of(
    op("param", TRIALS, st.integers(0, 9), st.just("distribution_json"), some(DISTRIBUTIONS)),
    op("param", TRIALS, st.integers(0, 9), st.just("param_value"), some([1e18, -1.0, 2.5, NAN, 1e308, 7.0])),
    op("param", TRIALS, st.integers(0, 9), st.just("param_name"), some(["zzz_unknown", "", "model.width", "x" * 300])),
    op("param_delete_all", TRIALS),
)
trial_row = st.one_of(
    op("trial_row", TRIALS, st.just("number"), some([10**9, -1, 7, 0, 2**62, None])),
    op("trial_row", TRIALS, st.just("state"), some(["COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED", "BOGUS"])),
    op("trial_row", TRIALS, some(["datetime_start", "datetime_complete"]),
       some(["garbage", None, "9999-12-31 23:59:59.999999", "1970-01-01 00:00:00"])),
    op("trial_value", TRIALS, some([NAN, INF, -INF, 1e308, None, "BOGUS"])),
    op("direction", some(["MINIMIZE", "NOT_SET", "BOGUS", "second objective"])),
    op("study_name", some(["../../evil", "", "a\nb", "x" * 5000, f"{EVIL}:workload"])),
    op("trial_delete", TRIALS),
)
artifact = st.one_of(
    op("artifact", TRIALS, some(["delete", "garbage", "evil_pickle", "empty", "symlink_outside", "directory"])),
    op("artifacts_dir", some(["symlink_outside", "file"])),
    op("trial_attr", st.just("system"), TRIALS, st.just(("tunelab:checkpoint",)),
       some(["../outside.pt", "{SENTINEL}/outside.pt", "{CKPT1}", "tunelab-trial-9.pt", "", None, 5, []])),
    op("artifact_folder", st.just("symlink_outside")),
    op("marker", some(["garbage", "deep", "other_uid", "database_root", "huge", "directory", "delete"])),
)

FAMILIES = {
    "study_attrs": st.one_of(study_attr, study_attr_delete, factory),
    "strategy": strategy_spec,
    "trial_attrs": st.one_of(trial_user, trial_system, trial_attr_delete),
    "curves": intermediate,
    "lock": lock,
    "rows": st.one_of(param, trial_row),
    "artifacts": artifact,
}
FAMILIES["mixed"] = st.one_of(*FAMILIES.values())


def corruptions(family: str):
    return st.lists(FAMILIES[family], min_size=1, max_size=3)


# ---------------------------------------------------------------------------------------------- applying them


def _set_path(doc, path, value):
    """`doc` with `value` at `path` (missing or non-container steps are made dicts)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, list) and isinstance(head, int):
        if head < len(doc):
            doc[head] = _set_path(doc[head], rest, value)
            return doc
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    doc[str(head)] = _set_path(doc.get(str(head)), rest, value)
    return doc


def _load_json(text):
    try:
        return json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None


def _put_attr(conn, table, owner_col, owner, key, text):
    id_col = table[:-len("s")] + "_id"  # study_user_attributes -> study_user_attribute_id
    row = conn.execute(f"SELECT {id_col} FROM {table} WHERE {owner_col}=? AND key=?", (owner, key)).fetchone()
    if row:
        conn.execute(f"UPDATE {table} SET value_json=? WHERE {id_col}=?", (text, row[0]))
    else:
        conn.execute(f"INSERT INTO {table} ({owner_col}, key, value_json) VALUES (?, ?, ?)", (owner, key, text))


def _set_nested(conn, ctx, table, owner_col, owner, key, path, value):
    if path and not isinstance(value, (Deep, Long, Raw)):
        old = conn.execute(f"SELECT value_json FROM {table} WHERE {owner_col}=? AND key=?", (owner, key)).fetchone()
        doc = _set_path(_load_json(old[0]) if old else None, path, ctx.sub(value))
        text = json.dumps(doc)
    elif path:  # a text that is not JSON nested inside a JSON document: splice it in
        old = conn.execute(f"SELECT value_json FROM {table} WHERE {owner_col}=? AND key=?", (owner, key)).fetchone()
        doc = _set_path(_load_json(old[0]) if old else None, path, "@@SPLICE@@")
        text = json.dumps(doc).replace('"@@SPLICE@@"', value.render())
    else:
        text = ctx.json(value)
    _put_attr(conn, table, owner_col, owner, key, text)


def _float_column(value):
    """(stored float, Optuna's type name) of a value for trial_values / trial_intermediate_values."""
    if value == "BOGUS":
        return 0.5, "BOGUS"
    if value != value:
        return None, "NAN"
    if value == INF:
        return None, "INF_POS"
    if value == -INF:
        return None, "INF_NEG"
    return value, "FINITE"


def apply(db: Path, artifacts: Path, ctx: Ctx, ops) -> None:
    """Apply the corruptions `ops` to the copied database `db` and its artifact folder."""
    conn = sqlite3.connect(db)
    study_id = conn.execute("SELECT study_id FROM studies").fetchone()[0]
    for op in ops:
        kind = op[0]
        try:
            if kind == "study_attr":
                _, (key, path), value = op
                _set_nested(conn, ctx, "study_user_attributes", "study_id", study_id, key, path, value)
            elif kind == "study_attr_delete":
                conn.execute("DELETE FROM study_user_attributes WHERE study_id=? AND key=?", (study_id, op[1]))
            elif kind == "factory":
                _, path, kwargs = op
                _set_nested(conn, ctx, "study_user_attributes", "study_id", study_id, "tunelab:trainer", ("workload",),
                            {"name": "x", "factory": path, "kwargs": kwargs})
            elif kind == "strategy_spec":
                _, name, args = op
                spliced = ", ".join(f"{json.dumps(k)}: {ctx.json(v)}" for k, v in args.items())
                text = f'{{"name": {json.dumps(name)}, "args": {{{spliced}}}}}'
                _put_attr(conn, "study_user_attributes", "study_id", study_id, "tunelab:strategy", text)
            elif kind == "trial_attr":
                _, which, k, (key, *path), value = op
                key = f"artifacts:{ctx.checkpoints.get(k)}" if key == "artifacts" else key
                _set_nested(conn, ctx, f"trial_{which}_attributes", "trial_id", k + 1, key, path, value)
            elif kind == "trial_attr_delete":
                _, which, k, key = op
                conn.execute(f"DELETE FROM trial_{which}_attributes WHERE trial_id=? AND key=?", (k + 1, key))
            elif kind == "intermediate":
                _, k, step, value = op
                stored, kind_name = _float_column(value)
                conn.execute("DELETE FROM trial_intermediate_values WHERE trial_id=? AND step=?", (k + 1, step))
                conn.execute("INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, "
                             "intermediate_value_type) VALUES (?, ?, ?, ?)", (k + 1, step, stored, kind_name))
            elif kind == "lock":
                _put_attr(conn, "study_system_attributes", "study_id", study_id, "tunelab:driver_lock",
                          ctx.json(op[1]))
            elif kind == "param":
                _, k, i, column, value = op
                rows = conn.execute("SELECT param_id FROM trial_params WHERE trial_id=? ORDER BY param_id",
                                    (k + 1,)).fetchall()
                if rows:
                    pid = rows[i % len(rows)][0]
                    stored = None if value != value else value
                    conn.execute(f"UPDATE trial_params SET {column}=? WHERE param_id=?", (stored, pid))
            elif kind == "param_delete_all":
                conn.execute("DELETE FROM trial_params WHERE trial_id=?", (op[1] + 1,))
            elif kind == "trial_row":
                _, k, column, value = op
                conn.execute(f"UPDATE trials SET {column}=? WHERE trial_id=?", (value, k + 1))
            elif kind == "trial_value":
                _, k, value = op
                conn.execute("DELETE FROM trial_values WHERE trial_id=?", (k + 1,))
                if value is not None:
                    stored, kind_name = _float_column(value)
                    conn.execute("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES "
                                 "(?, 0, ?, ?)", (k + 1, stored, kind_name))
            elif kind == "direction":
                if op[1] == "second objective":
                    conn.execute("INSERT INTO study_directions (direction, study_id, objective) VALUES "
                                 "('MAXIMIZE', ?, 1)", (study_id,))
                else:
                    conn.execute("UPDATE study_directions SET direction=? WHERE study_id=?", (op[1], study_id))
            elif kind == "study_name":
                conn.execute("UPDATE studies SET study_name=? WHERE study_id=?", (op[1], study_id))
            elif kind == "trial_delete":
                for table in ("trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes",
                              "trial_intermediate_values", "trials"):
                    conn.execute(f"DELETE FROM {table} WHERE trial_id=?", (op[1] + 1,))
            elif kind == "artifact" and op[1] in ctx.checkpoints and _real_dir(artifacts):
                path = artifacts / ctx.checkpoints[op[1]]
                if _real_dir(path.parent):
                    _corrupt_file(path, op[2], ctx)
            elif kind == "artifact_folder" and ctx.checkpoints and _real_dir(artifacts):
                folder = (artifacts / min(ctx.checkpoints.values())).parent
                if folder != artifacts and _real_dir(folder):
                    shutil.rmtree(folder)
                    folder.symlink_to(ctx.sentinel / "outside_dir", target_is_directory=True)
            elif kind == "marker" and _real_dir(artifacts):
                for marker in artifacts.rglob(MARKER):
                    _corrupt_marker(marker, op[1])
            elif kind == "artifacts_dir":
                if artifacts.is_dir() and not artifacts.is_symlink():
                    shutil.rmtree(artifacts)
                elif artifacts.exists() or artifacts.is_symlink():
                    artifacts.unlink()
                if op[1] == "symlink_outside":
                    artifacts.symlink_to(ctx.sentinel / "outside_dir", target_is_directory=True)
                else:
                    artifacts.write_text("not a folder")
            elif kind not in ("artifact", "artifact_folder", "marker"):
                raise AssertionError(f"unknown corruption {op!r}")
        except sqlite3.IntegrityError:
            pass  # a unique or NOT NULL constraint of the schema refused it: that corruption cannot be stored
        conn.commit()
    conn.close()


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _corrupt_marker(path: Path, how: str) -> None:
    """Damage the marker that says which study and database an artifact folder belongs to."""
    doc = _load_json(path.read_text()) if path.is_file() else None
    doc = doc if isinstance(doc, dict) else {}
    path.unlink()
    if how == "garbage":
        path.write_bytes(b"\xff{" + os.urandom(32))
    elif how == "deep":
        path.write_text(Deep(100_000).render())
    elif how == "other_uid":
        path.write_text(json.dumps({**doc, "uid": "0" * 32}))
    elif how == "database_root":  # a database that exists: the study would be a copy of it
        path.write_text(json.dumps({**doc, "database": "/"}))
    elif how == "huge":
        path.write_text(json.dumps({**doc, "pad": "x" * 10_000_000}))
    elif how == "directory":
        path.mkdir()


def _corrupt_file(path: Path, how: str, ctx: Ctx) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if how == "garbage":
        path.write_bytes(b"PK\x03\x04" + os.urandom(64))
    elif how == "evil_pickle":  # unpickling it would import evilpkg_hostile and call evilpkg_hostile.workload()
        path.write_bytes(b"c" + EVIL.encode() + b"\nworkload\n(tR.")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "symlink_outside":
        path.symlink_to(ctx.sentinel / "outside.pt")
    elif how == "directory":
        path.mkdir()
        (path / "x").write_text("x")


# ---------------------------------------------------------------------------------------------- the example


@pytest.fixture(scope="module")
def template(tmp_path_factory, small_trainer):
    """A real study: ASHA's complete trials (2 epochs) and paused ones (1 epoch), with checkpoints and curves.

    Built in one folder and moved to another, so that each example's copy is a moved database
    (which takes its artifact folder over), not a copy of one that still exists.
    """
    base = tmp_path_factory.mktemp("hostile")
    build = base / "build"
    build.mkdir()
    url = f"sqlite:///{build / 'study.db'}"
    study = studies.create(NAME, url, space=small_space(), trainer=small_trainer,
                           strategy=search.ASHA(seed=0, eta=2, min_epochs=1))
    study.optimize(epochs=TEMPLATE_EPOCHS, progress=False)
    states = [t.state for t in study.trials]
    assert len(states) == N_TRIALS and states.count("complete") >= 2 and "paused" in states, states
    del study
    source, conn = sqlite3.connect(build / "study.db"), sqlite3.connect(base / "study.db")
    source.backup(conn)  # with what the write-ahead log holds
    source.close()
    conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to copy
    rows = conn.execute("SELECT t.number, t.trial_id, a.value_json FROM trials t JOIN trial_system_attributes a "
                        "ON a.trial_id = t.trial_id WHERE a.key = 'tunelab:checkpoint'").fetchall()
    conn.close()
    assert all(tid == number + 1 for number, tid, _ in rows)  # corruptions name trial k by trial id k + 1
    checkpoints = {number: json.loads(text) for number, _, text in rows}
    for leftover in build.glob("study.db*"):
        leftover.unlink()
    shutil.move(build / "study.artifacts", base / "study.artifacts")
    assert all((base / "study.artifacts" / c).is_file() for c in checkpoints.values())
    evil = base / "evil"
    evil.mkdir()
    (evil / f"{EVIL}.py").write_text(EVIL_MODULE)
    mpl = base / "mplconfig"  # shared by the examples (matplotlib builds its font cache once)
    mpl.mkdir()
    return Template(db=base / "study.db", artifacts=base / "study.artifacts", evil=evil, mpl=mpl,
                    checkpoints=checkpoints)


class Template:
    """The template study's files (shown as one short line in a falsifying example)."""

    def __init__(self, *, db: Path, artifacts: Path, evil: Path, mpl: Path, checkpoints: dict[int, str]) -> None:
        self.db, self.artifacts, self.evil, self.mpl, self.checkpoints = db, artifacts, evil, mpl, checkpoints

    def __repr__(self) -> str:
        return f"Template({str(self.db)!r})"


class HostileFailure(AssertionError):
    """A command answered a hostile database with something other than success or a typed error."""


_KINDS: dict[str, type] = {}


def _failure_type(key: str) -> type:
    """One exception class per kind of failure, so that hypothesis reports (and shrinks) each kind on its own."""
    if key not in _KINDS:
        name = "".join(c if c.isalnum() else "_" for c in key)
        _KINDS[key] = type(f"Hostile_{name}", (HostileFailure,), {"__module__": __name__})
    return _KINDS[key]


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            with contextlib.suppress(OSError):
                s = p.lstat()
                out[str(p.relative_to(root))] = (s.st_mtime_ns, s.st_size, s.st_mode)
    return out


def run_example(template, ops) -> list[tuple[str, str]]:
    """Corrupt a copy of the template with `ops`, run every command on it in a child; return the failures."""
    failures: list[tuple[str, str]] = []  # (key, detail)
    with tempfile.TemporaryDirectory(prefix="tunelab-hostile-") as tmp:
        root = Path(tmp)
        harness, sentinel = root / "harness", root / "sentinel"
        ex, cwd, home = sentinel / "ex", sentinel / "cwd", sentinel / "home"
        for d in (harness / "tmp", ex, cwd, home, sentinel / "outside_dir"):
            d.mkdir(parents=True)
        precious = b"precious: not the study's"
        (sentinel / "outside.pt").write_bytes(precious)
        (sentinel / "outside_dir" / "keep.txt").write_bytes(precious)
        db, artifacts = ex / "study.db", ex / "study.artifacts"
        shutil.copy(template.db, db)
        shutil.copytree(template.artifacts, artifacts, symlinks=True)
        ctx = Ctx(sentinel, template.checkpoints)
        apply(db, artifacts, ctx, ops)
        marker = harness / "pwned"
        config = {"url": f"sqlite:///{db}", "report_out": str(ex / "report"), "address_space": ADDRESS_SPACE,
                  "seconds": SECONDS, "resume": RESUME, "forbidden_modules": [EVIL], "study": NAME}
        (harness / "config.json").write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "HYPOTHESIS"))}
        env.update(HOME=str(home), TMPDIR=str(harness / "tmp"), MPLCONFIGDIR=str(template.mpl), MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join([str(template.evil), *filter(None, [os.environ.get("PYTHONPATH")])]),
                   HOSTILE_MARKER=str(marker), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
                   PYTHONDONTWRITEBYTECODE="1", TUNELAB_LOCK_WAIT=str(LOCK_WAIT_S))
        before = _snapshot(sentinel, ex)
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(RUNNER), str(harness / "config.json")], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=DEADLINE_S, errors="replace")
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            rc = None
        wall = time.monotonic() - t0
        failures += _judge(stdout, stderr, rc)
        if marker.exists():
            failures.append(("import", f"{EVIL} ran: {marker.read_text()!r}"))
        after = _snapshot(sentinel, ex)
        for path in sorted(set(after) | set(before)):
            if before.get(path) != after.get(path):
                what = "created" if path not in before else "deleted" if path not in after else "modified"
                failures.append(("write outside", f"{what} {path} (outside {ex.name}/)"))
        for planted in (sentinel / "outside.pt", sentinel / "outside_dir" / "keep.txt"):
            if not planted.is_file() or planted.read_bytes() != precious:
                failures.append(("write outside", f"the planted file {planted.name} was changed or deleted"))
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"ops": repr(ops), "failures": failures, "wall": round(wall, 1)}) + "\n")
    return failures


def _judge(stdout: str, stderr: str, rc) -> list[tuple[str, str]]:
    lines = stdout.splitlines()
    begun = [line.split()[2] for line in lines if line.startswith("@@hostile begin")]
    ended = [line.split()[2] for line in lines if line.startswith("@@hostile end")]
    summary = next((json.loads(line[len("@@hostile summary "):]) for line in reversed(lines)
                    if line.startswith("@@hostile summary ")), None)
    if summary is None:
        command = begun[-1] if len(begun) > len(ended) else "runner"
        if rc is None:
            return [(f"{command}: hang", f"the child ran past {DEADLINE_S} s; stderr: {stderr[-1500:]}")]
        if "Timeout (" in stderr:
            return [(f"{command}: hang", f"ran past its {SECONDS.get(command, SECONDS['default'])} s: "
                     f"{_stack_top(stderr)}")]
        return [(f"{command}: died", f"child exit status {rc}; stderr: {stderr[-1500:]}")]
    failures = []
    for r in summary["results"]:
        command = r["command"]
        if "exception" in r:
            if r.get("tunelab_error") and command == "load":
                continue
            exc = r["exception"].rsplit(".", 1)[-1]
            kind = "memory" if exc == "MemoryError" else f"raised {exc}"
            failures.append((f"{command}: {kind}", f"{r['exception']}: {r['message'][:300]}\n"
                             f"{r['traceback'][-1500:]}"))
        elif (r["rc"] == 2 and r["typed_error"]) or r["rc"] == 0:
            pass
        else:
            failures.append((f"{command}: exit {r['rc']}", r["stderr"][-800:]))
        if r["output_chars"] > MAX_OUTPUT:
            failures.append((f"{command}: floods the terminal", f"{r['output_chars']} characters of output: "
                             f"{r['stderr'][:300] or r['stdout'][:300]}"))
        for name in r.get("untyped_errors", []):
            failures.append((f"{command}: shows raw {name}", r["stdout"][-1500:]))
        if r["traceback_printed"]:
            failures.append((f"{command}: traceback on stderr", r["stderr"][-1500:]))
    if summary["imported"]:
        failures.append(("import", f"modules imported: {summary['imported']}"))
    return failures


def _stack_top(stderr: str) -> str:
    """The innermost frames of the main thread in a faulthandler dump."""
    dump = stderr[stderr.find("Timeout ("):]
    blocks = dump.split("\n\n")
    main = next((b for b in blocks if "Current thread" in b or "most recent call first" in b), dump)
    return "\n".join(main.splitlines()[:8])


def check(template, ops) -> None:
    failures = run_example(template, ops)
    if failures:
        key = failures[0][0]
        detail = "\n".join(f"- {k}: {d}" for k, d in failures)
        raise _failure_type(key)(f"{key}\ncorruptions: {ops!r}\n{detail}")


HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
          HealthCheck.function_scoped_fixture]


@settings(max_examples=3, deadline=None, derandomize=True, database=None, suppress_health_check=HEALTH,
          phases=[Phase.explicit, Phase.generate])  # no shrinking here: a failing default run stays cheap
@given(ops=corruptions("mixed"))
def test_a_hostile_database_gets_success_or_a_typed_error(template, ops):
    check(template, ops)


@pytest.mark.slow
@pytest.mark.timeout(0)  # each child has its own deadline; shrinking takes at most 5 minutes a family
@pytest.mark.parametrize("family", list(FAMILIES))
def test_many_hostile_databases_get_success_or_a_typed_error(template, family):
    @settings(max_examples=SLOW_EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH)
    @given(ops=corruptions(family))
    def run(ops):
        check(template, ops)

    run()
