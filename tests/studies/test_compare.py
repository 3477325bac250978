"""`studies.compare`: equal budgets, reruns on fresh seeds, the table and report, resume and bad input."""

import math
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from waiting import wait_for

from tunelab import search, spaces, studies
from tunelab.studies.cli import main as cli
from tunelab.studies.compare import Arm, Comparison, analysis, stats
from tunelab.studies.compare.report import markdown_table, supported_ks
from tunelab.studies.compare.verdict import Estimate, verdict, winner

SETUP = textwrap.dedent(
    """
    from tunelab import spaces, studies, trainers

    def tiny_problems():
        trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=200), epochs=2, seed=0, device="cpu")
        mlp = spaces.mlp(depth=1, width=16, dropout=0.0, activation="relu")
        cnn = {"model": "mnist1d_cnn"}
        return [studies.Problem("tiny_mlp", trainer, mlp), studies.Problem("tiny_cnn", trainer, cnn)]

    ARGS = dict(optimizers=["adamw", "sam"], budget=3, reruns=2, name="cmp", progress=False)
    """
)
namespace: dict = {}
exec(SETUP, namespace)
tiny_problems, ARGS = namespace["tiny_problems"], namespace["ARGS"]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cmp') / 'cmp.db'}"
    return studies.compare(tiny_problems(), storage=url, **ARGS)


def snapshot(url):
    """(study, number) -> (value, start time) of every trial in the database."""
    out = {}
    for summary in optuna.get_all_study_summaries(url):
        for t in optuna.load_study(study_name=summary.study_name, storage=url).get_trials():
            out[(summary.study_name, t.number)] = (t.value, t.datetime_start)
    return out


def test_every_arm_gets_the_same_budget_in_trials_and_gradient_evaluations(done):
    names = set(studies.study_names(done.storage_url))
    for arm in done.arms():
        assert {done.study_name(arm, 0), done.study_name(arm, 0, runs=True)} <= names
        tuning = done.study(arm, 0)
        assert tuning.budget() == {"trials": 3, "epochs": None, "seconds": None, "grad_evals": None}
        assert len(tuning.trials) == 3
        steps = tuning.trainer.steps_per_epoch(tuning.trainer.batch_size)
        # SAM pays two gradient evaluations per step, so its trials train half the epochs
        assert tuning.trainer.epochs == (1 if arm.optimizer == "sam" else 2)
        assert {t.grad_evals for t in tuning.trials} == {2 * steps}  # 2 one-pass epochs for every arm
    assert "tiny_cnn" in done.problems and done.budget == {"trials": 3}


def test_the_selected_config_is_rerun_on_fresh_seeds_beside_the_defaults(done):
    arm = Arm("tiny_mlp", "adamw", "cosine")
    best = done.study(arm, 0).best
    runs = done.records(arm, 0, runs=True)
    assert len(runs) == 4
    selected, defaults = runs[:2], runs[2:]
    assert all(r.config == best.config for r in selected)
    assert all(r.config == done.space(arm).default() for r in defaults)
    seeds = [r.seed for r in selected]
    assert seeds == done.rerun_seeds("tiny_mlp", 0) == [r.seed for r in defaults]
    assert len(set(seeds)) == 2 and 0 not in seeds  # never the tuning seed
    # the stored test metric is what a run on that seed measures
    direct = done.trainer(arm, 0).fit(best.config, seed=seeds[1])
    assert selected[1].test_metric == pytest.approx(direct.test_metric)
    assert selected[0].test_metric != selected[1].test_metric or selected[0].curve != selected[1].curve


def test_table(done):
    table = done.table()
    assert len(table) == 4 and table.attrs["estimator"] == "dodge"
    for column in ("one_shot_val", "one_shot_test", "best_val@1", "best_val@1_lo", "best_val@5", "best_val@20",
                   "best_val@budget_hi", "test_mean", "test_std", "test_lo", "test_hi", "test_n", "diverged",
                   "cost_per_step", "best_config", "at_boundary"):
        assert column in table.columns, column
    results = done.results()
    for row in table.to_dict("records"):
        arm = Arm(row["problem"], row["optimizer"], row["schedule"])
        values = results[(results.problem == arm.problem) & (results.optimizer == arm.optimizer)].value
        assert row["best_val@budget"] == pytest.approx(stats.expected_max(values.to_numpy(), 3))
        assert row["best_val@1"] == pytest.approx(values.mean())
        assert row["best_val@1_lo"] <= row["best_val@1"] <= row["best_val@1_hi"]
        assert math.isnan(row["best_val@5"]) and math.isnan(row["best_val@20"])  # beyond 3 trials
        assert row["test_n"] == 2 and 0.0 <= row["test_mean"] <= 1.0 and row["test_lo"] <= row["test_mean"]
        assert 0.0 <= row["one_shot_test"] <= 1.0
        assert row["diverged"] == 0.0
        assert row["trials"] == 3 and row["grad_evals_per_step"] == (2 if arm.optimizer == "sam" else 1)
        assert row["best_config"]["optimizer"] == arm.optimizer
        assert not any(k.startswith("model") for k in row["best_config"])
        assert set(row["at_boundary"]) <= set(row["best_config"])
    adamw = table[table.optimizer == "adamw"]
    assert (adamw.cost_per_step == 1.0).all()


def test_boundary_flag():
    from tunelab.studies.compare.analysis import at_boundary as _at_boundary

    space = spaces.optimizers(["adamw"])
    config = {**space.default(), "adamw.lr": 0.099, "adamw.beta1": 0.9}
    assert _at_boundary(space, config) == ["adamw.lr"]


def test_report_profile_and_plot(done, tmp_path):
    profile = done.profile()
    assert set(profile.attrs["targets"]) == {"tiny_mlp", "tiny_cnn"}
    assert ((profile.score >= 0) & (profile.score <= 1)).all()
    for problem in ("tiny_mlp", "tiny_cnn"):
        assert profile[f"ratio@{problem}"].min() == 1.0  # the target-setting arm reaches it
    path = done.report(tmp_path / "report")
    text = path.read_text()
    for part in ("E[best val] k=1", "one-shot test", "Selected configurations", "Time to target", "profile.png",
                 "expected_best.png", "curves.png", "lr_sensitivity.png", "### tiny_cnn"):
        assert part in text, part
    for png in ("expected_best.png", "curves.png", "lr_sensitivity.png", "profile.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000
    assert done.plot(tmp_path / "e.png").stat().st_size > 5000


def test_the_same_call_again_trains_nothing(done):
    before = snapshot(done.storage_url)
    again = studies.compare(tiny_problems(), storage=done.storage_url, **ARGS)
    assert snapshot(done.storage_url) == before
    assert again.table().drop(columns=["cost_per_step"]).equals(done.table().drop(columns=["cost_per_step"]))


def test_one_process_pool_serves_every_study_of_a_comparison(done, tmp_path, monkeypatch):
    from tunelab.studies.executors import ProcessExecutor

    pools = []
    new_pool = ProcessExecutor._new_pool
    monkeypatch.setattr(ProcessExecutor, "_new_pool", lambda self: pools.append(self) or new_pool(self))
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    studies.close_workers()  # an idle pool of another test would serve it instead
    pooled = studies.compare(tiny_problems(), storage=url, n_workers=2, **ARGS)
    assert len(pools) == 1  # not one per study (8 studies here; each pool costs seconds to start)
    for arm in done.arms():
        for runs in (False, True):
            a, b = pooled.study(arm, 0, runs=runs).trials, done.study(arm, 0, runs=runs).trials
            assert [t.config for t in a] == [t.config for t in b] and {t.state for t in a} == {"complete"}


def test_an_interrupted_comparison_completes_only_what_is_missing(done, tmp_path):
    url = f"sqlite:///{tmp_path / 'part.db'}"
    partial = Comparison.create(tiny_problems(), storage=url, schedules=None, strategy=None, seeds=1,
                                equalize="grad_evals", one_shot=True,
                                **{k: v for k, v in ARGS.items() if k != "progress"})
    first = partial.arms()[0]
    partial.tuning_study(first, 0).optimize(trials=2, progress=False)
    kept = snapshot(url)
    studies.compare(tiny_problems(), storage=url, **ARGS)
    after = snapshot(url)
    assert all(after[key] == value for key, value in kept.items())  # finished work untouched
    # and the result is the uninterrupted comparison's, trial for trial
    ref = {(name.split("/", 1)[1], n): v[0] for (name, n), v in snapshot(done.storage_url).items() if "/" in name}
    got = {(name.split("/", 1)[1], n): v[0] for (name, n), v in after.items() if "/" in name}
    assert got.keys() == ref.keys()
    assert all(got[k] == pytest.approx(ref[k]) for k in ref)


KILL_SCRIPT = SETUP + textwrap.dedent(
    """
    import sys
    studies.compare(tiny_problems(), storage=sys.argv[1], **ARGS)
    """
)


def test_sigkill_then_the_same_call_finishes_with_the_uninterrupted_results(done, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    proc = subprocess.Popen([sys.executable, str(script), url], stderr=subprocess.PIPE, text=True)
    def second_runs_study() -> bool:  # kill once the second arm's runs study has started
        assert proc.poll() is None, proc.stderr.read()
        try:
            return "cmp/tiny_mlp/sam/cosine/seed0/runs" in studies.study_names(url)
        except studies.TunelabError:
            return False

    wait_for(second_runs_study, "the comparison to reach its second runs study", deadline=240)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = snapshot(url)
    studies.compare(tiny_problems(), storage=url, **ARGS)
    after = snapshot(url)
    assert all(after[k] == v for k, v in kept.items() if v[0] is not None)
    resumed = Comparison.load("cmp", url)
    for arm in resumed.arms():
        assert len(resumed.records(arm, 0)) == 3 and len(resumed.records(arm, 0, runs=True)) == 4
        ref = [t.value for t in done.records(arm, 0)] + [t.test_metric for t in done.records(arm, 0, runs=True)]
        got = [t.value for t in resumed.records(arm, 0)] + [t.test_metric for t in resumed.records(arm, 0, runs=True)]
        np.testing.assert_allclose(got, ref)


def test_bad_input_is_refused_with_the_fix(done, tmp_path):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    problems = tiny_problems()[:1]
    with pytest.raises(studies.UnknownNameError, match="sgd, adam, adamw"):
        studies.compare(problems, optimizers=["adamw", "adamx"], budget=3, storage=url)
    with pytest.raises(studies.UnknownNameError, match="cosine"):
        studies.compare(problems, optimizers=["adamw"], schedules=["cosin"], budget=3, storage=url)
    with pytest.raises(studies.UnknownNameError, match="mnist1d_mlp"):
        studies.compare("mnist1d_mpl", optimizers=["adamw"], budget=3, storage=url)
    with pytest.raises(studies.BudgetError, match="same compute"):
        studies.compare(problems, optimizers=["adamw"], budget={"epochs": 40}, storage=url)
    with pytest.raises(studies.BudgetError):
        studies.compare(problems, optimizers=["adamw"], budget=0, storage=url)
    with pytest.raises(studies.ConfigError, match="reruns"):
        studies.compare(problems, optimizers=["adamw"], budget=3, reruns=0, storage=url)
    with pytest.raises(studies.ConfigError, match="grad_evals"):
        studies.compare(problems, optimizers=["adamw"], budget=3, strategy=search.ASHA(), storage=url)
    with pytest.raises(studies.ConfigError, match="repeat"):
        studies.compare(problems, optimizers=["adamw", "adamw"], budget=3, storage=url)
    with pytest.raises(studies.ConfigError, match="unique"):
        studies.compare(problems * 2, optimizers=["adamw"], budget=3, storage=url)
    with pytest.raises(studies.ConfigError, match="name"):
        studies.compare(problems, optimizers=["adamw"], budget=3, storage=url, name="a/b")
    # the stored comparison refuses other arguments under its name, and says which differ
    with pytest.raises(studies.StudyConflictError, match="budget: stored"):
        studies.compare(tiny_problems(), storage=done.storage_url, **{**ARGS, "budget": 4})
    with pytest.raises(studies.StudyConflictError, match="optimizers"):
        studies.compare(tiny_problems(), storage=done.storage_url, **{**ARGS, "optimizers": ["adamw", "sgd"]})
    with pytest.raises(studies.StudyNotFoundError, match="cmp"):
        Comparison.load("nope", done.storage_url)
    other = studies.Problem("tiny_mlp", tiny_problems()[1].trainer, {"model": "mnist1d_cnn"})
    with pytest.raises(studies.StudyConflictError, match="tiny_mlp"):
        Comparison.load("cmp", done.storage_url, problems=[other])


def test_equalize_epochs_gives_sam_the_full_run(tmp_path):
    c = Comparison.create(tiny_problems()[:1], optimizers=["sam"], schedules=None, budget=1, strategy=None, seeds=1,
                          reruns=1, storage=f"sqlite:///{tmp_path / 'e.db'}", name="e", equalize="epochs",
                          one_shot=False)
    assert c.epochs(c.arms()[0]) == 2


def test_cli_compare_reports_a_stored_comparison_and_lists_it(done, tmp_path, capsys):
    out = tmp_path / "cli-report"
    assert cli(["compare", "--storage", done.storage_url, "--name", "cmp", "--report-only", "--out", str(out)]) == 0
    assert (out / "README.md").exists()
    assert cli(["list", "--storage", done.storage_url]) == 0
    assert "comparison of adamw, sam on tiny_mlp, tiny_cnn" in capsys.readouterr().out
    assert cli(["compare", "--storage", done.storage_url, "--optimizers", "adamw", "lionn"]) == 2
    assert "lion" in capsys.readouterr().err


# ---------------------------------------------------------------- the report answers its question


def estimate(label, values, maximize=True):
    """An arm's expected best at k = all its trials, with its bootstrap interval, as the report computes it."""
    est, lo, hi = stats.expected_max_interval(values, [len(values)], maximize=maximize)
    return Estimate(label, float(est[0]), float(lo[0]), float(hi[0]), len(values))


def one(estimates, maximize=True, reliable=True):
    return verdict({"p": estimates}, maximize={"p": maximize}, metric={"p": "accuracy"}, reliable=reliable)


def test_the_verdict_names_no_winner_when_the_arms_are_indistinguishable():
    same = [0.61, 0.58, 0.66, 0.55, 0.63, 0.60]
    rng = np.random.default_rng(0)
    noisy = [0.6 + 0.03 * rng.normal(size=6) for _ in range(3)]  # one distribution, three arms
    for arms in ([estimate(n, same) for n in ("sgd", "adamw", "lion")],
                 [estimate(n, v) for n, v in zip(("sgd", "adamw", "lion"), noisy, strict=True)]):
        text = one(arms)
        assert text.startswith("No optimizer is better at this budget (k=6) on p"), text
        assert "intervals of expected best validation accuracy overlap" in text
        assert winner(arms, maximize=True) is None
        assert "is best" not in text and "\n" not in text
    # a sliver of overlap is still a tie
    a, b = Estimate("a", 0.9, 0.80, 0.95, 6), Estimate("b", 0.7, 0.60, 0.8001, 6)
    assert winner([a, b], maximize=True) is None and one([a, b]).startswith("No optimizer")


def test_the_verdict_names_the_winner_when_one_arm_clearly_dominates():
    rng = np.random.default_rng(1)
    arms = [estimate("sgd", 0.60 + 0.01 * rng.normal(size=6)), estimate("adamw", 0.90 + 0.01 * rng.normal(size=6)),
            estimate("lion", 0.62 + 0.01 * rng.normal(size=6))]
    text = one(arms)
    assert text.startswith("adamw is best at k=6 on p: its 95% interval of expected best validation accuracy"), text
    assert "lies above every other optimizer's (next: lion [" in text
    # the same for a metric to minimise (a loss): the winner's interval lies below
    losses = [estimate("sgd", [2.0, 2.1, 1.9, 2.2], False), estimate("adamw", [0.5, 0.6, 0.55, 0.52], False)]
    assert winner(losses, maximize=False).label == "adamw"
    assert "lies below" in one(losses, maximize=False)


def test_the_verdict_declines_when_its_intervals_measure_nothing():
    clear = [Estimate("a", 0.9, 0.9, 0.9, 6), Estimate("b", 0.5, 0.5, 0.5, 6)]
    # an adaptive strategy with one study seed: the "interval" is the study's own value
    assert one(clear, reliable=False).startswith("No verdict: p: with an adaptive strategy and one study seed")
    assert one([Estimate("a", 0.9, 0.9, 0.9, 2), Estimate("b", 0.5, 0.5, 0.5, 2)]).startswith("No verdict")
    assert one([clear[0], Estimate("b", math.nan, math.nan, math.nan, 0)]).startswith("No verdict: p: fewer than two")


def test_the_verdict_over_several_problems():
    win = [Estimate("adamw", 0.9, 0.85, 0.95, 6), Estimate("sgd", 0.5, 0.4, 0.6, 6)]
    tie = [Estimate("adamw", 0.9, 0.7, 0.95, 6), Estimate("sgd", 0.8, 0.6, 0.9, 6)]
    flags = {"p1": True, "p2": True}
    metric = {"p1": "accuracy", "p2": "accuracy"}
    assert verdict({"p1": win, "p2": win}, maximize=flags, metric=metric).startswith(
        "adamw is best at k=6 on every problem (p1, p2)")
    assert verdict({"p1": tie, "p2": tie}, maximize=flags, metric=metric).startswith(
        "No optimizer is better at this budget (k=6): on every problem")
    mixed = verdict({"p1": win, "p2": tie}, maximize=flags, metric=metric)
    assert mixed.startswith("No optimizer is best everywhere at k=6")
    assert "adamw on p1; on p2 the intervals overlap" in mixed


def test_k_columns_stop_at_the_budget():
    import pandas as pd

    def frame(trials):
        cols = {f"best_val@{k}": [0.5] * len(trials) for k in (1, 5, 20, "budget")}
        return pd.DataFrame({"trials": trials, **cols})

    assert supported_ks(frame([6, 6, 6])) == (["1", "5"], "k=6 (all)")  # the user's budget of 6: no k=20
    assert supported_ks(frame([5, 5])) == (["1"], "k=5 (all)")
    assert supported_ks(frame([4, 6])) == (["1"], "k=all trials")
    assert supported_ks(frame([20, 20])) == (["1", "5"], "k=20 (all)")


def test_time_to_target_ties_when_the_reruns_overlap():
    times = {"a": 100.0, "b": 300.0, "c": 500.0}
    spans = {"a": (100.0, 400.0), "b": (200.0, 300.0), "c": (450.0, 600.0)}
    assert analysis.ties(times, spans) == {"a": True, "b": True, "c": False}
    # a rerun of the fastest arm that never reaches the target ties everyone: the reruns cannot rank them
    assert all(analysis.ties({"a": 100.0, "b": math.inf}, {"a": (100.0, math.inf), "b": (math.inf, math.inf)}).values())
    assert not analysis.ties({"a": 100.0, "b": math.inf}, {"a": (100.0, 200.0), "b": (math.inf, math.inf)})["b"]
    assert analysis.ties({"a": math.inf}, {"a": (math.inf, math.inf)}) == {"a": False}
    assert analysis.run_times([[0.1, 0.5], [0.1, 0.2]], 0.5, 10.0, maximize=True) == [20.0, math.inf]


def test_cost_per_step_comes_with_an_interval_or_not_at_all():
    assert all(math.isnan(v) for v in analysis.cost_ratio([0.1, 0.2], [0.1, 0.1, 0.1]))  # too few timings
    ratio, lo, hi = analysis.cost_ratio([0.2, 0.21, 0.19, 0.2], [0.1, 0.11, 0.09, 0.1])
    assert ratio == pytest.approx(2.0) and lo <= 2.0 <= hi


def test_the_report_opens_with_the_verdict_and_explains_every_statistic(done, tmp_path):
    table = done.table()
    for row in table.to_dict("records"):  # 3 timed trials per arm: an interval, or the reference's 1
        assert row["timed_trials"] == 3 and row["cost_per_step_lo"] <= row["cost_per_step"] <= row["cost_per_step_hi"]
        assert row["best_val"] >= row["best_val@budget"]  # an expectation never beats the best trial found
    lines = done.report(tmp_path / "r").read_text().splitlines()
    assert lines[0] == "# Optimizer comparison `cmp`" and lines[1] == ""
    assert lines[2] == f"**Verdict:** {done.verdict}"
    assert done.verdict.startswith(("No optimizer is better", "adamw is best", "sam is best", "No optimizer is best"))
    text = "\n".join(lines)
    for statistic in ("- Verdict: an optimizer is named best only when", "- E[best val] k: the expected best",
                      "drawn with replacement", "never better than the best single trial found",
                      "- best trial val:", "- one-shot test:", "- test of selected:", "- diverged:", "- cost/step:",
                      "- Target:", "- Time:", "- Tie rule:", "- Score:"):
        assert statistic in text, statistic
    header = next(line for line in lines if line.startswith("| optimizer | one-shot test"))
    assert "E[best val] k=1 |" in header and "E[best val] k=3 (all)" in header and "best trial val" in header
    assert "k=5" not in text and "k=20" not in text  # 3 trials per arm: no column the budget cannot fill
    assert "| 1 (reference) |" in text
    assert re.search(r"\| sam \|.*\| \d+\.\d\dx \[\d+\.\d\d, \d+\.\d\d\] \|$", text, re.M)
    # and without enough timings the cost is left out rather than shown bare
    bare = table.assign(cost_per_step=math.nan)
    assert all(line.endswith("| - |") for line in markdown_table(done, bare) if line.startswith(("| adamw", "| sam")))


def test_time_to_target_is_given_with_its_spread_and_tie_rule(done):
    profile = done.profile()
    for problem in ("tiny_mlp", "tiny_cnn"):
        fastest = profile.loc[profile[f"time@{problem}"].idxmin()]
        assert fastest[f"tied@{problem}"] and fastest[f"ratio@{problem}"] == 1.0
        for r in profile.to_dict("records"):
            assert r[f"time@{problem}_lo"] <= r[f"time@{problem}_hi"]
            assert 0.0 <= r[f"reached@{problem}"] <= 1.0
            if r[f"tied@{problem}"]:
                assert r[f"ratio@{problem}"] == 1.0  # tied with the fastest: not scored below it
            else:
                assert r[f"time@{problem}_lo"] > fastest[f"time@{problem}_hi"]  # spans apart
