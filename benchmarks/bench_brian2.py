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
import atexit
import os
import shutil
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
    parser.add_argument("--standalone-threads", default="1,auto", help="OpenMP threads of cpp_standalone builds")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep-cache", action="store_true", help="use the per-user cache (warm builds)")
    args = parser.parse_args(argv)
    if not args.keep_cache:
        cache = tempfile.mkdtemp(prefix="bench_brian2_")
        os.environ["SPIKEINTERFACE_DIC_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, ignore_errors=True)

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
        f"{os.getloadavg()[0]:.1f}; cache {'per-user' if args.keep_cache else 'empty (cold builds)'}",
        flush=True,
    )

    def measure(function, **kwargs):
        """(build s, run s, spike counts): build = first call minus its own run; run = min over new populations."""
        _, first = timed(function, populations[0], **kwargs)
        runs, counts = [], None
        for gbar in populations[1:]:
            trains, seconds = timed(function, gbar, **kwargs)
            runs.append(seconds)
            counts = np.array([t.size for t in trains]) if counts is None else counts
        return first, min(runs), counts

    rows = {}
    _, compile_s = timed(simulate, "stg", populations[0][:2], duration_s=0.002, transient_s=0.0)
    _, run_s, reference_counts = measure(lambda g: simulate("stg", g, duration_s=args.duration, transient_s=0.0))
    rows["numba"] = dict(build_s=compile_s, run_s=run_s, counts=reference_counts)

    available = available_targets()
    for target in args.targets.split(","):
        if target not in available:
            print(f"{target}: not available here, skipped")
            continue
        thread_options = args.standalone_threads.split(",") if target == "cpp_standalone" else ["-"]
        for option in thread_options:
            threads = None if option in ("auto", "-") else int(option)
            label = target
            if target == "cpp_standalone":
                threads = _default_threads(n) if threads is None else threads
                label = f"{target} ({threads} thr)"
                if label in rows:
                    continue

            def run(gbar, target=target, threads=threads):
                return simulate_brian2("stg", gbar, duration_ms, 0.0, target=target, n_threads=threads)

            backend._STANDALONE_BUILDS.clear()
            first, run_s, counts = measure(run)
            if target == "cpp_standalone":
                build = next(iter(backend._STANDALONE_BUILDS.values()))
                make_s = build.device.timers["compile"]["make"]
            else:
                make_s = float("nan")
            rows[label] = dict(build_s=first - run_s, run_s=run_s, make_s=make_s, counts=counts)
            print(f"  {label}: first call {first:.1f} s, run {run_s:.1f} s", flush=True)

    numba_run = rows["numba"]["run_s"]
    print(
        f"\n{'backend':<24}{'build s':>9}{'(make s)':>10}{'run s':>9}{'run/numba':>11}{'Mneuron-steps/s':>17}"
        f"{'|dcount|>1':>12}{'max|dcount|':>12}"
    )
    for name, row in rows.items():
        throughput = n * steps / row["run_s"] / 1e6
        difference = np.abs(row["counts"] - reference_counts)
        print(
            f"{name:<24}{row['build_s']:>9.2f}{row.get('make_s', float('nan')):>10.2f}{row['run_s']:>9.2f}"
            f"{row['run_s'] / numba_run:>11.2f}{throughput:>17.1f}{int((difference > 1).sum()):>12}"
            f"{int(difference.max()):>12}"
        )
    print(
        f"\nload average at the end {os.getloadavg()[0]:.1f}. build: numba = JIT compile (first call); Brian2 = first"
        " call minus a run (code generation, compilation and, for cpp_standalone, the project's first run); run: min"
        f" over {args.repeats} new populations, no rebuild. |dcount| > 1: rows whose spike count differs from numba's"
        " by more than 1 (irregular bursters started from rest, see tests/test_brian2.py)."
    )
    return rows


if __name__ == "__main__":
    main()
