"""`search.Enqueue`: train given configurations in order, each on a seed of its own, then stop.

Not a search: the strategy behind evaluations whose configurations are already decided, such as
a family's defaults (the one-shot baseline of Schmidt et al. 2021) or the configuration a
search selected, rerun on fresh seeds to measure its test metric and its spread
(`studies.compare` uses it for both). Like `optuna.Study.enqueue_trial`, but stored with the
study, so a killed evaluation resumes where it stopped and never repeats a finished run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.search.base import History, Request, Strategy
from tunelab.spaces import ConfigError


class Enqueue(Strategy):
    """Propose `configs[0]`, `configs[1]`, ... in order, then nothing (the study ends).

    Args:
        configs: The configurations (JSON-ready dicts); each is validated against the study's
            space when it starts.
        seeds: The seed of each configuration's run (None: the trainer's seed for all).
        seed: Unused by the proposals; kept for the `Strategy` contract.

    Raises:
        ConfigError: No configurations, a configuration that is not a JSON-ready mapping, or a
            `seeds` list of another length than `configs`.
    """

    name = "enqueue"
    multi_objective = True  # it trains what it was given

    def __init__(
        self, configs: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None = None, seed: int = 0
    ) -> None:
        super().__init__(seed)
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence) or not configs:
            raise ConfigError(f"Enqueue needs a non-empty list of configurations, got {configs!r}")
        checked = []
        for i, config in enumerate(configs):
            if not isinstance(config, Mapping):
                raise ConfigError(f"Enqueue: configs[{i}] must be a dict of parameter values, got {config!r}")
            try:
                checked.append(json.loads(json.dumps(dict(config))))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"Enqueue: configs[{i}] is not JSON-ready ({err}); use plain numbers, "
                                  f"strings and booleans") from None
        self.configs = checked
        if seeds is not None:
            seeds = list(seeds)
            if len(seeds) != len(checked):
                raise ConfigError(f"Enqueue: {len(seeds)} seeds for {len(checked)} configurations; give one seed "
                                  f"per configuration (or seeds=None for the trainer's)")
            for s in seeds:
                if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
                    raise ConfigError(f"Enqueue: seeds must be ints, got {s!r}")
            seeds = [int(s) for s in seeds]
        self.seeds = seeds

    def ask(self, history: History) -> Request | None:
        """The next configuration of the list, or None once all were proposed."""
        i = len(history.trials)
        if i >= len(self.configs):
            return None
        return Request.start(self.configs[i], seed=None if self.seeds is None else self.seeds[i])
