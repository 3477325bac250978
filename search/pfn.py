"""A learning-curve prior-fitted network (PFN) that ships with tunelab: in-context curve prediction.

A PFN (Müller, Hollmann, Pineda-Arango, Grabocka & Hutter, "Transformers Can Do Bayesian
Inference", ICLR 2022) is a transformer trained once on datasets sampled from a prior; given a
new dataset as context it outputs the posterior predictive distribution of a query, with no
fitting. Two freeze-thaw methods use one for learning curves, and tunelab's follows their
designs, written here from the papers:

- ifBO's FT-PFN (Rakotoarison et al., ICML 2024): context tokens are observed points
  `(configuration, epoch, value)` of many curves, query tokens are `(configuration, epoch)`, and
  the output is a distribution over the value. Queries attend to the context only, never to each
  other, so each prediction is the PFN's answer for that query alone.
- LC-PFN (Adriaensen et al., NeurIPS 2023): the output is a "bar distribution", a histogram over
  `BUCKETS` equal-width buckets of [0, 1] (uniform density inside a bucket), trained with the
  cross-entropy of the bucket of the true value.

The prior is `search.curve_prior`. The weights are trained by `benchmarks/train_pfn.py`
(reproducible: a seed and a number of steps) and shipped in this folder as `curve_pfn.pt`
(float16 tensors, loaded with `torch.load(weights_only=True)`, never downloaded) with its
provenance in `curve_pfn.json` (prior version, steps, seed, training-loss curve, held-out loss).

`PFNCurves` is the surrogate interface `search.FreezeThaw` uses (`surrogate="pfn"`) and
`search.CurvePruner` predicts with: values of a study (lower is better, as a `History` has them)
are mapped to the PFN's scale, where higher is better, by `Scale`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.search.curve_prior import D_MAX, Tasks

BUCKETS = 100
HEADROOM = 0.25  # the best value seen maps below 1: room for curves to improve on it
# What maps to 0 on the PFN's scale: "worst" (the worst value seen; the default) or "median" (the
# median value seen, worse values clipped to 0). Measured by `benchmarks/curve_pfn.py scale`: the
# median helps on the character-LM table and hurts on mnist1d_mlp, so the default stays "worst".
SCALE_ANCHOR = "worst"
MAX_CONTEXT = 250  # context tokens a prediction reads; longer histories are thinned (see PFNCurves.condition)
WEIGHTS = Path(__file__).resolve().parent / "curve_pfn.pt"
MANIFEST = WEIGHTS.with_suffix(".json")


class CurvePFN(nn.Module):
    """The transformer: `(x, t, y)` context tokens and `(x, t)` query tokens in, bucket logits out.

    Args:
        d_model: Width of the token embeddings.
        layers: Transformer encoder layers.
        heads: Attention heads.
        ff: Width of each layer's feed-forward block.
    """

    def __init__(self, d_model: int = 128, layers: int = 4, heads: int = 4, ff: int = 256) -> None:
        super().__init__()
        self.config = {"d_model": d_model, "layers": layers, "heads": heads, "ff": ff}
        self.embed_x = nn.Linear(D_MAX, d_model)
        self.embed_t = nn.Sequential(nn.Linear(2, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.embed_y = nn.Linear(1, d_model)
        self.query = nn.Parameter(torch.zeros(d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, BUCKETS))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Bucket logits of every token.

        Args:
            x: `(B, L, D_MAX)` configurations.
            t: `(B, L)` training progress, epoch / max epochs.
            y: `(B, L)` observed values in [0, 1] (ignored where `context` is False).
            context: `(B, L)` True for context tokens; queries and padding are False. Every row
                needs at least one context token.

        Returns:
            `(B, L, BUCKETS)` logits (meaningful for the query tokens).
        """
        h = self._embed(x, t) + torch.where(context.unsqueeze(-1), self.embed_y(y.unsqueeze(-1)), self.query)
        h = self.encoder(h, src_key_padding_mask=~context)  # every token reads the context only
        return self.head(h)

    def _embed(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Configuration and progress embeddings (progress as `t` and `log t`), shared by both paths."""
        return self.embed_x(x) + self.embed_t(torch.stack([t, torch.log(t.clamp_min(1e-3))], dim=-1))

    def predict(self, cx: torch.Tensor, ct: torch.Tensor, cy: torch.Tensor, qx: torch.Tensor, qt: torch.Tensor
                ) -> torch.Tensor:
        """Bucket logits of queries given one task's context: `forward`'s answer at a fraction of its cost.

        Since context tokens read only the context and queries read only the context, the context
        passes through each layer alone and the queries cross-attend to it: `m^2 + q m` attention
        instead of `(m + q)^2`, and no query's cost depends on another (tested equal to `forward`).

        Args:
            cx: `(m, D_MAX)` context configurations.
            ct: `(m,)` their training progress.
            cy: `(m,)` their values in [0, 1].
            qx: `(q, D_MAX)` query configurations.
            qt: `(q,)` their training progress.

        Returns:
            `(q, BUCKETS)` logits.
        """
        hc = (self._embed(cx, ct) + self.embed_y(cy.unsqueeze(-1))).unsqueeze(0)
        hq = (self._embed(qx, qt) + self.query).unsqueeze(0)
        for layer in self.encoder.layers:
            kv = layer.norm1(hc)
            hq = hq + layer.self_attn(layer.norm1(hq), kv, kv, need_weights=False)[0]
            hc = hc + layer.self_attn(kv, kv, kv, need_weights=False)[0]
            hq = hq + layer.linear2(layer.activation(layer.linear1(layer.norm2(hq))))
            hc = hc + layer.linear2(layer.activation(layer.linear1(layer.norm2(hc))))
        return self.head(hq)[0]


def bucket_of(y: torch.Tensor) -> torch.Tensor:
    """The bucket index of values in [0, 1]."""
    return (y.clamp(0.0, 1.0) * BUCKETS).long().clamp(max=BUCKETS - 1)


def nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative log density of `y` under the bar distribution (bucket cross-entropy minus log bucket width)."""
    return nn.functional.cross_entropy(logits.reshape(-1, BUCKETS), bucket_of(y).reshape(-1)) - math.log(BUCKETS)


@dataclass(frozen=True)
class Batch:
    """Training or evaluation tokens: contexts and queries of several tasks, padded to one length."""

    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor
    context: torch.Tensor
    query: torch.Tensor


def make_batch(tasks: Tasks, rng: np.random.Generator, max_context: int = 200, queries: int = 32) -> Batch:
    """Freeze-thaw-shaped tokens from sampled tasks: partial curves as context, later epochs as queries.

    Each configuration is observed for its first `n_i` epochs (none for about a third, as new
    candidates are); the queries are epochs after `n_i`, as a freeze-thaw decision asks.

    Args:
        tasks: Sampled tasks (`curve_prior.sample`).
        rng: Generator of the observation pattern.
        max_context: Most context tokens per task.
        queries: Query tokens per task.

    Returns:
        The batch.
    """
    B, n, T = tasks.y.shape
    L = max_context + queries
    x = torch.zeros(B, L, D_MAX)
    t = torch.ones(B, L)
    y = torch.zeros(B, L)
    context = torch.zeros(B, L, dtype=torch.bool)
    query = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        budget = int(rng.integers(1, max_context + 1))
        seen = np.where(rng.random(n) < 0.35, 0, np.ceil(T * rng.random(n) ** 1.5)).astype(int)
        while seen.sum() > budget:  # trim the longest curves until the context fits
            seen[int(np.argmax(seen))] -= 1
        if seen.sum() == 0:
            seen[int(rng.integers(n))] = 1
        ci = np.repeat(np.arange(n), seen)
        ce = np.concatenate([np.arange(k) for k in seen])
        m = len(ci)
        x[b, :m] = tasks.x[b, ci]
        t[b, :m] = tasks.t[ce]
        y[b, :m] = tasks.y[b, ci, ce]
        context[b, :m] = True
        open_ = np.where(seen < T)[0]
        qi = rng.choice(open_, size=queries) if open_.size else rng.integers(n, size=queries)
        qe = np.array([rng.integers(min(seen[i], T - 1), T) for i in qi])
        x[b, m:m + queries] = tasks.x[b, qi]
        t[b, m:m + queries] = tasks.t[qe]
        y[b, m:m + queries] = tasks.y[b, qi, qe]
        query[b, m:m + queries] = True
    return Batch(x=x, t=t, y=y, context=context, query=query)


def batch_loss(net: CurvePFN, batch: Batch) -> torch.Tensor:
    """Mean negative log density of the query tokens' true values."""
    logits = net(batch.x, batch.t, batch.y, batch.context)
    return nll(logits[batch.query], batch.y[batch.query])


def held_out(seed: int, tasks: int = 256, n: int = 30, T: int = 20) -> Batch:
    """The held-out batch the manifest's loss is measured on (rebuilt from its seed)."""
    from tunelab.search.curve_prior import sample

    g = torch.Generator().manual_seed(seed)
    return make_batch(sample(tasks, n, T, g), np.random.default_rng(seed))


def load(path: Path | str = WEIGHTS) -> CurvePFN:
    """The shipped network (or another weights file written by `benchmarks/train_pfn.py`), in eval mode.

    Raises:
        FileNotFoundError: The weights file is missing (reinstall tunelab, or train one with
            `python benchmarks/train_pfn.py`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no curve PFN weights at {path}: reinstall tunelab, or train them with "
                                f"`python benchmarks/train_pfn.py --out {path}`")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = CurvePFN(**{k: int(v) for k, v in saved["config"].items()})
    net.load_state_dict({k: v.float() for k, v in saved["state"].items()})
    return net.eval()


@cache
def shipped() -> CurvePFN:
    """The shipped network, loaded once per process."""
    return load()


def manifest(path: Path | str = MANIFEST) -> dict[str, Any]:
    """The provenance of the shipped weights (prior version, steps, seed, losses)."""
    return json.loads(Path(path).read_text())


def thin(lengths: list[int], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Which observed points a prediction reads: all of them, or at most `budget`, spread along each curve.

    Every curve keeps its last point (where it stands now); the rest of the budget goes to the
    curves in proportion to their length, each keeping evenly spaced epochs up to its last.

    Args:
        lengths: Observed epochs of each curve.
        budget: Most points kept.

    Returns:
        The curve index and the 1-based epoch of each kept point.
    """
    total = sum(lengths)
    if total <= budget:
        idx = np.repeat(np.arange(len(lengths)), lengths)
        ep = np.concatenate([np.arange(1, k + 1) for k in lengths]) if total else np.zeros(0, dtype=int)
        return idx, ep
    share = max(budget - len(lengths), 0) / total
    idx, ep = [], []
    for i, k in enumerate(lengths):
        if k == 0:
            continue
        keep = min(k, 1 + int(share * k))
        epochs = np.unique(np.round(np.linspace(k, 1, keep)).astype(int)) if keep > 1 else np.array([k])
        idx += [i] * len(epochs)
        ep += list(epochs)
    return np.array(idx), np.array(ep)


def features(space: Any, configs: list[dict[str, Any]]) -> np.ndarray:
    """Configurations as the PFN's inputs: one column per parameter in [0, 1], zero-padded to `D_MAX`.

    Numbers are their unit positions; a categorical is its index over its count minus one. A
    space with more than `D_MAX` parameters is projected onto `D_MAX` columns by a fixed random
    rotation squashed back into [0, 1] (the prior never saw such inputs: expect weaker predictions).

    Returns:
        `(len(configs), D_MAX)` float32.
    """
    from tunelab.search.encoding import MixedEncoding

    enc = MixedEncoding(space)
    X = np.stack([enc.encode(c) for c in configs]) if configs else np.zeros((0, enc.dim))
    for i, k in enc.cat_dims.items():
        X[:, i] = X[:, i] / max(k - 1, 1)
    if X.shape[1] > D_MAX:
        q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((X.shape[1], D_MAX)))
        X = 0.5 + 0.5 * np.tanh((X - 0.5) @ q * 2.0)
    out = np.zeros((X.shape[0], D_MAX), dtype=np.float32)
    out[:, : X.shape[1]] = X
    return out


@dataclass(frozen=True)
class Scale:
    """A study's values (lower is better) on the PFN's scale (higher is better, in [0, 1]).

    The worst value seen (or the median, with `SCALE_ANCHOR = "median"`) maps to 0 and the best to
    `1 / (1 + HEADROOM)`, leaving room above it.
    """

    worst: float
    span: float

    @classmethod
    def of(cls, values: list[float]) -> Scale:
        """The scale of the values seen."""
        worst = float(np.median(values)) if SCALE_ANCHOR == "median" else max(values)
        best = min(values)
        return cls(worst=worst, span=max(worst - best, 1e-9) * (1 + HEADROOM))

    def to_pfn(self, v: np.ndarray | float) -> np.ndarray:
        """Values to the PFN's scale."""
        return np.clip((self.worst - np.asarray(v, dtype=np.float64)) / self.span, 0.0, 1.0)

    def from_pfn(self, y: np.ndarray) -> np.ndarray:
        """PFN-scale values back to the study's."""
        return self.worst - np.asarray(y) * self.span


class PFNCurves:
    """The PFN as a freeze-thaw surrogate: condition on curves, predict any configuration at any epoch.

    The same interface as `PowerLawEnsemble` and `DeepKernelCurves` (`fit`, `condition`,
    `predict_curve`, `predict_new`, `y_std`), plus `probs_curve` / `probs_new` and `log_below`: the
    exact probability of the bar distribution, which FreezeThaw's MFPI acquisition and the pruner
    use instead of a Gaussian's.

    Args:
        max_epochs: Epochs of a full run (epoch `e` is training progress `e / max_epochs`).
        net: The network (default: the shipped one).
    """

    def __init__(self, max_epochs: int, net: CurvePFN | None = None) -> None:
        self.max_epochs = max_epochs
        self.net = net if net is not None else shipped()
        self._ctx: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._X: np.ndarray = np.zeros((0, D_MAX), dtype=np.float32)
        self._lengths: list[int] = []
        self.scale = Scale(worst=1.0, span=1.0)
        self.y_std = 1.0

    def fit(self, X: np.ndarray, curves: list[list[float]]) -> PFNCurves:
        """Condition on the curves (a PFN does not fit: it reads its context)."""
        return self.condition(X, curves)

    def condition(self, X: np.ndarray, curves: list[list[float]]) -> PFNCurves:
        """Take configurations `X` (`features` rows) and their curves so far as the context.

        Args:
            X: `(n, D_MAX)` configurations.
            curves: `n` lists of values by epoch (lower is better).

        Returns:
            self.
        """
        values = [v for c in curves for v in c]
        self.scale = Scale.of(values)
        self.y_std = float(np.std(values)) if len(values) > 1 else 1.0
        self._X = np.asarray(X, dtype=np.float32)
        self._lengths = [len(c) for c in curves]
        idx, ep = thin(self._lengths, MAX_CONTEXT)
        vals = np.array([curves[i][e - 1] for i, e in zip(idx, ep, strict=True)])
        self._ctx = (torch.from_numpy(self._X[idx]), torch.tensor(ep / self.max_epochs, dtype=torch.float32),
                     torch.tensor(self.scale.to_pfn(vals), dtype=torch.float32))
        return self

    def _probs(self, Xq: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """`(q, BUCKETS)` bucket probabilities of queries at `epochs` (1-based)."""
        if self._ctx is None:
            raise RuntimeError("PFNCurves.condition(X, curves) must come before a prediction")
        cx, ct, cy = self._ctx
        qx = torch.as_tensor(np.asarray(Xq, dtype=np.float32))
        qt = torch.tensor(np.asarray(epochs) / self.max_epochs, dtype=torch.float32)
        with torch.inference_mode():
            logits = self.net.predict(cx, ct, cy, qx, qt)
        return torch.softmax(logits.double(), -1).numpy()

    def probs_curve(self, indices: list[int], epochs: list[int] | np.ndarray) -> np.ndarray:
        """`(q, BUCKETS)` PFN-scale bucket probabilities of conditioned curve `indices[j]` at `epochs[j]`."""
        return self._probs(self._X[list(indices)], np.asarray(epochs))

    def probs_new(self, X: np.ndarray, epoch: int) -> np.ndarray:
        """`(q, BUCKETS)` PFN-scale bucket probabilities of new configurations `X` at `epoch`."""
        return self._probs(X, np.full(len(X), epoch))

    def moments(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (the study's scale) of bucket probabilities `p`."""
        centres = (np.arange(BUCKETS) + 0.5) / BUCKETS
        mean_y = p @ centres
        var_y = p @ centres**2 - mean_y**2 + 1.0 / (12 * BUCKETS**2)
        return self.scale.from_pfn(mean_y), var_y * self.scale.span**2

    def log_below(self, p: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
        """Log P(value < threshold) (the study's scale) of bucket probabilities `p`.

        That is log P(y > the threshold's PFN-scale image), the density uniform inside each bucket.

        Args:
            p: `(q, BUCKETS)` bucket probabilities.
            threshold: One threshold for every row, or `(q,)` thresholds, one per row.

        Returns:
            `(q,)` log probabilities.
        """
        edge = np.broadcast_to(self.scale.to_pfn(threshold) * BUCKETS, (len(p),))
        k = np.minimum(edge.astype(int), BUCKETS - 1)
        tail = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # tail[:, j] = P(bucket >= j)
        rows = np.arange(len(p))
        above = np.where(k + 1 < BUCKETS, tail[rows, np.minimum(k + 1, BUCKETS - 1)], 0.0) + p[rows, k] * (k + 1 - edge)
        return np.log(np.clip(above, 1e-300, 1.0))

    def predict_curve(self, indices: list[int], epochs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of conditioned curve `indices[j]` at `epochs[j]` (the study's scale)."""
        return self.moments(self.probs_curve(indices, epochs))

    def predict_new(self, X: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of new configurations `X` at `epoch` (the study's scale)."""
        return self.moments(self.probs_new(X, epoch))

    def quantiles(self, indices: list[int], epochs: list[int], levels: list[float]) -> np.ndarray:
        """`(len(indices), len(levels))` predictive quantiles (the study's scale), for calibration checks."""
        p = self.probs_curve(indices, epochs)
        cdf = np.cumsum(p, 1)
        out = np.empty((len(p), len(levels)))
        for j, level in enumerate(levels):
            # the PFN scale is higher-is-better: the study's level-quantile is the PFN's (1 - level)-quantile
            target = 1.0 - level
            k = np.clip((cdf < target).sum(1), 0, BUCKETS - 1)
            below = np.where(k > 0, cdf[np.arange(len(p)), k - 1], 0.0)
            frac = np.clip((target - below) / np.maximum(p[np.arange(len(p)), k], 1e-12), 0, 1)
            out[:, j] = self.scale.from_pfn((k + frac) / BUCKETS)
        return out
