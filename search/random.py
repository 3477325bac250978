"""`search.Random`: uniform random search, or quasi-random search with scrambled Sobol / Halton points.

Random search is the baseline of every other strategy (Bergstra & Bengio, "Random Search for
Hyper-Parameter Optimization", JMLR 2012). The quasi-random variant follows AlgoPerf (Dahl et
al., "Benchmarking Neural Network Training Algorithms", 2023), which tunes its baselines with
scrambled Halton points because they cover a space more evenly than independent draws at the
small budgets of hyperparameter tuning. Points are taken from `scipy.stats.qmc` (Owen-scrambled
Sobol, Halton with random permutations) in the space's compact encoding (one dimension per
parameter; a categorical takes `floor(u * k)`).

Proposal k is a pure function of `(seed, k)`: point k of the seeded sequence, or for the
uniform variant a draw from a generator seeded with `(seed, k)`.
"""

from __future__ import annotations

import warnings

import numpy as np

from tunelab.search.base import History, Request, Strategy
from tunelab.search.encoding import MixedEncoding
from tunelab.spaces import ConfigError, Space

QUASI = ("sobol", "halton")


def quasi_point(kind: str, dim: int, seed: int, index: int) -> np.ndarray:
    """Point `index` (0-based) of a scrambled Sobol or Halton sequence in `[0, 1]^dim`."""
    from scipy.stats import qmc  # imported on use: scipy.stats costs a second to import

    engine_cls = qmc.Sobol if kind == "sobol" else qmc.Halton
    engine = engine_cls(d=max(dim, 1), scramble=True, rng=np.random.default_rng(seed))
    if index:
        engine.fast_forward(index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol's "balance properties" warning for n not a power of 2
        return engine.random(1)[0, :dim]


class Random(Strategy):
    """Random search over any space.

    Args:
        seed: Seed of the draws.
        quasi: False for independent uniform draws; "sobol" or "halton" (True means "halton",
            AlgoPerf's choice) for a scrambled low-discrepancy sequence.

    Raises:
        ConfigError: An unknown `quasi` value.
    """

    name = "random"
    multi_objective = True  # it never reads values

    def __init__(self, seed: int = 0, quasi: bool | str = False) -> None:
        super().__init__(seed)
        if quasi is True:
            quasi = "halton"
        if quasi not in (False, *QUASI):
            raise ConfigError(f"Random(quasi=...) must be False, True, 'sobol' or 'halton', got {quasi!r}")
        self.quasi = quasi

    def propose(self, space: Space, index: int) -> dict:
        """The config of proposal number `index` (0-based)."""
        if self.quasi:
            enc = MixedEncoding(space)
            return enc.from_unit(quasi_point(self.quasi, enc.dim, self.seed, index))
        return space.sample(np.random.default_rng([self.seed, index]))

    def ask(self, history: History) -> Request:
        """Start the next point of the sequence."""
        return Request.start(self.propose(history.space, len(history.trials)))
