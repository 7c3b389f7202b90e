"""Time of the metrics that phase3 runs thousands of times: ``binary_metrics`` (once per bootstrap
resample) and the threshold sweep over every distinct validation score (``thresholds.sweep_table``).

    .venv/bin/python benchmarks/bench_metrics.py [--n 2005] [--repeats 200]

Random scores of a test-sized split (2005 samples, 20% malignant), the median of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dermascreen.evaluation.metrics import binary_metrics
from dermascreen.evaluation.thresholds import candidate_thresholds, sweep_table


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2005)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = (rng.random(args.n) < 0.2).astype(np.int64)
    scores = np.clip(0.3 * labels + 0.7 * rng.random(args.n), 0, 1)
    thresholds = candidate_thresholds(scores)
    print(f"binary_metrics, {args.n} samples: {median_ms(lambda: binary_metrics(labels, scores), args.repeats):.2f} ms")
    sweep = median_ms(lambda: sweep_table(labels, scores, thresholds), max(1, args.repeats // 20))
    print(f"sweep_table, {len(thresholds)} thresholds: {sweep:.1f} ms")


if __name__ == "__main__":
    main()
