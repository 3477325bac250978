"""Hyperparameter importance: Optuna's PED-ANOVA and fANOVA on stored studies, the CLI, and both reports."""

import math

import pytest

from tunelab import search, spaces, studies, trainers
from tunelab.spaces import ConfigError
from tunelab.studies.cli import main as cli
from tunelab.studies.compare import Arm
from tunelab.studies.compare.importance import arm_importance, importance_section
from tunelab.studies.importance import report_section

SPACE = spaces.Space(x=spaces.Float(0.0, 1.0), y=spaces.Float(0.0, 1.0), kind=spaces.Categorical(["a", "b"]),
                     width=spaces.Fixed(16))


def dominated(config):
    """x decides the loss; y and kind barely move it."""
    return 100.0 * (config["x"] - 0.3) ** 2 + 0.1 * config["y"] + 0.01 * (config["kind"] == "b")


def fragile(config):
    if config["y"] > 0.75:
        raise ValueError("this configuration fails")
    return dominated(config)


def two_goals(config):
    """`a` (minimised) depends on x. `b` (maximised) is highest for large y and lowest for small x: ranked with the
    wrong sign, x would win for `b`."""
    return {"a": (config["x"] - 0.3) ** 2, "b": config["y"] - (5.0 if config["x"] < 0.2 else 0.0)}


def branches(config):
    """SGD's loss depends on its learning rate; AdamW's on its weight decay."""
    if config["optimizer"] == "sgd":
        return 10.0 * (math.log10(config["sgd.lr"]) + 2.0) ** 2 + 0.01 * config["sgd.momentum"]
    return 10.0 * (math.log10(config["adamw.weight_decay"]) + 3.0) ** 2 + 0.01 * math.log10(config["adamw.lr"])


def first(found):
    """The parameter ranked first."""
    return next(iter(found.scores))


def make(path, name, fn=dominated, trials=30, space=SPACE, **kw):
    study = studies.create(name, f"sqlite:///{path / 'imp.db'}", space=space, strategy=search.Random(seed=0),
                           trainer=trainers.Objective(fn, metric=kw.pop("metric", "loss")), **kw)
    study.optimize(trials=trials, progress=False)
    return study


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("importance")


@pytest.fixture(scope="module")
def study(db):
    return make(db, "one")


@pytest.mark.parametrize("method", ["ped_anova", "fanova"])
def test_the_dominant_hyperparameter_is_ranked_first_by_both_methods(study, method):
    found = study.importance(method)
    assert first(found) == "x" and found.scores["x"] > 0.8
    assert set(found.scores) == {"x", "y", "kind"} and found.left_out == {"width": "fixed"}
    assert list(found.scores.values()) == sorted(found.scores.values(), reverse=True)
    assert sum(found.scores.values()) == pytest.approx(1.0)
    assert (found.method, found.objective, found.n_trials) == (method, "loss", 30)
    assert ("PedAnovaImportanceEvaluator" if method == "ped_anova" else "FanovaImportanceEvaluator") in found.evaluator
    assert found.table().splitlines()[found.table().splitlines().index("parameter  importance") + 1].startswith("x ")
    assert str(found) == found.table()


def test_fanova_is_seeded_and_a_read_only_study_gives_the_same_scores(study):
    first = study.importance("fanova", seed=3)
    again = studies.load("one", study.storage_url, read_only=True).importance("fanova", seed=3)
    assert again.scores == first.scores
    assert again.evaluator == "optuna.importance.FanovaImportanceEvaluator(seed=3)"


def test_too_few_trials_and_bad_arguments_are_typed_errors_naming_the_fix(db, study):
    few = make(db, "few", trials=4)
    with pytest.raises(studies.TooFewTrialsError, match="has 4; run more trials, at least 6 more"):
        few.importance()
    with pytest.raises(ConfigError, match="method must be one of ped_anova, fanova"):
        study.importance("shap")
    with pytest.raises(ConfigError, match="one objective, 'loss'"):
        study.importance(objective="accuracy")
    with pytest.raises(ConfigError, match="the space does not have"):
        study.importance(where={"nope": 1})


def test_failed_trials_are_left_out_and_counted(db):
    shaky = make(db, "shaky", fn=fragile, trials=40)
    failed = sum(t.state == "failed" for t in shaky.trials)
    assert failed >= 3
    found = shaky.importance()
    assert found.n_trials == 40 - failed and first(found) == "x"
    assert f"Left out {failed} unfinished, failed or pruned trials." in found.notes


def test_a_multi_objective_study_needs_an_objective_and_maximised_ones_are_negated(db):
    mo = make(db, "mo", fn=two_goals, trials=40, metric="a", objectives={"a": "minimize", "b": "maximize"})
    with pytest.raises(ConfigError, match=r"2 objectives \(a, b\).*pass objective=NAME"):
        mo.importance()
    with pytest.raises(ConfigError, match="pass objective=NAME"):
        mo.importance(objective="loss")
    assert first(mo.importance(objective="a")) == "x"
    # PED-ANOVA: what the best trials (largest b) share is large y; ranked with the wrong sign it would be x
    found = mo.importance(objective="b")
    assert found.objective == "b" and first(found) == "y"
    # fANOVA: the step at x = 0.2 explains most of b's variance (sign-free)
    assert first(mo.importance("fanova", objective="b")) == "x"
    section = "\n".join(report_section(mo, mo.trials))  # the report: one table per objective
    assert "### a\n\nPED-ANOVA importance of a over 40" in section and "### b\n\nPED-ANOVA importance of b" in section


def test_conditional_parameters(db):
    space = spaces.Space(spaces.Choice("optimizer", {"sgd": spaces.Space(lr=spaces.Float(1e-4, 1.0, log=True),
                                                                         momentum=spaces.Float(0.0, 0.99)),
                                                     "adamw": spaces.Space(lr=spaces.Float(1e-5, 0.1, log=True),
                                                                           weight_decay=spaces.Float(1e-6, 1.0,
                                                                                                     log=True))}))
    both = make(db, "branches", fn=branches, trials=40, space=space)
    fanova = both.importance("fanova")  # only `optimizer` is in every trial: the rest is named, not dropped silently
    assert list(fanova.scores) == ["optimizer"]
    assert set(fanova.left_out) == {"sgd.lr", "sgd.momentum", "adamw.lr", "adamw.weight_decay"}
    assert all(why.startswith("conditional: in ") and "where=" in why for why in fanova.left_out.values())
    ped = both.importance()  # Conditional PED-ANOVA (Optuna >= 5) assesses every parameter
    assert set(ped.scores) | set(ped.left_out) == set(space.names)
    sgd = both.importance("fanova", where={"optimizer": "sgd"})  # one branch: its parameters are in every trial
    assert first(sgd) == "sgd.lr" and set(sgd.scores) == {"sgd.lr", "sgd.momentum"}
    assert sgd.left_out == {"optimizer": "fixed by where="}
    assert sgd.n_trials == sum(t.config["optimizer"] == "sgd" and t.state == "complete" for t in both.trials)


def test_the_cli_prints_the_table(study, capsys):
    assert cli(["importance", "--storage", study.storage_url, "--study", "one"]) == 0
    out = capsys.readouterr().out
    assert "PED-ANOVA importance of loss over 30 complete trials" in out
    rows = out.split("parameter  importance\n")[1].splitlines()
    assert rows[0].startswith("x ") and {r.split()[0] for r in rows[:3]} == {"x", "y", "kind"}
    assert "left out: width (fixed)" in out
    assert cli(["importance", "--storage", study.storage_url, "--study", "one", "--method", "fanova"]) == 0
    assert "fANOVA importance of loss" in capsys.readouterr().out


def test_the_cli_names_the_missing_objective(db, capsys):
    assert cli(["importance", "--storage", f"sqlite:///{db / 'imp.db'}", "--study", "mo"]) == 2
    assert "--objective NAME" in capsys.readouterr().err
    assert cli(["importance", "--storage", f"sqlite:///{db / 'imp.db'}", "--study", "mo", "--objective", "b"]) == 0
    assert "PED-ANOVA importance of b over 40" in capsys.readouterr().out


def test_the_study_report_has_the_section_or_says_why_not(study, db, tmp_path):
    md = study.report(tmp_path / "report").read_text()
    section = md.split("## Hyperparameter importance\n")[1].split("\n## ")[0]
    assert "PED-ANOVA importance of loss over 30 complete trials" in section
    assert section.index("| `x` |") < section.index("| `y` |") and "Left out: `width` (fixed)." in section
    few = studies.load("few", study.storage_url, read_only=True)
    lines = report_section(few, few.trials)
    assert lines[0] == "## Hyperparameter importance"
    assert [line for line in lines[1:] if line] == [
        "Skipped: hyperparameter importance of study 'few' needs at least 10 complete trials with a finite loss, and "
        "it has 4; run more trials, at least 6 more."]


class TwoArms:
    """The part of a comparison that importance reads: two arms, two study seeds each, in real studies."""

    def __init__(self, path):
        self.problems = {"p": type("Problem", (), {"trainer": type("T", (), {"metric": "loss"})()})()}
        self.schedules, self.seeds = ["cosine"], [0, 1]
        self._studies = {}
        for opt in ("sgd", "adamw"):
            for s in self.seeds:
                space = spaces.optimizers([opt]) | spaces.schedules(["cosine"])
                self._studies[opt, s] = studies.create(
                    f"cmp/{opt}/{s}", f"sqlite:///{path / 'arms.db'}", space=space,
                    trainer=trainers.Objective(branches, metric="loss"), strategy=search.Random(seed=s))
                self._studies[opt, s].optimize(trials=8, progress=False)

    def arms(self):
        return [Arm("p", "sgd", "cosine"), Arm("p", "adamw", "cosine")]

    def space(self, arm):
        return self._studies[arm.optimizer, 0].space

    def records(self, arm, seed):
        return self._studies[arm.optimizer, seed].trials

    def maximize(self, problem):
        return False


def test_each_optimizer_arm_ranks_its_own_hyperparameters(tmp_path):
    arms = TwoArms(tmp_path)
    sgd, adamw = (arm_importance(arms, arm) for arm in arms.arms())
    assert sgd.n_trials == adamw.n_trials == 16  # both study seeds pooled (8 trials each: too few alone)
    assert first(sgd) == "sgd.lr" and not any(k.startswith("adamw.") for k in sgd.scores)
    assert first(adamw) == "adamw.weight_decay" and not any(k.startswith("sgd.") for k in adamw.scores)
    assert {"optimizer", "schedule"} <= set(sgd.left_out)
    lines = importance_section(arms)
    assert lines[0] == "## Hyperparameter importance per optimizer"
    rows = [line for line in lines if line.startswith("| p |")]
    assert rows[0].startswith("| p | sgd | 16 | `sgd.lr` ") and rows[1].startswith("| p | adamw | 16 | "
                                                                                   "`adamw.weight_decay` ")
    arms.seeds = [0]
    assert "skipped: hyperparameter importance of arm p/sgd needs at least 10" in importance_section(arms)[-3]


def test_the_comparison_report_has_the_section(tmp_path):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=128, max_epochs=1), epochs=1, seed=0, device="cpu")
    problem = studies.Problem("tiny", trainer, spaces.mlp(depth=1, width=8, dropout=0.0, activation="relu"))
    comparison = studies.compare(problem, optimizers=["sgd", "adamw"], budget=10, reruns=1, one_shot=False,
                                 storage=f"sqlite:///{tmp_path / 'cmp.db'}", name="cmp", progress=False)
    md = comparison.report(tmp_path / "report").read_text()
    section = md.split("## Hyperparameter importance per optimizer\n")[1].split("\n## ")[0]
    assert "| tiny | sgd | 10 | `sgd." in section and "| tiny | adamw | 10 | `adamw." in section
