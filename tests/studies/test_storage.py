"""Studies persist in Optuna's schema: Optuna and optuna-dashboard read them; bad input is refused clearly."""

import io
import json
import sqlite3
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from conftest import small_space

from tunelab import search, spaces, studies, trainers


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def done(request, tmp_path_factory, small_trainer):
    """A finished 4-trial study in an SQLite file, and in a database on a PostgreSQL server."""
    folder = tmp_path_factory.mktemp("db")
    if request.param == "sqlite":
        path = folder / "t.db"
        url, artifacts = f"sqlite:///{path}", None
    else:
        import pg_server

        path, url = None, pg_server.new_database(request.getfixturevalue("postgres"))
        artifacts = folder / "artifacts"  # a server database keeps no files: checkpoints go where the caller says
    study = studies.create("s", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0),
                           artifacts=artifacts)
    study.optimize(trials=4, progress=False, keep_checkpoints="best")
    return study, url, path


def test_optuna_load_study_reads_params_values_and_curves(done):
    study, url, _ = done
    ost = optuna.load_study(study_name="s", storage=url)
    assert ost.direction == optuna.study.StudyDirection.MAXIMIZE
    frozen = ost.get_trials()
    assert len(frozen) == 4
    for ft, rec in zip(frozen, study.trials, strict=True):
        assert ft.state == optuna.trial.TrialState.COMPLETE
        assert ft.params == rec.config
        assert ft.value == rec.value
        assert [ft.intermediate_values[k] for k in sorted(ft.intermediate_values)] == rec.curve
        # the curve is stored once (intermediate values); `metrics` holds the other metrics per epoch
        assert set(ft.user_attrs["metrics"]) == {"train_loss", "val_loss", "lr", "seconds", "grad_evals"}
        assert all(len(v) == 2 for v in ft.user_attrs["metrics"].values())
        assert ft.user_attrs["epochs"] == 2 and ft.user_attrs["grad_evals"] == 2 * 3  # 256/100 -> 3 steps
    attrs = ost.user_attrs
    assert attrs["tunelab:strategy"] == {"name": "random", "args": {"seed": 0, "quasi": False}}
    assert attrs["tunelab:trainer"]["workload"]["factory"] == "tunelab.trainers.workloads:mnist1d"
    assert spaces.Space.from_json(json.dumps(attrs["tunelab:space"])) == small_space()
    assert attrs["tunelab:budget"]["trials"] == 4 and attrs["tunelab:version"] == studies.__version__


def test_sqlite_runs_in_wal_mode(done):
    _, _, path = done
    if path is None:
        pytest.skip("an SQLite setting")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_optuna_dashboard_reads_the_storage(done):
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    _, url, _ = done
    app = optuna_dashboard.wsgi(url)

    def get(path):
        env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, exc=None: status.append(s)))
        return status[0], json.loads(body)

    status, listing = get("/api/studies")
    assert status.startswith("200") and [s["study_name"] for s in listing["study_summaries"]] == ["s"]
    status, detail = get(f"/api/studies/{listing['study_summaries'][0]['study_id']}")
    assert status.startswith("200") and len(detail["trials"]) == 4
    assert all(len(t["intermediate_values"]) == 2 for t in detail["trials"])


def test_load_rebuilds_everything_from_the_database(done):
    study, url, _ = done
    again = studies.load("s", url, artifacts=study.artifacts)  # a server database needs its checkpoint folder
    assert again.space == study.space and again.strategy == study.strategy
    assert again.trainer.epochs == 2 and len(again.trainer.workload.train) == 256
    assert [t.value for t in again.trials] == [t.value for t in study.trials]
    assert again.best.number == max(study.trials, key=lambda t: t.value).number
    df = again.dataframe()
    assert list(df["number"]) == [0, 1, 2, 3] and "params.optimizer" in df.columns
    assert again.curves().shape == (2, 4)
    # keep_checkpoints="best": only the best complete trial keeps its final checkpoint
    kept = [t.number for t in again.trials if again.checkpoint(t.number) is not None]
    assert kept == [again.best.number]
    state = trainers.load_checkpoint(again.checkpoint(again.best.number))
    assert state["config"] == again.best.config and state["epoch"] == 2


def test_by_default_a_trial_that_ends_writes_no_final_checkpoint_and_best_writes_only_improvements(
        tmp_path, small_trainer, monkeypatch):
    from tunelab.trainers import trainer as trainer_module

    written = []
    save = trainer_module.Trainer.save
    monkeypatch.setattr(trainer_module.Trainer, "save", lambda self, run, path: (written.append(path.name),
                                                                                 save(self, run, path)))
    url = f"sqlite:///{tmp_path / 'k.db'}"
    plain = studies.create("plain", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0))
    plain.optimize(trials=4, progress=False, checkpoint_seconds=None)  # every epoch due, but none is the end
    assert all(plain.checkpoint(t.number) is None for t in plain.trials)
    assert len(written) == 4  # epoch 1 of 2 of each trial (removed at its end)
    assert not list((Path(plain.artifacts) / plain.folder).glob("trial-*.pt"))
    written.clear()
    best = studies.create("best", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0))
    best.optimize(trials=6, progress=False, keep_checkpoints="best")
    values, improved = [t.value for t in best.trials], []
    for i, v in enumerate(values):
        if i == 0 or v > max(values[:i]):
            improved.append(i)
    assert written == [f"trial-{i}.pt" for i in improved]  # only runs that beat the best so far wrote one
    assert [t.number for t in best.trials if best.checkpoint(t.number) is not None] == [best.best.number]


def test_rerunning_a_finished_study_trains_nothing(done):
    study, url, _ = done
    again = studies.load("s", url, artifacts=study.artifacts)
    again.optimize(trials=4, progress=False)
    assert len(again.trials) == 4


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite:////no/such/folder/x.db", "does not exist"),
        ("not a url", "SQLAlchemy URL"),
        ("nosuchdialect://x/y", "cannot open storage"),
    ],
)
def test_bad_storage_urls(url, match, small_trainer):
    with pytest.raises(studies.StorageError, match=match):
        studies.create("x", url, space=small_space(), trainer=small_trainer)


def test_loading_a_missing_study_lists_the_existing_ones(done):
    _, url, _ = done
    with pytest.raises(studies.StudyNotFoundError, match=r"no study named 'nope'.*\['s'\]"):
        studies.load("nope", url)


def test_same_name_with_another_space_or_strategy_is_refused(done, small_trainer):
    study, url, _ = done
    art = {"artifacts": study.artifacts}
    with pytest.raises(studies.StudyConflictError, match="different space"):
        studies.create("s", url, space=spaces.mlp(), trainer=small_trainer, strategy=search.Random(seed=0), **art)
    with pytest.raises(studies.StudyConflictError, match="different strategy"):
        studies.create("s", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=1), **art)
    with pytest.raises(studies.StudyConflictError, match="already exists"):
        studies.create("s", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0),
                       load_if_exists=False, **art)
    same = studies.create("s", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0),
                          **art)
    assert len(same.trials) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({}, "no budget"), ({"trials": -1}, "trials=-1"), ({"epochs": 2.5}, "whole number"),
     ({"seconds": float("nan")}, "seconds=nan")],
)
def test_bad_budgets(done, kwargs, match):
    study, _, _ = done
    with pytest.raises(studies.BudgetError, match=match):
        study.optimize(**kwargs, progress=False)


def test_a_space_the_workload_cannot_build_is_refused(tmp_path, small_trainer):
    with pytest.raises(studies.ConfigError, match="does not fit the workload 'mnist1d'"):
        studies.create("c", f"sqlite:///{tmp_path / 'c.db'}", space=spaces.cnn(dim=2), trainer=small_trainer)


def test_workloads_without_a_recipe_need_the_trainer_to_load(tmp_path, small_trainer):
    w = small_trainer.workload
    own = trainers.Workload.from_tensors(w.train.x, w.train.y, x_val=w.val.x, y_val=w.val.y, name="mine")
    trainer = trainers.Trainer(own, epochs=1)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    studies.create("r", url, space=small_space(), trainer=trainer).optimize(trials=1, progress=False)
    with pytest.raises(studies.WorkloadError, match="pass the trainer again"):
        studies.load("r", url)
    assert len(studies.load("r", url, trainer=trainer).trials) == 1


def test_opening_a_new_database_while_another_process_creates_its_schema_succeeds(tmp_path, monkeypatch):
    # Two processes opening a fresh SQLite file race in Optuna's create_all; the loser sees
    # "table studies already exists" (seen in CI). open_storage tries again and then finds the tables.
    import sqlalchemy

    from tunelab.studies.storage import open_storage

    url = f"sqlite:///{tmp_path / 'race.db'}"
    real = optuna.storages.RDBStorage
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # the other process wins: the schema now exists
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(url)
    assert len(calls) == 2 and storage.get_all_studies() == []
