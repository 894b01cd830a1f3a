"""Twins drawn from the posterior (twin_sampling="posterior", the default) against twins of the point estimate
("point", the stage before it), on held-out simulated units and on slowed long-burst bursters.

Held-out units: for each model, N units with (g_s, g_u) uniform in the model's training region, k = 1 for half of
them and log2 k ~ U(-1, 3) for the others, one random member of the degenerate population of that (g_s, g_u)
(seeds disjoint from training), simulated with a weak noisy current (OU, sd 0.3 uA/cm2) for RECORDED_S seconds x k
after a transient, drawn until N of them are labelled spiking or bursting (units labelled silent or irregular get no
twins and are not counted). Slowed bursters: members whose bursts have 8-14 spikes, at k = 2-8.

Both samplings run on the same units with the same settings (16 twins, twin selection on, its default budget),
in the same process: printed per set are the fraction of units left with no matching twin after selection, the
first twins' mean matching fraction (before selection), the final mean matching fraction, the simulated twins per
unit, and the wall time (same-run ratio).

    python benchmarks/twins_posterior.py [--units 100] [--models stg da]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import spikeinterface_dic as sdic

RECORDED_S = 20.0
NOISE_STD = 0.3
POPULATION_SIZE = 16
# Seeds of the held-out units: far from those of training (which start at 0) and of the tests.
HELD_OUT_SEED = 9_000_017


def simulated_member(model, g_s: float, g_u: float, k: float, recorded_s: float, rng, seed: int):
    """Spike train of one random member of the degenerate population of (g_s, g_u) (its seed from ``rng``) at time
    scale k: ``recorded_s`` x k seconds after the model's transient x k, with the weak noisy current (``seed``);
    None when the generator has no member for (g_s, g_u)."""
    try:
        gbar = sdic.generate_population(model, g_s, g_u, n=1, seed=int(rng.integers(2**31))).gbar
    except ValueError:
        return None
    transient = model.default_transient_ms / 1000.0 * k
    return sdic.simulate(
        model,
        gbar,
        duration_s=transient + recorded_s * k,
        transient_s=transient,
        time_scale=k,
        noise_std=NOISE_STD,
        seed=seed,
    )[0]


def held_out_units(model_name: str, n: int, seed: int) -> dict:
    """{unit id: spike train} of n simulated units of random DICs and k (see the module docstring)."""
    model = sdic.get_model(model_name)
    rng = np.random.default_rng([seed, 1])
    g_s_range = model.extra["training_g_s"]
    g_u_range = model.extra["training_g_u"]
    trains = {}
    attempt = 0
    while len(trains) < n:
        attempt += 1
        g_s = rng.uniform(*g_s_range)
        g_u = rng.uniform(max(g_u_range[0], 0.5), g_u_range[1])
        k = 1.0 if rng.random() < 0.5 else float(2.0 ** rng.uniform(-1, 3))
        train = simulated_member(model, g_s, g_u, k, RECORDED_S, rng, attempt)
        if train is None:
            continue
        # Counted only where twins are made (spiking or bursting): N units with twins per model.
        if train.size >= 20 and sdic.spike_train_features({0: train}).iloc[0]["label"] in ("spiking", "bursting"):
            trains[f"{model_name}-{attempt}"] = train
    return trains


def slowed_bursters(model_name: str, n: int, seed: int) -> dict:
    """{unit id: spike train} of n bursters with 8-14 spikes per burst, each slowed by k in [2, 8]."""
    model = sdic.get_model(model_name)
    rng = np.random.default_rng([seed, 2])
    trains = {}
    attempt = 0
    while len(trains) < n and attempt < 200 * n:
        attempt += 1
        g_s = rng.uniform(model.extra["training_g_s"][0], 0.0)  # bursting needs negative slow feedback
        g_u = rng.uniform(2.0, model.extra["training_g_u"][1])
        try:
            gbar = sdic.generate_population(model, g_s, g_u, n=1, seed=int(rng.integers(2**31))).gbar
        except ValueError:
            continue
        transient = model.default_transient_ms / 1000.0
        probe = sdic.simulate(model, gbar, duration_s=transient + 10.0, transient_s=transient, seed=attempt)[0]
        features = sdic.spike_train_features({0: probe}).iloc[0]
        if features["label"] != "bursting" or not 8 <= features["nbr_spikes_bursting"] <= 14:
            continue
        k = float(rng.uniform(2.0, 8.0))
        train = sdic.simulate(
            model,
            gbar,
            duration_s=(transient + RECORDED_S) * k,
            transient_s=transient * k,
            time_scale=k,
            noise_std=NOISE_STD,
            seed=attempt,
        )[0]
        trains[f"{model_name}-slow-{attempt}"] = train
    return trains


def compare(model_name: str, name: str, trains: dict) -> None:
    rows = {}
    for sampling in ("point", "posterior"):
        started = time.perf_counter()
        result = sdic.run_pipeline(
            trains, model=model_name, population_size=POPULATION_SIZE, seed=0, twin_sampling=sampling
        )
        wall = time.perf_counter() - started
        fidelity = result.fidelity.dropna(subset=["fraction_matching"])
        simulated = POPULATION_SIZE + fidelity["n_candidates"].to_numpy(float)
        rows[sampling] = (
            len(fidelity),
            float((fidelity["fraction_matching"] == 0).mean()),
            float(fidelity["fraction_matching_before_selection"].mean()),
            float(fidelity["fraction_matching"].mean()),
            float(simulated.mean()),
            wall,
        )
    print(f"\n{model_name} {name}: {rows['point'][0]} units with twins")
    print(f"{'sampling':10} {'no match':>9} {'first pop':>9} {'final':>7} {'twins sim.':>10} {'wall s':>7}")
    for sampling, (_, none, first, final, simulated, wall) in rows.items():
        print(f"{sampling:10} {none:9.3f} {first:9.3f} {final:7.3f} {simulated:10.1f} {wall:7.1f}")
    print(f"wall-time ratio posterior / point: {rows['posterior'][5] / rows['point'][5]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--slowed", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["stg", "da"])
    args = parser.parse_args()
    for model_name in args.models:
        compare(model_name, "held-out", held_out_units(model_name, args.units, HELD_OUT_SEED))
        compare(model_name, "slowed long-burst bursters", slowed_bursters(model_name, args.slowed, HELD_OUT_SEED))


if __name__ == "__main__":
    main()
