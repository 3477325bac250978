"""Is optimizer X really better than AdamW here? Six optimizers tuned under equal budgets.

    python examples/compare_optimizers.py                 # ~11 minutes on 2 CPU cores
    tunelab compare --name compare-optimizers --storage sqlite:///compare_optimizers.db --report-only

SGD with momentum, AdamW, AdaBelief, ACProp, SAM and Lion, each tuned with 20 quasi-random
trials (scrambled Halton, as AlgoPerf) of 20 epochs on three problems: MNIST-1D with an MLP,
MNIST-1D with the published CNN, and scikit-learn's digits with a small 2-D CNN. SAM pays for
its second gradient evaluation with half the epochs per trial, so every trial of every
optimizer costs the same compute. The selected configuration of each study and each
optimizer's defaults are retrained on 3 fresh seeds, and the report (Markdown and PNG plots)
goes to `docs/compare_optimizers/`.

Everything is stored in `compare_optimizers.db`: stop it at any time and run the same command
again to finish it; a finished comparison only rewrites the report.
"""

from __future__ import annotations

import argparse
import time

from tunelab import studies

OPTIMIZERS = ["sgd", "adamw", "adabelief", "acprop", "sam", "lion"]
PROBLEMS = ["mnist1d_mlp", "mnist1d_cnn", "digits_cnn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite:///compare_optimizers.db")
    parser.add_argument("--out", default="docs/compare_optimizers")
    parser.add_argument("--budget", type=int, default=20, help="trials per tuning study")
    parser.add_argument("--reruns", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="trials trained at once (a process pool per study)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    t0 = time.monotonic()
    problems = [studies.problems.get(name)(device=args.device) for name in PROBLEMS]
    comparison = studies.compare(
        problems,
        optimizers=OPTIMIZERS,
        schedules=["cosine"],
        budget=args.budget,
        reruns=args.reruns,
        storage=args.storage,
        name="compare-optimizers",
        n_workers=args.workers,
    )
    path = comparison.report(args.out)
    columns = ["problem", "optimizer", "one_shot_test", "best_val@1", "best_val@5", "best_val@budget", "test_mean",
               "test_std", "diverged", "cost_per_step"]
    print(comparison.table()[columns].round(4).to_string(index=False))
    print(comparison.profile()[["optimizer", "score"]].round(3).to_string(index=False))
    print(f"report: {path} ({(time.monotonic() - t0) / 60:.1f} minutes)")


if __name__ == "__main__":
    main()
