"""Multi-objective studies: objectives declared, stored as Optuna stores them, fronts, errors, latency, resume."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch
from waiting import wait_for

from tunelab import search, spaces, studies, trainers
from tunelab.spaces import ConfigError
from tunelab.studies import StudyConflictError
from tunelab.trainers.latency import forward_latency_ms


def two_goals(config):
    """A two-objective problem whose front is the segment x in [0, 1], y = 0."""
    x, y = config["x"], config["y"]
    return {"a": x**2 + y**2, "b": (x - 1) ** 2 + y**2, "note": x * y}


def steps(config, run):
    """The same with learning curves (for MO-ASHA): values shrink towards `two_goals` over epochs."""
    goals = two_goals(config)
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        scale = 1 + 1 / epoch
        decision = run.report(a=scale * goals["a"], b=scale * goals["b"])
        run.save({"epoch": epoch})
        if decision != "continue":
            return


def forgetful(config, run):
    for _ in range(run.start_epoch, run.until_epoch):
        run.report(a=config["x"])


SPACE = spaces.Space(x=spaces.Float(-2.0, 2.0), y=spaces.Float(-2.0, 2.0))
GOALS = {"a": "minimize", "b": "minimize"}


def create(tmp_path, strategy, trainer=None, name="mo", **kw):
    trainer = trainer or trainers.Objective(two_goals, metric="a")
    return studies.create(name, f"sqlite:///{tmp_path / 'mo.db'}", space=kw.pop("space", SPACE), trainer=trainer,
                          strategy=strategy, objectives=kw.pop("objectives", GOALS), **kw)


def test_a_multi_objective_study_is_an_optuna_multi_objective_study(tmp_path):
    study = create(tmp_path, search.Random(seed=0))
    study.optimize(trials=25, progress=False)
    front = study.pareto_front
    assert front and all(t.values is not None and len(t.values) == 2 for t in front)
    for t in study.trials:  # values are the objectives; the other reported entry is a metric; value is "a"'s
        goals = two_goals(t.config)
        assert t.values == pytest.approx((goals["a"], goals["b"]))
        assert t.value == pytest.approx(goals["a"]) and t.metrics["note"] == [pytest.approx(goals["note"])]
    ostudy = optuna.load_study(study_name="mo", storage=f"sqlite:///{tmp_path / 'mo.db'}")
    assert [d.name for d in ostudy.directions] == ["MINIMIZE", "MINIMIZE"]
    assert ostudy.metric_names == ["a", "b"]
    assert sorted(t.number for t in ostudy.best_trials) == sorted(t.number for t in front)
    # read-only (as `tunelab show` opens it) gives the same front
    assert [t.number for t in studies.load("mo", f"sqlite:///{tmp_path / 'mo.db'}", read_only=True).pareto_front] == [
        t.number for t in front]


def test_hypervolume_is_the_fronts_and_grows_with_the_budget(tmp_path):
    study = create(tmp_path, search.Random(seed=1))
    study.optimize(trials=30, progress=False)
    ref = {"a": 9.0, "b": 9.0}
    points = np.array([t.values for t in study.pareto_front])
    from tunelab.spaces.pareto import hypervolume

    assert study.hypervolume(ref) == pytest.approx(hypervolume(points, [9.0, 9.0]))
    assert study.hypervolume(ref, trials=10) <= study.hypervolume(ref)
    with pytest.raises(ConfigError, match="a value for each objective"):
        study.hypervolume({"a": 1.0})


def test_a_study_resumed_by_a_fresh_strategy_continues_as_one_never_stopped(tmp_path):
    for key, make in {"nsga2": lambda: search.Evolution(population=4, seed=2, method="nsga2"),
                      "bayesian": lambda: search.Bayesian(seed=2, n_initial=4, num_restarts=2, raw_samples=32,
                                                          mc_samples=16, fit_maxiter=30)}.items():
        whole = create(tmp_path, make(), name=f"{key}-whole")
        whole.optimize(trials=8, progress=False)
        parts = create(tmp_path, make(), name=f"{key}-parts")
        parts.optimize(trials=5, progress=False)
        again = studies.load(f"{key}-parts", f"sqlite:///{tmp_path / 'mo.db'}",  # from the database, the strategy too
                             trainer=trainers.Objective(two_goals, metric="a"))
        again.optimize(trials=8, progress=False)
        assert [t.config for t in again.trials] == [t.config for t in whole.trials], key


def test_mo_asha_pauses_and_promotes_by_non_dominated_order(tmp_path):
    fn = trainers.Function(steps, epochs=9, metric="a", direction="minimize")
    study = create(tmp_path, search.ASHA(seed=0), trainer=fn)
    study.optimize(epochs=80, progress=False)
    trials = study.trials
    promoted = [t for t in trials if t.epochs >= 3]
    assert promoted and any(t.state == "complete" for t in trials)
    # each trial promoted from the first rung was in the top third of that rung by non-dominated order
    from tunelab.spaces.pareto import rank_order

    rung = [t for t in trials if t.epochs >= 1 and t.number < promoted[-1].number]
    order = rank_order(np.array([[t.curve[0], t.metrics["b"][0]] for t in rung]))
    position = {rung[int(i)].number: k for k, i in enumerate(order)}
    assert all(position[t.number] < max(1, len(rung)) for t in promoted if t.number in position)
    assert study.pareto_front


@pytest.mark.parametrize(("objectives", "match"), [
    ({"a": "minimise", "b": "minimize"}, "'minimize' or 'maximize'"),
    ({"a": "minimize"}, "one objective"),
    (["a", "b"], "dict of metric name"),
])
def test_bad_objectives_are_typed_errors_naming_the_fix(tmp_path, objectives, match):
    with pytest.raises(ConfigError, match=match):
        create(tmp_path, search.Random(seed=0), objectives=objectives)


def test_an_unknown_objective_of_the_shared_trainer_lists_the_recorded_ones(tmp_path):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=128, max_epochs=1), epochs=1)
    with pytest.raises(ConfigError, match=r"does not record; it records \[.*'latency_ms'.*'n_params'"):
        studies.create("x", f"sqlite:///{tmp_path / 'x.db'}", space=spaces.mlp(depth=1, width=8), trainer=trainer,
                       objectives={"accuracy": "maximize", "latency": "minimize"})


def test_single_objective_strategies_and_latency_of_user_code_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"optimises one objective.*nsga2"):
        create(tmp_path, search.Evolution(seed=0))
    fn = trainers.Function(steps, epochs=3, metric="a", direction="minimize")
    with pytest.raises(ConfigError, match="optimises one objective"):
        create(tmp_path, search.FreezeThaw(seed=0), trainer=fn)
    with pytest.raises(ConfigError, match="report your own latency"):
        create(tmp_path, search.Random(seed=0), objectives={"a": "minimize", "latency_ms": "minimize"})


def test_reopening_with_other_objectives_is_a_conflict(tmp_path):
    create(tmp_path, search.Random(seed=0)).optimize(trials=2, progress=False)
    with pytest.raises(StudyConflictError, match="different objectives"):
        create(tmp_path, search.Random(seed=0), objectives={"a": "minimize", "b": "maximize"})
    with pytest.raises(StudyConflictError, match="different objectives"):
        studies.create("mo", f"sqlite:///{tmp_path / 'mo.db'}", space=SPACE,
                       trainer=trainers.Objective(two_goals, metric="a"), strategy=search.Random(seed=0))


def test_a_run_that_never_reports_an_objective_fails_with_what_it_recorded_and_the_study_goes_on(tmp_path):
    fn = trainers.Function(forgetful, epochs=2, metric="a", direction="minimize")
    study = create(tmp_path, search.Random(seed=0), trainer=fn)
    study.optimize(trials=2, progress=False, max_failures=5)
    assert [str(t.state) for t in study.trials] == ["failed", "failed"]
    assert "['b']" in study.trials[0].error and "'a'" in study.trials[0].error


def test_latency_is_recorded_on_the_study_device_and_ranks_networks_of_clearly_different_size(tmp_path):
    small = spaces.build_model(spaces.mlp(depth=1, width=8).default(), (40,), 10)
    big = spaces.build_model(spaces.mlp(depth=4, width=1024).default(), (40,), 10)
    device = torch.device("cpu")
    # each timing is a median of 15 passes; the big network does ~3,000x the work
    assert forward_latency_ms(small, (40,), device=device) < forward_latency_ms(big, (40,), device=device)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=128, max_epochs=1), epochs=1)
    space = spaces.Space(optimizer=spaces.Fixed("adam")) | spaces.mlp(depth=spaces.Int(1, 2), width=spaces.Int(8, 512))
    study = studies.create("lat", f"sqlite:///{tmp_path / 'lat.db'}", space=space, trainer=trainer,
                           strategy=search.Evolution(population=3, method="nsga2", seed=0),
                           objectives={"accuracy": "maximize", "latency_ms": "minimize"})
    study.optimize(trials=4, progress=False)
    for t in study.trials:
        assert t.latency_ms is not None and t.latency_ms > 0 and t.values[1] == t.latency_ms
        assert t.values[0] == pytest.approx(t.value)


def test_max_latency_ms_redraws_networks_over_the_limit(tmp_path):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=128, max_epochs=1), epochs=1)
    space = spaces.Space(optimizer=spaces.Fixed("adam")) | spaces.mlp(depth=1, width=spaces.Categorical((8, 4096)))
    small = forward_latency_ms(spaces.build_model(spaces.mlp(depth=1, width=8).default(), (40,), 10),
                               (40,), device=torch.device("cpu"))
    big = forward_latency_ms(spaces.build_model(spaces.mlp(depth=1, width=4096).default(), (40,), 10),
                             (40,), device=torch.device("cpu"))
    limit = (small + big) / 2
    study = studies.create("cap", f"sqlite:///{tmp_path / 'cap.db'}", space=space, trainer=trainer,
                           strategy=search.Evolution(population=2, seed=0, max_latency_ms=limit))
    study.optimize(trials=2, progress=False)
    assert {t.config["model.width"] for t in study.trials} == {8}


KILL_SCRIPT = '''
import json, os, sys, time
from tunelab import search, spaces, studies, trainers

HOLD = os.environ.get("HOLD")

def curve(config, run):
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        decision = run.report(a=config["x"] ** 2 / epoch, b=(config["x"] - 1) ** 2 / epoch)
        run.save({"epoch": epoch})
        if HOLD and epoch == 2 and not os.path.exists(HOLD):
            with open(HOLD, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)
            raise SystemExit("held 600 s and nobody killed the driver")
        if decision != "continue":
            return


if __name__ == "__main__":
    space = spaces.Space(x=spaces.Float(-2.0, 2.0))
    fn = trainers.Function(curve, epochs=3, metric="a", direction="minimize")
    study = studies.create("mo-kill", sys.argv[1], space=space, trainer=fn, strategy=search.ASHA(seed=0),
                           objectives={"a": "minimize", "b": "minimize"})
    study.optimize(epochs=12, progress=False, checkpoint_seconds=0, flush_seconds=0)
    print(json.dumps([[t.config, t.values, t.curve, str(t.state), t.epochs] for t in study.trials]))
'''


def test_a_multi_objective_study_killed_mid_trial_resumes_losing_and_repeating_nothing(tmp_path):
    script = tmp_path / "mo_kill.py"
    script.write_text(KILL_SCRIPT)

    def run(url, env=None):
        return subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env or dict(os.environ))

    def rows(proc):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    reference = rows(run(f"sqlite:///{tmp_path / 'ref.db'}"))
    marker = tmp_path / "held"
    driver = run(f"sqlite:///{tmp_path / 'k.db'}", env={**os.environ, "HOLD": str(marker)})

    def held():
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        return marker.exists() and marker.read_text() != ""

    wait_for(held, "the trial to hold after saving epoch 2")
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    resumed = rows(run(f"sqlite:///{tmp_path / 'k.db'}"))
    assert [r for r in resumed if r[3] != "failed"] == reference


def test_compare_fronts_ranks_strategies_by_normalised_hypervolume_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'fronts.db'}"
    objective = trainers.Objective(two_goals, metric="a")
    strategies = {"random": search.Random(seed=0), "nsga2": search.Evolution(population=4, seed=0, method="nsga2")}
    comparison = studies.compare_fronts(objective, SPACE, strategies=strategies, objectives=GOALS, trials=16,
                                        seeds=2, storage=url, name="f")
    table = comparison.table()
    assert sorted(table["strategy"].unique()) == ["nsga2", "random"] and sorted(table["trials"].unique()) == [4, 8, 16]
    assert ((table["median"] > 0) & (table["median"] <= 1.0 + 1e-9)).all()
    hv = comparison.hypervolumes([16])
    assert max(v for by_n in hv.values() for v in by_n[16].values()) <= 1.0 + 1e-9
    pairs = comparison.pairs([16])
    assert list(pairs[["a", "b", "seeds"]].iloc[0]) == ["random", "nsga2", 2]
    # seed s runs the strategy rebuilt with its seed + s; a second call only reads
    assert comparison.studies["nsga2"][1].strategy.seed == 1
    again = studies.compare_fronts(objective, SPACE, strategies=strategies, objectives=GOALS, trials=16, seeds=2,
                                   storage=url, name="f")
    assert again.table().equals(table)
    readme = again.report(tmp_path / "report")
    assert "| nsga2 | 16 | 2 |" in readme.read_text() and (tmp_path / "report" / "hypervolume.png").exists()
    with pytest.raises(ConfigError, match="several objectives"):
        studies.compare_fronts(objective, SPACE, strategies=strategies, objectives={"a": "minimize"}, trials=4,
                               storage=url)


def test_outcome_constraints_are_recorded_as_optuna_records_them_and_keep_infeasible_trials_off_the_front(tmp_path):
    study = create(tmp_path, search.Evolution(population=4, seed=0, method="nsga2"), constraints={"b": 1.0})
    study.optimize(trials=20, progress=False)
    trials = study.trials
    infeasible = [t for t in trials if not t.feasible]
    assert infeasible and all(t.constraints[0] == pytest.approx(t.values[1] - 1.0) for t in trials)
    assert all(t.feasible for t in study.pareto_front)
    ostudy = optuna.load_study(study_name="mo", storage=f"sqlite:///{tmp_path / 'mo.db'}")
    assert sorted(t.number for t in ostudy.best_trials) == sorted(t.number for t in study.pareto_front)
    # NSGA-II's population: every feasible trial before any infeasible one (constrained domination)
    from tunelab.search import nsga2

    members = nsga2.population(20, study.history())
    feasible = [t.violation <= 0 for t in members]
    assert feasible == sorted(feasible, reverse=True)
    with pytest.raises(StudyConflictError, match="different constraints"):
        create(tmp_path, search.Evolution(population=4, seed=0, method="nsga2"), constraints={"b": 2.0})
    with pytest.raises(ConfigError, match="upper bound"):
        create(tmp_path, search.Random(seed=0), name="bad", constraints={"b": "small"})


def test_a_single_objective_study_with_a_constraint_never_calls_an_infeasible_trial_best(tmp_path):
    study = studies.create("one", f"sqlite:///{tmp_path / 'one.db'}", space=SPACE,
                           trainer=trainers.Objective(two_goals, metric="a"), strategy=search.Random(seed=0),
                           constraints={"note": (">=", 0.0)})
    study.optimize(trials=20, progress=False)
    feasible = [t for t in study.trials if t.feasible]
    assert len(feasible) < 20 and study.best.feasible
    assert study.best.value == min(t.value for t in feasible)


def test_mo_asha_trains_populations_and_records_each_members_values(tmp_path):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=3), epochs=3)
    space = spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=16)
    study = studies.create("pop", f"sqlite:///{tmp_path / 'pop.db'}", space=space, trainer=trainer,
                           strategy=search.ASHA(seed=0), objectives={"accuracy": "maximize", "train_loss": "minimize"})
    study.optimize(epochs=24, progress=False, population=4)
    complete = [t for t in study.trials if t.state == "complete"]
    assert complete and all(t.values == (pytest.approx(t.value), pytest.approx(t.metrics["train_loss"][-1]))
                            for t in complete)
    assert study.pareto_front


def test_damaged_objectives_and_constraint_values_in_a_database_are_typed_errors(tmp_path):
    import sqlite3

    from tunelab.studies import StorageError

    url = f"sqlite:///{tmp_path / 'mo.db'}"
    create(tmp_path, search.Random(seed=0), constraints={"b": 1.0}).optimize(trials=2, progress=False)
    con = sqlite3.connect(tmp_path / "mo.db")
    con.execute("UPDATE study_user_attributes SET value_json = ? WHERE key = 'tunelab:objectives'",
                (json.dumps([["a", "sideways"], ["b", "minimize"]]),))
    con.commit()
    with pytest.raises(StorageError, match="stored objectives"):
        studies.load("mo", url, read_only=True)
    con.execute("UPDATE study_user_attributes SET value_json = ? WHERE key = 'tunelab:objectives'",
                (json.dumps([["a", "minimize"], ["b", "minimize"]]),))
    con.execute("UPDATE trial_system_attributes SET value_json = ? WHERE key = 'constraints'", (json.dumps(["x"]),))
    con.commit()
    con.close()
    with pytest.raises(StorageError, match="'constraints'"):
        _ = studies.load("mo", url, read_only=True).trials
