"""Long recordings: DIC error of 60 s trains, read in segments of the flows' training window, against the network.

The flows were trained on trains of one recording window (STG 3 s, DA 9 s of model time); a train more than 1.25
windows long is read as the mixture of its segments' posteriors (``inference.posterior.segments``). This measures
what a user with a long recording gets: ``--units`` held-out units per model (random (g_s, g_u) in the model's
training region, one member of its degenerate population, seeds disjoint from training), each simulated for
``--seconds`` (60) x k after a transient with a weak noisy current (OU, sd 0.3 uA/cm2), k cycling through
``--time-scales`` (0.7, 1, 2), kept when labelled spiking or bursting. Printed per model, k unknown and k known
(``time_scale=k``): the median and mean over units of the DIC error, the Euclidean distance between the estimated
and the true (g_s, g_u), for the reported posterior median (``infer_dics``) and the network alone
(``posterior=False``), on the same trains in the same run; with k unknown also the median |ln k error|; and the
68 % interval coverage of g_s and g_u (posterior q16-q84 / network mean +- sd).

Cost: simulation (~0.1 s per STG unit, a few per DA unit) and one ``infer_dics`` call per setting.

    python benchmarks/long_trains.py [--units 40] [--seconds 60] [--models stg da]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from twins_posterior import simulated_member  # the same simulated units (noisy current, transient x k)

import spikeinterface_dic as sdic

# Seeds of the units: disjoint from training (which start at 0), the tests and benchmarks/twins_posterior.py.
LONG_TRAIN_SEED = 7_000_003


def long_units(model_name: str, n: int, seconds: float, time_scales: list, seed: int) -> dict:
    """{unit id: (train, g_s, g_u, k)} of n units (see the module docstring)."""
    model = sdic.get_model(model_name)
    rng = np.random.default_rng([seed, 3])
    units = {}
    attempt = 0
    while len(units) < n and attempt < 100 * n:
        attempt += 1
        g_s = rng.uniform(*model.extra["training_g_s"])
        g_u = rng.uniform(max(model.extra["training_g_u"][0], 0.5), model.extra["training_g_u"][1])
        k = float(time_scales[len(units) % len(time_scales)])
        train = simulated_member(model, g_s, g_u, k, seconds, rng, attempt)
        if train is None:
            continue
        if train.size >= 20 and sdic.spike_train_features({0: train}).iloc[0]["label"] in ("spiking", "bursting"):
            units[f"{model_name}-long-{attempt}"] = (train, g_s, g_u, k)
    return units


def errors(table, truth: np.ndarray, k_true: np.ndarray, posterior: bool) -> dict:
    """DIC error (Euclidean in (g_s, g_u)), |ln k| error and 68 % coverage per unit of one ``infer_dics`` table."""
    estimate = table[["g_s", "g_u"]].to_numpy(float)
    if posterior:
        low = table[["g_s_q16", "g_u_q16"]].to_numpy(float)
        high = table[["g_s_q84", "g_u_q84"]].to_numpy(float)
    else:
        sd = table[["g_s_std", "g_u_std"]].to_numpy(float)
        low, high = estimate - sd, estimate + sd
    return {
        "dic": np.linalg.norm(estimate - truth, axis=1),
        "log_k": np.abs(np.log(table["time_scale"].to_numpy(float)) - np.log(k_true)),
        "covered": (truth >= low) & (truth <= high),
    }


def report(model_name: str, units: dict) -> None:
    ids = list(units)
    trains = {unit: units[unit][0] for unit in ids}
    truth = np.array([units[unit][1:3] for unit in ids], dtype=float)
    k_true = np.array([units[unit][3] for unit in ids], dtype=float)
    durations = np.array([t[-1] - t[0] for t in trains.values()])
    print(
        f"\n{model_name}: {len(ids)} units, median {np.median([t.size for t in trains.values()]):.0f} spikes over "
        f"{np.median(durations):.0f} s, k in {sorted(set(k_true.tolist()))}"
    )
    columns = f"{'median DIC err':>14} {'mean':>6} {'median |ln k err|':>17} {'cover68 g_s, g_u':>17}"
    print(f"{'k':8} {'estimate':10} {columns}")
    for setting, time_scale in (("unknown", None), ("known", dict(zip(ids, k_true, strict=True)))):
        for name, posterior in (("posterior", True), ("network", False)):
            started = time.perf_counter()
            table = sdic.infer_dics(trains, model=model_name, time_scale=time_scale, posterior=posterior)
            table = table.loc[ids]
            measured = errors(table, truth, k_true, posterior)
            log_k = f"{np.nanmedian(measured['log_k']):17.3f}" if time_scale is None else f"{'-':>17}"
            coverage = ", ".join(f"{c:.2f}" for c in measured["covered"].mean(axis=0))
            print(
                f"{setting:8} {name:10} {np.nanmedian(measured['dic']):14.2f} {np.nanmean(measured['dic']):6.2f} "
                f"{log_k} {coverage:>17}   ({time.perf_counter() - started:.1f} s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--time-scales", type=float, nargs="+", default=[0.7, 1.0, 2.0])
    parser.add_argument("--models", nargs="+", default=["stg", "da"])
    args = parser.parse_args()
    for model_name in args.models:
        report(model_name, long_units(model_name, args.units, args.seconds, args.time_scales, LONG_TRAIN_SEED))


if __name__ == "__main__":
    main()
