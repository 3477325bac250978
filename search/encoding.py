"""A compact encoding of a `Space`: one dimension per searchable parameter.

`Space.encode` gives every categorical a one-hot block, which suits distances and neural
surrogates. Low-discrepancy sequences and GP kernels with categorical dimensions (BoTorch's
`MixedSingleTaskGP`, `optimize_acqf_mixed_alternating`) want one dimension per parameter:

- a float or integer parameter is its unit position in [0, 1] (log scale for log parameters);
- a categorical (or a choice of branches) is its category index 0..k-1.

Parameters that a config's choices leave inactive take a neutral value (0.5, or index 0), so
configs that differ only in inactive parameters encode the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tunelab.spaces import Config, ConfigError, Space


class MixedEncoding:
    """One dimension per searchable parameter of `space` (floats/ints in [0, 1], categories as indices).

    Args:
        space: The space to encode.

    Attributes:
        dim: Number of dimensions.
        cat_dims: Dimension -> number of categories, for the categorical dimensions.
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self.slots = tuple(space.layout)
        self.dim = len(self.slots)
        self.cat_dims: dict[int, int] = {
            i: s.stop - s.start for i, s in enumerate(self.slots) if s.kind == "categorical"
        }

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """A config as a float64 vector of shape `(dim,)`."""
        onehot = self.space.encode(config)
        x = np.empty(self.dim, dtype=np.float64)
        for i, s in enumerate(self.slots):
            block = onehot[s.start : s.stop]
            if s.kind == "categorical":
                x[i] = float(np.argmax(block)) if s.name in config else 0.0
            else:
                x[i] = block[0]
        return x

    def decode(self, x: np.ndarray | Any) -> Config:
        """The config of a vector (categories rounded to the nearest index, numbers clipped)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.dim:
            raise ConfigError(f"MixedEncoding.decode needs a vector of length {self.dim}, got {x.shape[0]}")
        onehot = np.empty(self.space.dim, dtype=np.float64)
        for i, s in enumerate(self.slots):
            if s.kind == "categorical":
                k = s.stop - s.start
                onehot[s.start : s.stop] = 0.0
                onehot[s.start + int(np.clip(np.rint(x[i]), 0, k - 1))] = 1.0
            else:
                onehot[s.start] = np.clip(x[i], 0.0, 1.0)
        return self.space.decode(onehot)

    def from_unit(self, u: np.ndarray | Any) -> Config:
        """The config of a point of the unit cube (a categorical dimension takes `floor(u * k)`)."""
        u = np.asarray(u, dtype=np.float64).reshape(-1)
        x = u.copy()
        for i, k in self.cat_dims.items():
            x[i] = min(int(u[i] * k), k - 1)
        return self.decode(x)

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Re-encode the config of `x`, so that inactive dimensions take their neutral values."""
        return self.encode(self.decode(x))
