"""How the next configuration is chosen: `Strategy`, `Request`, `History` and the strategy families.

Strategies are functions of the study's history and their seed (DESIGN section 4); `studies`
runs them. Available: `Random` (uniform or scrambled Sobol/Halton), `Bayesian` (BoTorch GP +
qLogNEI) and `OptunaSampler` (any Optuna sampler). `strategies` is the registry through which a
stored study rebuilds its strategy by name.
"""

from __future__ import annotations

from search.base import History, Request, Strategy, TrialView, config_key, strategies
from search.bayesian import Bayesian
from search.encoding import MixedEncoding
from search.optuna_sampler import OptunaSampler
from search.random import Random

__all__ = [
    "Bayesian",
    "History",
    "MixedEncoding",
    "OptunaSampler",
    "Random",
    "Request",
    "Strategy",
    "TrialView",
    "config_key",
    "strategies",
]
