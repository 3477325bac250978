"""tunelab: search the hyperparameters and architectures of PyTorch models.

Five strategy families (Bayesian optimisation, freeze-thaw multi-fidelity search, self-tuning
networks, evolutionary and differentiable architecture search) drive one shared trainer over
pluggable spaces, and every trial persists in an SQL database that a study resumes from.

    from tunelab import search, spaces, studies, trainers   # or: import tunelab as tl

The four subpackages are imported on first use (`tl.studies`), so `import tunelab` is cheap.

This file is the `tunelab` package's `__init__`: the repository's four top-level folders are
the subpackages `tunelab.spaces`, `tunelab.search`, `tunelab.trainers` and `tunelab.studies`
(setuptools' `package-dir` maps them; see pyproject.toml).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__version__ = "0.4.0"

SUBPACKAGES = ("spaces", "trainers", "search", "studies")


def lazy_name(namespace: dict[str, Any], where: Mapping[str, str], name: str) -> Any:
    """Load a package's public name on first use (the body of a PEP 562 module `__getattr__`).

    Args:
        namespace: The package's `globals()`; the loaded value is bound there, so the next use
            is a plain lookup.
        where: Public name -> `"module:attribute"`, the module relative to the package.
        name: The name asked for.

    Raises:
        AttributeError: `name` is not one of `where`.
    """
    if name not in where:
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
    module, _, attr = where[name].partition(":")
    value = getattr(importlib.import_module(f"{namespace['__name__']}.{module}"), attr)
    namespace[name] = value
    return value


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f"tunelab.{name}")
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *SUBPACKAGES])


__all__ = ["__version__", *SUBPACKAGES]
