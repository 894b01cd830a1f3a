"""Brian2 targets against the numba kernel: 1,000 STG neurons x 1 s of biological time (dt 0.05 ms, 20,000 steps).

Run:  python benchmarks/bench_brian2.py [--n 1000] [--duration 1.0] [--targets cpp_standalone,cython,numpy]
      [--repeats 2] [--keep-cache]

For each Brian2 target: the build time (code generation + compilation; cpp_standalone also the first run of the
project), measured from an empty cache folder unless ``--keep-cache``, and the run time of a built network with new
conductances (the minimum over ``--repeats`` populations of the same size: cpp_standalone re-runs the compiled binary
through ``run_args``, the runtime targets restore and re-run their network). The numba kernel's compile time (first
call on 2 neurons) and run time are measured in the same process; ratios are run times relative to numba. The spike
counts of every target are compared with numba's (same scheme and dt: they agree to ~1e-5).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numba
import numpy as np


def population(n: int, seed: int) -> np.ndarray:
    """Half tonic (g_s, g_u) = (4, 5), half bursting (-4, 5) members of degenerate STG populations."""
    from spikeinterface_dic.population import generate_population

    half = n // 2
    return np.vstack(
        [
            generate_population("stg", 4.0, 5.0, n=half, seed=seed).gbar,
            generate_population("stg", -4.0, 5.0, n=n - half, seed=seed + 1).gbar,
        ]
    )


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=1.0, help="biological seconds (no transient)")
    parser.add_argument("--targets", default="cpp_standalone,cython,numpy")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep-cache", action="store_true", help="use the per-user cache (warm builds)")
    args = parser.parse_args(argv)
    if not args.keep_cache:
        os.environ["SPIKEINTERFACE_DIC_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_brian2_")

    import brian2

    from spikeinterface_dic.simulate import simulate
    from spikeinterface_dic.simulate.brian2_backend import _default_threads, available_targets, simulate_brian2

    backend = sys.modules["spikeinterface_dic.simulate.brian2_backend"]
    n, duration_ms = args.n, 1000.0 * args.duration
    populations = [population(n, seed=10 * r) for r in range(args.repeats + 1)]
    dt_ms = 0.05
    steps = int(round(duration_ms / dt_ms))
    print(
        f"{n} STG neurons x {args.duration} s, dt {dt_ms} ms ({steps} steps); brian2 {brian2.__version__}, numba "
        f"{numba.__version__} ({numba.get_num_threads()} threads), {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; cache {'per-user' if args.keep_cache else 'empty (cold builds)'}"
    )

    rows = {}
    _, compile_s = timed(simulate, "stg", populations[0][:2], duration_s=0.002, transient_s=0.0)
    runs, counts = [], None
    for gbar in populations[1:]:
        trains, seconds = timed(simulate, "stg", gbar, duration_s=args.duration, transient_s=0.0)
        runs.append(seconds)
        counts = np.array([t.size for t in trains]) if counts is None else counts
    rows["numba"] = dict(build_s=compile_s, run_s=min(runs))
    reference_counts = counts

    available = available_targets()
    for target in args.targets.split(","):
        if target not in available:
            print(f"{target}: not available here, skipped")
            continue
        threads = _default_threads(n) if target == "cpp_standalone" else 1
        _, first = timed(simulate_brian2, "stg", populations[0], duration_ms, 0.0, target=target)
        runs, counts = [], None
        for gbar in populations[1:]:
            trains, seconds = timed(simulate_brian2, "stg", gbar, duration_ms, 0.0, target=target)
            runs.append(seconds)
            counts = np.array([t.size for t in trains]) if counts is None else counts
        run_s = min(runs)
        if target == "cpp_standalone":
            build = next(iter(backend._STANDALONE_BUILDS.values()))
            make_s = build.device.timers["compile"]["make"]
        else:
            make_s = float("nan")
        rows[target] = dict(
            build_s=first - run_s,
            run_s=run_s,
            make_s=make_s,
            threads=threads,
            max_count_difference=int(np.abs(counts - reference_counts).max()),
        )

    numba_run = rows["numba"]["run_s"]
    print(
        f"\n{'backend':<20}{'build s':>10}{'(make s)':>10}{'run s':>10}{'run / numba':>13}{'Mneuron-steps/s':>17}"
        f"{'max |dcount|':>14}"
    )
    for name, row in rows.items():
        throughput = n * steps / row["run_s"] / 1e6
        make = row.get("make_s", float("nan"))
        label = f"{name} ({row['threads']} thr)" if name == "cpp_standalone" else name
        print(
            f"{label:<20}{row['build_s']:>10.2f}{make:>10.2f}{row['run_s']:>10.2f}{row['run_s'] / numba_run:>13.2f}"
            f"{throughput:>17.1f}{row.get('max_count_difference', 0):>14}"
        )
    print(
        "\nbuild: numba = JIT compile (first call); Brian2 = first call minus a run (code generation, compilation"
        " and, for cpp_standalone, the project's first run); run: min over repeats with new conductances, no rebuild."
    )
    return rows


if __name__ == "__main__":
    main()
