"""How the next configuration is chosen: `Strategy`, `Request`, `History` and the strategy families.

Strategies are functions of the study's history and their seed (DESIGN section 4); `studies`
runs them. Available: `Random` (uniform or scrambled Sobol/Halton), `Bayesian` (BoTorch GP +
qLogNEI), `OptunaSampler` (any Optuna sampler), `Evolution` (regularized evolution, Real et
al. 2019, or differential evolution; any space, architecture cells included), and the
multi-fidelity strategies that pause and resume trials: `FreezeThaw` (Deep Power Laws, DyHPO's
deep kernel or Swersky et al. 2014's learning-curve GP, with ifBO's MFPI-random),
`Hyperband` and `ASHA`. `Enqueue` trains given configurations on given seeds (defaults,
reruns of a selected configuration). `Darts` searches a cell space by differentiable bilevel
optimisation (Liu et al. 2019; DARTS-PT selection, Wang et al. 2021) through its own routine,
then retrains the genotype it finds.
`SelfTuning` learns regularisation hyperparameters online in one run (Self-Tuning Networks,
MacKay et al. 2019; Delta-STN, Bae & Grosse 2020) and replays the schedule it finds.
`strategies` is the registry through which a stored study rebuilds its strategy by name, and
`routines` the one through which executors find a unit of work's training loop.
"""

from __future__ import annotations

from search.base import History, Request, Strategy, TrialView, config_key, strategies
from search.bayesian import Bayesian
from search.curves import FreezeThawGP
from search.darts import Darts
from search.darts_search import DartsSettings
from search.deep_kernel import DeepKernelCurves
from search.encoding import MixedEncoding
from search.enqueue import Enqueue
from search.evolution import Evolution, mutate
from search.freeze_thaw import FreezeThaw
from search.hyperband import ASHA, Hyperband
from search.optuna_sampler import OptunaSampler
from search.power_laws import PowerLawEnsemble
from search.random import Random
from search.routines import Routine, routines
from search.stn import SelfTuning
from search.stn_routine import StnSettings
from search.supernet import Supernet

__all__ = [
    "ASHA",
    "Bayesian",
    "Darts",
    "DartsSettings",
    "DeepKernelCurves",
    "Enqueue",
    "Evolution",
    "FreezeThaw",
    "FreezeThawGP",
    "History",
    "Hyperband",
    "MixedEncoding",
    "OptunaSampler",
    "PowerLawEnsemble",
    "Random",
    "Request",
    "Routine",
    "SelfTuning",
    "StnSettings",
    "Strategy",
    "Supernet",
    "TrialView",
    "config_key",
    "mutate",
    "routines",
    "strategies",
]
