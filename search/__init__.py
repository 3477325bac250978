"""How the next configuration is chosen: `Strategy`, `Request`, `History` and the strategy families.

Strategies are functions of the study's history and their seed; `studies`
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

from typing import TYPE_CHECKING, Any

from tunelab.search.base import History, Request, Strategy, TrialView, config_key, strategies
from tunelab.search.bayesian import Bayesian
from tunelab.search.darts import Darts
from tunelab.search.darts_routine import DartsSettings
from tunelab.search.encoding import MixedEncoding
from tunelab.search.enqueue import Enqueue
from tunelab.search.evolution import Evolution, mutate
from tunelab.search.freeze_thaw import FreezeThaw
from tunelab.search.hyperband import ASHA, Hyperband
from tunelab.search.optuna_sampler import OptunaSampler
from tunelab.search.pruner import CurvePruner
from tunelab.search.random import Random
from tunelab.search.stn import SelfTuning
from tunelab.search.stn_routine import StnSettings
from tunelab.search.supernet import Supernet
from tunelab.trainers.routines import Routine, routines

if TYPE_CHECKING:  # the learning-curve surrogates load on first use (gpytorch with them); FreezeThaw imports its own
    from tunelab.search.curves import FreezeThawGP
    from tunelab.search.deep_kernel import DeepKernelCurves
    from tunelab.search.power_laws import PowerLawEnsemble

_MODELS = {
    "DeepKernelCurves": "deep_kernel:DeepKernelCurves",
    "PFNCurves": "pfn:PFNCurves",
    "FreezeThawGP": "curves:FreezeThawGP",
    "PowerLawEnsemble": "power_laws:PowerLawEnsemble",
}


def __getattr__(name: str) -> Any:
    from tunelab import lazy_name

    return lazy_name(globals(), _MODELS, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODELS})

__all__ = [
    "ASHA",
    "Bayesian",
    "CurvePruner",
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
    "PFNCurves",
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
