"""Benchmark of the whole pipeline: 100 units x 100 twins x 3 s of simulated activity, time per stage.

Units are simulated STG trains: one member of a degenerate population for each of ``--units`` random (g_s, g_u)
targets (uniform over g_s in [-10, 10], g_u in [2, 10]; silent members and unreachable targets are redrawn), 3 s
recorded after the 3 s transient. The simulator is compiled and the network loaded before the timed run, so the
stages below exclude one-off costs (reported separately). ``run_pipeline`` then infers every unit's DICs, generates
``--twins`` twins per unit, simulates all units x twins rows (kernel calls of units with similar windows,
transient + ``--duration-s``), scores them and selects matching twins; ``result.provenance["timings"]`` gives
the stages.

    python benchmarks/bench_pipeline.py [--units 100] [--twins 100] [--duration-s 3] [--n-jobs N] [--dask]

``--dask`` runs the same batch again on a 2-worker ``LocalCluster`` (one process per core, one kernel thread each)
and prints its wall time, the overhead against the local run and whether the results are identical.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

import spikeinterface_dic as sdic
from spikeinterface_dic.inference.predict import load_predictor

STAGES = ("inference_s", "populations_s", "simulation_s", "fidelity_s", "selection_s")
G_S_RANGE, G_U_RANGE = (-10.0, 10.0), (2.0, 10.0)


def make_units(n_units: int, seed: int, record_s: float = 3.0) -> dict:
    """{unit index: spike times (s)} of ``n_units`` simulated STG neurons with random DIC targets (none silent)."""
    model = sdic.get_model("stg")
    rng = np.random.default_rng(seed)
    members = []
    while len(members) < n_units:
        candidates = []
        for _ in range(n_units - len(members)):
            g_s, g_u = rng.uniform(*G_S_RANGE), rng.uniform(*G_U_RANGE)
            try:
                population = sdic.generate_population(model, g_s=g_s, g_u=g_u, n=1, seed=int(rng.integers(2**31)))
            except ValueError:
                continue
            candidates.append(population.gbar[0])
        if candidates:
            trains = sdic.simulate(model, np.array(candidates), duration_s=3.0 + record_s, transient_s=3.0)
            members += [train for train in trains if train.size >= 3][: n_units - len(members)]
    return dict(enumerate(members))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--twins", type=int, default=100, help="population size per unit")
    parser.add_argument("--duration-s", type=float, default=3.0, help="recorded window of each twin (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=None, help="simulator threads (default: all)")
    parser.add_argument("--dask", action="store_true", help="also run on a 2-worker Dask LocalCluster")
    args = parser.parse_args(argv)
    if args.n_jobs:
        numba.set_num_threads(args.n_jobs)
    threads = numba.get_num_threads()

    started = time.perf_counter()
    units = make_units(args.units, args.seed, record_s=args.duration_s)
    making_s = time.perf_counter() - started
    started = time.perf_counter()
    sdic.run_pipeline({0: units[0]}, population_size=2, duration_s=0.1, seed=args.seed)  # compile, load weights
    load_predictor("stg")
    warm_up_s = time.perf_counter() - started

    labels = sdic.spike_train_features(units)["label"].value_counts().to_dict()
    print(f"units: {len(units)} simulated STG trains ({labels}), made in {making_s:.1f} s")
    print(f"warm-up (kernel compilation, weights): {warm_up_s:.1f} s")
    print(f"cores: {os.cpu_count()}, simulator threads: {threads}")

    started = time.perf_counter()
    result = sdic.run_pipeline(units, population_size=args.twins, duration_s=args.duration_s, seed=args.seed)
    wall_s = time.perf_counter() - started
    timings = result.provenance["timings"]
    model = sdic.get_model("stg")
    rows = sum(len(p) for p in result.populations.values())
    # One kernel call integrates every row over the transient plus the longest window in model time (duration / k).
    simulated = result.estimates.loc[list(result.populations), "time_scale_network"].to_numpy(float)
    k_min = float(np.clip(np.nan_to_num(simulated, nan=1.0), 0.05, 50.0).min())
    steps = (model.default_transient_ms + 1000.0 * args.duration_s / k_min) / model.default_dt_ms
    print(
        f"\nrun_pipeline: {len(units)} units x {args.twins} twins x {args.duration_s:g} s "
        f"({rows} rows, {steps:,.0f} steps each: {model.default_transient_ms / 1000:g} s transient + "
        f"{args.duration_s / k_min:.2f} s, the window of the fastest unit, k = {k_min:.2f})"
    )
    print(f"{'stage':<14}{'seconds':>10}{'share':>9}")
    for stage in STAGES:
        seconds = timings.get(stage, float("nan"))
        print(f"{stage.removesuffix('_s'):<14}{seconds:>10.2f}{seconds / wall_s:>9.1%}")
    other = wall_s - sum(timings.get(stage, 0.0) for stage in STAGES)
    print(f"{'other':<14}{other:>10.2f}{other / wall_s:>9.1%}")
    print(f"{'total (wall)':<14}{wall_s:>10.2f}{1:>9.1%}")
    simulation_s = timings.get("simulation_s", float("nan"))
    selection_s = timings.get("selection_s", 0.0)
    candidates = int(result.fidelity["n_candidates"].sum()) if "n_candidates" in result.fidelity else 0
    print(
        f"\nfraction of the time in the simulator: {simulation_s / wall_s:.1%} "
        f"(twin selection, itself mostly simulation of {candidates} candidates: {selection_s / wall_s:.1%})"
    )
    print(
        f"simulator throughput: {rows * steps / simulation_s / 1e6:,.1f} M neuron-steps/s "
        f"({rows * steps / simulation_s / threads / 1e6:,.1f} M per thread)"
    )
    matching = result.fidelity["fraction_matching"]
    before = result.fidelity.get("fraction_matching_before_selection", matching)
    print(
        f"mean fraction of matching twins: {np.nanmean(matching):.3f} "
        f"(before twin selection {np.nanmean(before):.3f}); "
        f"median {np.nanmedian(matching):.2f}; "
        f"in distribution: {int(result.estimates['in_distribution'].sum())}/{len(units)}"
    )

    if args.dask:
        dask_run(units, args, result, wall_s)


def dask_run(units: dict, args, local_result, local_wall_s: float) -> None:
    """The same batch on a LocalCluster: wall time, overhead against the local run, identical results."""
    from dask.distributed import Client, LocalCluster

    workers = min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, env={"NUMBA_NUM_THREADS": "1"}
        ) as cluster,
        Client(cluster) as client,
    ):
        startup_s = time.perf_counter() - started
        # Warm the workers (imports, cached kernel, weights) as the local run was warmed.
        sdic.run_pipeline({0: units[0]}, population_size=2, duration_s=0.1, seed=args.seed, client=client)
        started = time.perf_counter()
        result = sdic.run_pipeline(
            units, population_size=args.twins, duration_s=args.duration_s, seed=args.seed, client=client
        )
        dask_wall_s = time.perf_counter() - started
    same = all(
        np.array_equal(result.populations[u], local_result.populations[u]) for u in local_result.populations
    ) and np.allclose(result.fidelity["fraction_matching"], local_result.fidelity["fraction_matching"], equal_nan=True)
    print(
        f"\nDask LocalCluster ({workers} worker processes x 1 kernel thread): start {startup_s:.1f} s, "
        f"run {dask_wall_s:.2f} s vs local {local_wall_s:.2f} s -> overhead {dask_wall_s / local_wall_s - 1:+.1%}; "
        f"results identical to the local run: {same}"
    )


if __name__ == "__main__":
    main()
