"""A character-level transformer language model on the Python standard library's own source text.

Every machine with Python has the data: the `.py` files of the standard library, read in sorted
order (nothing is downloaded). The model is a small decoder-only transformer (pre-norm blocks of
causal self-attention and an MLP, as in GPT-2, Radford et al. 2019; Karpathy's nanoGPT is the
model codebase) registered as the architecture family "char_transformer", so it trains on
tunelab's shared trainer like any built-in network. The workload's task hooks make it a language
model: a token-level cross-entropy loss, and validation bits per character (cross-entropy in
base 2), the objective the study minimises.

The space tunes the optimizer (AdamW, Lion or SGD) and its learning rate, a warm-up-cosine
schedule, and the width, depth, heads and dropout of the network.

    python examples/char_lm.py                                  # 20 trials of random search
    python examples/char_lm.py --strategy asha --epochs 60      # ASHA with a budget of 60 epochs
    python examples/char_lm.py --device cuda --chars 2000000    # a bigger run on a GPU

The study is stored in `char_lm.db`; running the script again continues it.
"""

from __future__ import annotations

import argparse
import math
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunelab import search, spaces, studies, trainers

VOCAB = 128  # ASCII; any other character reads as 0


def stdlib_text(n_chars: int) -> str:
    """The first `n_chars` characters of the standard library's `.py` files, in sorted path order.

    Raises:
        studies.WorkloadError: The standard library's sources are not on this machine, or hold
            fewer characters than asked for.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    have = 0
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        have += len(text)
        if have >= n_chars:
            return "".join(parts)[:n_chars]
    raise studies.WorkloadError(f"the standard library at {root} holds {have} characters of .py source, fewer than "
                                f"the {n_chars} asked for; ask for fewer")


def encode(text: str) -> torch.Tensor:
    """Character codes, 0..127 (non-ASCII characters read as 0)."""
    codes = torch.frombuffer(bytearray(text.encode("ascii", errors="replace")), dtype=torch.uint8).long()
    return torch.where(codes < VOCAB, codes, torch.zeros_like(codes))


def windows(codes: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: inputs `(n, block)` and next-character targets `(n, block)`."""
    n = (len(codes) - 1) // block
    x = codes[: n * block].view(n, block)
    y = codes[1 : n * block + 1].view(n, block)
    return x, y


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position: logits `(B, T, V)`, targets `(B, T)`."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def bits_per_char(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Validation bits per character: the mean cross-entropy in base 2."""
    return float(lm_loss(logits, y)) / math.log(2)


def workload(n_chars: int = 400_000, block: int = 64, val_fraction: float = 0.1) -> trainers.Workload:
    """The standard library's text as a character language-modelling workload.

    Args:
        n_chars: Characters read (the last `val_fraction` of them validate).
        block: Context length of every example.
        val_fraction: Share of the text kept for validation.
    """
    codes = encode(stdlib_text(n_chars))
    cut = int(len(codes) * (1 - val_fraction))
    x_train, y_train = windows(codes[:cut], block)
    x_val, y_val = windows(codes[cut:], block)
    return trainers.Workload.from_tensors(
        x_train, y_train, x_val=x_val, y_val=y_val, name=f"stdlib_chars_{n_chars}_{block}", n_outputs=VOCAB,
        input_dtype=torch.long, batch_size=32,
        max_epochs=10, loss=lm_loss, metrics={"bpc": bits_per_char}, objective="bpc", direction="minimize",
        recipe={"factory": "char_lm:workload", "kwargs": {"n_chars": n_chars, "block": block}})


# ------------------------------------------------------------------------------------------ the model
class Block(nn.Module):
    """A pre-norm transformer block: causal self-attention, then an MLP, each with a residual."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, width) -> (B, T, width)`."""
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """Token and position embeddings, `depth` blocks, a final norm and a linear read-out to the vocabulary."""

    def __init__(self, block: int, vocab: int, width: int, depth: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(width, heads, dropout) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Character codes `(B, T)` -> next-character logits `(B, T, vocab)`."""
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.drop(self.tokens(x) + self.positions(positions))
        return self.head(self.norm(self.blocks(h)))


def build(hp: Mapping[str, Any], input_shape: Sequence[int], n_outputs: int) -> nn.Module:
    """The `char_transformer` family's builder: `hp` holds width, depth, heads and dropout."""
    width, heads = int(hp["width"]), int(hp["heads"])
    if width % heads:
        raise spaces.ConfigError(f"width={width} is not divisible by heads={heads}")
    return CharTransformer(int(input_shape[0]), n_outputs, width, int(hp["depth"]), heads, float(hp["dropout"]))


def register() -> None:
    """Register the `char_transformer` family with tunelab's model registry (once; importing does it)."""
    if "char_transformer" not in spaces.models:
        spaces.models.register("char_transformer", spaces.ModelSpec(build, reference="Radford et al. 2019 (GPT-2)"))


register()


def space() -> spaces.Space:
    """Optimizer, learning rate, warm-up-cosine schedule, and the network's width, depth, heads and dropout."""
    return (spaces.optimizers(["adamw", "lion", "sgd"])
            | spaces.schedules(["warmup_cosine"])
            | spaces.model_space("char_transformer", width=spaces.Categorical((64, 96, 128, 192)),
                                 depth=spaces.Int(1, 4), heads=spaces.Categorical((2, 4)),
                                 dropout=spaces.Float(0.0, 0.3)))


STRATEGIES = {
    "random": lambda seed: search.Random(seed=seed),
    "asha": lambda seed: search.ASHA(seed=seed, min_epochs=1),
    "freeze_thaw": lambda seed: search.FreezeThaw(seed=seed),
    "bayesian": lambda seed: search.Bayesian(seed=seed),
}


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    """Run (or continue) the study the command line describes; return its best trial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="random")
    parser.add_argument("--trials", type=int, default=None, help="budget in trials (default 20 without --epochs)")
    parser.add_argument("--epochs", type=int, default=None, help="budget in epochs, summed over trials")
    parser.add_argument("--epochs-per-trial", type=int, default=10)
    parser.add_argument("--chars", type=int, default=400_000)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--storage", default="sqlite:///char_lm.db")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    trainer = trainers.Trainer(workload(args.chars, args.block), epochs=args.epochs_per_trial, seed=args.seed,
                               device=args.device)
    name = args.name or f"char_lm-{args.strategy}-{args.seed}"
    study = studies.create(name, args.storage, space=space(), trainer=trainer,
                           strategy=STRATEGIES[args.strategy](args.seed), load_if_exists=True)
    trials = args.trials if args.trials is not None or args.epochs is not None else 20
    best = study.optimize(trials=trials, epochs=args.epochs)
    if best is not None:
        print(f"best validation bits per character: {best.value:.3f} ({best.config})")
    return best


if __name__ == "__main__":
    main()
