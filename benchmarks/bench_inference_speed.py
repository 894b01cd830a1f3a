"""Throughput of ``infer_dics`` on short trains: trains/s with and without posterior summaries, network vs the rest.

Trains: ``--trains`` (2,000) pieces of ``--spikes`` (50) consecutive spikes cut from the held-out STG trains
(tests/data/heldout/current_stg, k = 1, treated as unknown), each shifted to start at 0. Weights are loaded and
every function warmed up before timing; each timing is the best of ``--repeats``.

Cost model (per train of n spikes, k unknown):

- network: one window of n - 1 ISIs (trains of at most 129 spikes), batched; O(n * width^2 + n^2 * width) each.
  Windows are batched sorted by length, and a batch without padding runs attention without a mask (~2x faster on
  CPU). Timed by wrapping ``Predictor.predict_windows``.
- the rest of ``infer_dics``: features, shape and library statistics, window combination, novelty and library
  look-ups. These run for all trains at once: a few numpy calls per distinct train length (not per train), two
  k-d tree queries (novelty against the reference shapes, the time-scale library), then a
  Python loop of scalar arithmetic and reason strings (a few microseconds per train).
- posterior=True adds the train context (statistics as above) and the summaries: one pass of the amortised summary
  head (:mod:`spikeinterface_dic.inference.summary_head`, a 3-layer MLP per train) by default; "sampled" forces the
  flows' ``SUMMARY_SAMPLES`` draws per train (timed by wrapping ``PosteriorEstimator.sample``), the same run.
- one unit's 1,000 samples (k unknown): the joint flow's inversion (per transform, the first group of parameters on
  one row, the second on 1,000 rows: ``posterior._invert``, each group followed by its spline inverse, one compiled
  loop over the draws), its calibration, and, for a unit with draws at k = 1, the known_k flow's 1,000 draws (the
  point-mass rule); torch's threads (two here) above 512 rows. Printed with each flow's uncalibrated draws alone.

The baseline section times the per-train reference functions the batched ones replaced (one call per train) against
the batched calls on the same trains, and prints the ratios. For the whole ``infer_dics`` before the change, run this
script with ``PYTHONPATH`` pointing at an older checkout (the script only calls public functions for that part).

    python benchmarks/bench_inference_speed.py [--trains 2000] [--spikes 50] [--repeats 3] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import spikeinterface_dic as sdic
from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.inference.data import load_training_data
from spikeinterface_dic.inference.predict import Predictor, load_predictor

HELDOUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "heldout" / "current_stg"


def cut_trains(n_trains: int, n_spikes: int, seed: int = 0) -> list[np.ndarray]:
    """``n_trains`` pieces of ``n_spikes`` consecutive spikes of the held-out STG trains, each starting at 0."""
    pool = [t for t in load_training_data(HELDOUT)["trains"] if t.size >= n_spikes]
    rng = np.random.default_rng(seed)
    out = []
    for index in range(n_trains):
        train = pool[index % len(pool)]
        start = int(rng.integers(0, train.size - n_spikes + 1))
        out.append(train[start : start + n_spikes] - train[start])
    return out


class _Timer:
    """Wraps a method to add up the seconds spent in it (outermost calls only: the point-mass rule's known_k draws
    are a call of the same method inside a call, which must not count twice)."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.seconds, self.depth = owner, name, 0.0, 0
        self.original = getattr(owner, name)

    def __enter__(self):
        original = self.original

        def timed(*args, **kwargs):
            started = time.perf_counter()
            self.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - started

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def time_infer_dics(trains, posterior: bool, repeats: int) -> tuple[float, float, float]:
    """Best total seconds of infer_dics and, for that run, the seconds in the network and in the flows."""
    from spikeinterface_dic.inference.posterior import PosteriorEstimator

    best = (np.inf, 0.0, 0.0)
    for _ in range(repeats):
        with _Timer(Predictor, "predict_windows") as network, _Timer(PosteriorEstimator, "sample") as flows:
            started = time.perf_counter()
            sdic.infer_dics(trains, model="stg", posterior=posterior)
            total = time.perf_counter() - started
        best = min(best, (total, network.seconds, flows.seconds))
    return best


def best_of(function, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def baseline_components(trains, repeats: int) -> list[tuple[str, float, float]]:
    """(name, per-train reference s, batched s) for the pieces of per-train work that were vectorised."""
    from spikeinterface_dic.inference import shape
    from spikeinterface_dic.inference.common import combine_windows, combine_windows_by_owner

    predictor = load_predictor("stg")
    library, reference = predictor.time_scale_library, predictor.shape_reference
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(len(trains)), rng.integers(1, 4, len(trains)))
    means, stds = rng.normal(size=(owner.size, 3)), rng.lognormal(size=(owner.size, 3))
    shapes = shape.shape_statistics_batch(trains)
    library_shapes, speeds = shape.library_statistics_batch(trains)
    rows = []
    rows.append(
        (
            "shape statistics",
            best_of(lambda: [shape.shape_statistics(t) for t in trains], repeats),
            best_of(lambda: shape.shape_statistics_batch(trains), repeats),
        )
    )
    rows.append(
        (
            "library statistics",
            best_of(lambda: [shape.library_statistics(t) for t in trains], repeats),
            best_of(lambda: shape.library_statistics_batch(trains), repeats),
        )
    )
    rows.append(
        (
            "novelty score",
            best_of(lambda: [reference.score(s) for s in shapes], repeats),
            best_of(lambda: reference.score(shapes), repeats),
        )
    )
    rows.append(
        (
            "library estimate",
            best_of(lambda: [library.estimate(s, v) for s, v in zip(library_shapes, speeds, strict=True)], repeats),
            best_of(lambda: library.estimate(library_shapes, speeds), repeats),
        )
    )
    rows.append(
        (
            "combine windows",
            best_of(
                lambda: [combine_windows(means[owner == i], stds[owner == i]) for i in range(len(trains))], repeats
            ),
            best_of(lambda: combine_windows_by_owner(means, stds, owner, len(trains)), repeats),
        )
    )
    rows.append(("spike_train_features (already batched)", np.nan, best_of(lambda: spike_train_features(trains), 3)))
    return rows


def one_unit_samples(trains, repeats: int, n: int = 1000) -> None:
    """1,000 posterior samples of one unit (k unknown): the flow's draws from a ready context, and
    ``sample_posterior`` end to end (network, context, draws, calibration); best of several units x repeats."""
    from spikeinterface_dic.inference.posterior import load_posterior, train_context

    posterior, predictor = load_posterior("stg"), load_predictor("stg")
    units = trains[:10]
    contexts = train_context(predictor, units)
    flow = min(best_of(lambda row=row: posterior.sample(contexts[row : row + 1], n), repeats) for row in range(10))
    alone = {
        name: min(
            best_of(
                lambda row=row, name=name: posterior.sample(contexts[row : row + 1], n, name, calibrated=False), repeats
            )
            for row in range(10)
        )
        for name in ("joint", "known_k")
    }
    whole = min(best_of(lambda t=t: sdic.sample_posterior([t], model="stg", n=n), repeats) for t in units)
    print(f"{n} posterior samples of one unit: flow draws {1000 * flow:5.1f} ms, end to end {1000 * whole:5.1f} ms")
    print("  of which, uncalibrated: " + ", ".join(f"{name} flow {1000 * t:4.1f} ms" for name, t in alone.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trains", type=int, default=2000)
    parser.add_argument("--spikes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--posterior-repeats", type=int, default=1)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    trains = cut_trains(args.trains, args.spikes)
    load_predictor("stg")
    sdic.infer_dics(trains[:64], model="stg", posterior=True)  # warm-up: weights, flows, first calls
    threads = torch.get_num_threads()
    print(f"{len(trains)} trains of {args.spikes} spikes, torch threads {threads}, package {sdic.__file__}")
    from spikeinterface_dic.inference import summary_head

    settings = [("network only", False, True, args.repeats), ("posterior, head", True, True, args.repeats)]
    settings.append(("posterior, sampled", True, False, args.posterior_repeats))
    for name, posterior, head, repeats in settings:
        summary_head.ENABLED = head
        try:
            total, network, flows = time_infer_dics(trains, posterior, repeats)
        finally:
            summary_head.ENABLED = True
        rest = total - network - flows
        print(
            f"infer_dics {name:18s}: {total:6.2f} s = {len(trains) / total:6.0f} trains/s | network "
            f"{network:5.2f} s, flows {flows:5.2f} s, rest {rest:5.2f} s ({len(trains) / rest:7.0f} trains/s)"
        )
    one_unit_samples(trains, args.repeats)
    from spikeinterface_dic.inference import shape

    if args.skip_baseline or not hasattr(shape, "shape_statistics_batch"):  # an older checkout has no batch API
        return
    print("per-train reference vs batched (same trains):")
    for name, reference, batched in baseline_components(trains, args.repeats):
        ratio = reference / batched if np.isfinite(reference) else np.nan
        print(f"  {name:40s} per train {reference:7.4f} s, batched {batched:7.4f} s, ratio {ratio:6.1f}x")


if __name__ == "__main__":
    main()
