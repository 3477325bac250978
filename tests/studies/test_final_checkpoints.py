"""Final checkpoints are written only when kept: pauses, resumed studies, populations, user code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import small_space

from tunelab import search, spaces, studies, trainers


def _files(study) -> list[str]:
    return sorted(p.name for p in (Path(study.artifacts) / study.folder).glob("trial-*.pt"))


def test_a_pause_at_the_last_epoch_writes_its_checkpoint_even_when_the_end_would_not(tmp_path, small_trainer):
    config = small_space().sample(np.random.default_rng(0))
    path = tmp_path / "run.pt"
    result = small_trainer.fit(config, checkpoint=path, report=lambda e: "pause" if e.epoch == 2 else None,
                               keep_final=lambda e: False)
    assert result.status == "paused" and path.exists() and result.checkpoint == str(path)
    assert small_trainer.fit(config, checkpoint=path, keep_final=lambda e: False).status == "complete"


def test_the_default_keeps_the_files_an_earlier_call_kept(tmp_path, small_trainer):
    study = studies.create("k", f"sqlite:///{tmp_path / 'k.db'}", space=small_space(), trainer=small_trainer,
                           strategy=search.Random(seed=0))
    study.optimize(trials=3, progress=False, keep_checkpoints="best")
    kept = _files(study)
    assert kept == [f"trial-{study.best.number}.pt"]
    study.optimize(trials=6, progress=False)  # keep_checkpoints="none": nothing new, nothing taken away
    assert _files(study) == kept and study.checkpoint(int(kept[0][6:-3])) is not None


def test_population_members_write_no_final_checkpoint_by_default(tmp_path, monkeypatch):
    from tunelab.trainers import population as population_module

    sizes = []
    fit = population_module.Population.fit
    monkeypatch.setattr(population_module.Population, "fit",
                        lambda self, members, **kw: (sizes.append(len(members)), fit(self, members, **kw))[1])
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)
    space = spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=16)
    study = studies.create("p", f"sqlite:///{tmp_path / 'p.db'}", space=space, trainer=trainer,
                           strategy=search.Random(seed=0))
    study.optimize(trials=4, population=4, progress=False, checkpoint_seconds=None)
    assert sizes == [4] and _files(study) == []
    best = studies.create("b", f"sqlite:///{tmp_path / 'p.db'}", space=space, trainer=trainer,
                          strategy=search.Random(seed=0))
    best.optimize(trials=4, population=4, progress=False, keep_checkpoints="all")
    assert len(_files(best)) == 4


class _OldTrainable(trainers.Objective):
    """A trainable written to the 0.3.0 protocol: its `fit` has no `keep_final`."""

    def fit(self, config, *, until_epoch=None, checkpoint=None, report=None, seed=None, checkpoint_seconds=None):
        return super().fit(config, until_epoch=until_epoch, checkpoint=checkpoint, report=report, seed=seed,
                           checkpoint_seconds=checkpoint_seconds)


def _bowl(config):
    return (config["x"] - 0.3) ** 2


@pytest.mark.parametrize("keep", ["none", "best"])
def test_a_trainable_whose_fit_takes_no_keep_final_still_trains(tmp_path, keep):
    study = studies.create("o", f"sqlite:///{tmp_path / 'o.db'}", space=spaces.Space(x=spaces.Float(0.0, 1.0)),
                           trainer=_OldTrainable(_bowl), strategy=search.Random(seed=0))
    study.optimize(trials=3, progress=False, keep_checkpoints=keep)
    assert [t.state for t in study.trials] == ["complete"] * 3


def _loop(config, run):
    state = run.load() or {"epoch": 0}
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        if epoch == 1:
            run.save({"epoch": epoch})  # saved once, early; never at the end
        if run.report(loss=(config["x"] - 0.5) ** 2 + 1.0 / epoch + 0 * state["epoch"]) != "continue":
            return


def test_a_function_that_did_not_save_at_its_end_leaves_no_older_file_as_its_checkpoint(tmp_path):
    fn = trainers.Function(_loop, epochs=3, metric="loss", direction="minimize")
    study = studies.create("f", f"sqlite:///{tmp_path / 'f.db'}", space=spaces.Space(x=spaces.Float(0.0, 1.0)),
                           trainer=fn, strategy=search.Random(seed=0))
    study.optimize(trials=2, progress=False, keep_checkpoints="all", checkpoint_seconds=None)
    assert [t.state for t in study.trials] == ["complete"] * 2
    assert _files(study) == [] and all(study.checkpoint(t.number) is None for t in study.trials)
