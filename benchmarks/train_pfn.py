"""Train the learning-curve PFN that ships with tunelab (`search/curve_pfn.pt` and its manifest).

    python benchmarks/train_pfn.py                      # the shipped weights: seed 0, 8,000 steps
    python benchmarks/train_pfn.py --steps 200 --out /tmp/pfn.pt   # a quick try

Reproducible: the prior's tasks, the observation patterns and the initialisation all come from
`--seed`, and the schedule is a fixed number of steps (AdamW, linear warm-up, cosine decay). On
2 CPU cores the default takes about an hour; a GPU (`--device cuda`) is faster. The weights are
saved as float16 tensors (loaded with `torch.load(weights_only=True)`), and the manifest beside
them records the prior's version, steps, seed, settings, the training-loss curve (mean of every
`--log-every` steps) and the loss on a held-out batch of prior tasks (seed + 1) measured with the
saved float16 weights, which `tests/search/test_curve_pfn.py` reproduces.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.search import pfn
from tunelab.search.curve_prior import PRIOR_VERSION, sample


def train(steps: int, seed: int, batch: int = 16, lr: float = 5e-4, log_every: int = 100, device: str = "cpu",
          net_config: dict | None = None, quiet: bool = False) -> tuple[pfn.CurvePFN, list[float]]:
    """Train a `CurvePFN` on the prior; returns it (on the CPU, eval mode) and its loss curve."""
    torch.manual_seed(seed)  # the initialisation of this process's network: the script owns the process
    net = pfn.CurvePFN(**(net_config or {})).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    curve, window, t0 = [], [], time.perf_counter()
    net.train()
    for step in range(steps):
        T = int(rng.integers(5, 51))
        tasks = sample(batch, int(rng.integers(2, 41)), T, g)
        b = pfn.make_batch(tasks, rng)
        b = pfn.Batch(*(v.to(device) for v in (b.x, b.t, b.y, b.context, b.query)))
        loss = pfn.batch_loss(net, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            curve.append(round(float(np.mean(window)), 5))
            window = []
            if not quiet:
                print(f"step {step + 1:>6}/{steps}  loss {curve[-1]:.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
    return net.cpu().eval(), curve


def held_out_loss(net: pfn.CurvePFN, seed: int) -> float:
    """The mean negative log density on the held-out batch of `seed`."""
    with torch.inference_mode():
        return float(pfn.batch_loss(net, pfn.held_out(seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=pfn.WEIGHTS)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net, curve = train(args.steps, args.seed, args.batch, args.lr, args.log_every, args.device)
    state = {k: v.half() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": net.config, "state": state}, args.out)
    shipped = pfn.load(args.out)  # the loss as a user of the float16 file measures it
    seconds = time.perf_counter() - t0
    manifest = {
        "prior_version": PRIOR_VERSION, "steps": args.steps, "seed": args.seed, "batch": args.batch, "lr": args.lr,
        "net": net.config, "parameters": sum(p.numel() for p in net.parameters()), "buckets": pfn.BUCKETS,
        "held_out_seed": args.seed + 1, "held_out_loss": round(held_out_loss(shipped, args.seed + 1), 6),
        "loss_curve_every": args.log_every, "loss_curve": curve,
        "command": "python benchmarks/train_pfn.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, python {platform.python_version()}, torch {torch.__version__}, "
                   f"{args.threads} threads, {args.device}",
        "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d"),
        "bytes": args.out.stat().st_size,
    }
    args.out.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{args.out} ({manifest['bytes'] / 1e6:.2f} MB), held-out loss {manifest['held_out_loss']}, "
          f"{seconds / 60:.1f} minutes")


if __name__ == "__main__":
    main()
