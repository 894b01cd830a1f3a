"""Benchmark of the degenerate-population generator (spikeinterface_dic.population).

Times ``generate_population`` per 1,000 members (median of repeats) and compares it, in the same run, with a naive
baseline that follows the authors' algorithm (spec 4.1-4.2): S rebuilt with the general ``dic.sensitivity_matrix``
(batched over members), ``np.linalg.solve``, a fixed number of Picard solves (6 for a Ca-dependent set, else 1), and
negatives dropped without resampling; and the same baseline run with plain Picard until the max residual is <= 1e-9
(equal accuracy). Residuals are L2 errors in (g_s, g_u) recomputed with ``compute_dics``.

    python benchmarks/bench_population.py [--n 1000] [--repeats 31]
"""

import argparse
import os
import time
from functools import partial

import numpy as np

import spikeinterface_dic as sdic
from spikeinterface_dic.population import (
    CALCIUM_PRIORS,
    _draw_base,
    default_compensation_channels,
    generate_population,
)

CASES = [("stg", 4.0, 5.0), ("stg", -4.0, 5.0), ("stg", -10.0, 10.0), ("da", -2.0, 5.0)]


def naive_population(model, g_s, g_u, n, seed, tolerance=None):
    """The original algorithm with the package's general S: fixed solves (or, with ``tolerance``, plain Picard
    solves until the max residual is below it), no resampling."""
    model = sdic.get_model(model)
    rng = np.random.default_rng(seed)
    gbar = _draw_base(model, n, rng)

    def solve(gbar, unknown, targets):
        rows = [i for i, t in enumerate(targets) if t is not None]
        target = np.array([targets[i] for i in rows])
        matrix = sdic.sensitivity_matrix(model, gbar)[:, rows, :]
        known = gbar.copy()
        known[:, unknown] = 0.0
        rhs = target - np.einsum("mrc,mc->mr", matrix, known)
        solution = gbar.copy()
        solution[:, unknown] = np.linalg.solve(matrix[:, :, unknown], rhs[..., None])[..., 0]
        return solution

    spiking = [model.channel_index(name) for name in model.extra["spiking_solved"]]
    gbar[:, spiking] = 0.0
    gbar = solve(gbar, spiking, list(model.extra["spiking_targets"]))
    channels = default_compensation_channels(model, g_s, g_u)
    unknown = [model.channel_index(name) for name in channels]
    fits = CALCIUM_PRIORS.get(model.name, {})
    for column, name in zip(unknown, channels, strict=True):
        gbar[:, column] = fits[name][0] + fits[name][1] * g_s if name in fits else 0.0
    nonlinear = any(name in fits for name in channels)
    solves = 6 if nonlinear else 1
    if tolerance is not None and nonlinear:
        solves = 100
    used = 0
    while used < solves:
        gbar, used = solve(gbar, unknown, [None, g_s, g_u]), used + 1
        if tolerance is not None and residual(model, gbar, g_s, g_u).max() <= tolerance:
            break
    return gbar[(gbar >= 0).all(axis=1)], used


def median_ms(function, repeats):
    function()  # warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def residual(model, gbar, g_s, g_u):
    return np.linalg.norm(sdic.compute_dics(model, gbar)[:, 1:] - [g_s, g_u], axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=31)
    arguments = parser.parse_args()
    n, repeats = arguments.n, arguments.repeats
    print(f"population generator, n = {n} members, median of {repeats} runs, {os.cpu_count()} CPU cores")
    header = (
        f"{'case':<22}{'channels':<11}{'ms/1000':>9}{'solves':>7}{'max res':>10}{'mean res':>10}"
        f"{'naive ms/1000':>15}{'solves':>7}{'max res':>10}{'kept':>6}{'speed-up':>10}"
        f"{'naive-1e-9 ms':>15}{'solves':>7}{'speed-up':>10}"
    )
    print(header)
    print("-" * len(header))
    for model, g_s, g_u in CASES:
        ours_ms = median_ms(partial(generate_population, model, g_s, g_u, n=n, seed=1), repeats)
        population = generate_population(model, g_s, g_u, n=n, seed=1)
        ours_res = residual(model, population.gbar, g_s, g_u)
        naive_ms = median_ms(partial(naive_population, model, g_s, g_u, n, 1), max(5, repeats // 3))
        naive, naive_solves = naive_population(model, g_s, g_u, n, 1)
        naive_res = residual(model, naive, g_s, g_u)
        converged_ms = median_ms(partial(naive_population, model, g_s, g_u, n, 1, 1e-9), max(5, repeats // 3))
        converged_solves = naive_population(model, g_s, g_u, n, 1, 1e-9)[1]
        scale = 1000 / n
        print(
            f"{model} ({g_s:+.0f}, {g_u:+.0f}){'':<11}"[:22]
            + f"{','.join(population.report.channels):<11}{ours_ms * scale:>9.2f}{population.report.iterations:>7d}"
            f"{ours_res.max():>10.1e}{ours_res.mean():>10.1e}{naive_ms * scale:>15.2f}{naive_solves:>7d}"
            f"{naive_res.max():>10.1e}{len(naive):>6d}{naive_ms / ours_ms:>9.1f}x"
            f"{converged_ms * scale:>15.2f}{converged_solves:>7d}{converged_ms / ours_ms:>9.1f}x"
        )


if __name__ == "__main__":
    main()
