"""Throughput of the population simulator against the original per-neuron scipy BDF baseline.

Run:  python benchmarks/bench_simulate.py [--quick]

Prints, for STG and DA populations of N = 1 ... 10,000 neurons, the throughput in neuron-steps per second and in
biological seconds simulated per wall-clock second per core (numba.get_num_threads() cores), compilation excluded
(reported separately); the baseline (``simulate_reference`` with method="BDF", rtol 1e-2, atol 1e-4, the dataset
generator's settings of spec 1.4/2.1) measured in the same run on a few neurons, and the speed-up per core; the
first-order, midpoint and staggered kernels on S3 (speed and accuracy against the converged reference of spec 11);
and a cost model (table columns, interpolations and exps per step) with the achieved nanoseconds per neuron-step.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import numba
import numpy as np

from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.models import get_model
from spikeinterface_dic.simulate import simulate
from spikeinterface_dic.simulate.codegen import get_kernel, kernel_source
from spikeinterface_dic.simulate.reference import simulate_reference

STG_SETS = {name: list(g) for name, g in get_model("stg").extra["example_sets"].items()}  # spec section 9
DA_SETS = {name: list(g) for name, g in get_model("da").extra["example_sets"].items()}
S3_REFERENCE = {"n_spikes": 46, "mean_isi_ms": 65.3486}  # spec 11, converged
BASELINE = dict(method="BDF", rtol=1e-2, atol=1e-4)  # the dataset generator's settings


def population(model: str, n: int) -> np.ndarray:
    """n neurons cycling through the example sets, each conductance jittered by +-5 % (no two identical rows)."""
    sets = np.array(list((STG_SETS if model == "stg" else DA_SETS).values()))
    rng = np.random.default_rng(0)
    return sets[np.arange(n) % len(sets)] * rng.uniform(0.95, 1.05, size=(n, sets.shape[1]))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def warm_up(model: str, order, dt_ms: float) -> tuple[float, float]:
    """Compile the kernel and build its lookup table; return (compile + first call s, table build s)."""
    _, first = timed(
        simulate, model, population(model, 2), duration_s=0.002, transient_s=0.001, dt_ms=dt_ms, order=order
    )
    # A new dt needs a new table but not a new kernel: time that part alone.
    _, table = timed(
        simulate, model, population(model, 2), duration_s=0.002, transient_s=0.001, dt_ms=dt_ms * 1.000001, order=order
    )
    return first, table


def kernel_throughput(model: str, n: int, duration_s: float, order=None, dt_ms: float | None = None):
    m = get_model(model)
    dt = m.default_dt_ms if dt_ms is None else dt_ms
    gbar = population(model, n)
    transient_s = min(m.default_transient_ms / 1000.0, duration_s / 2)
    trains, wall = timed(simulate, model, gbar, duration_s=duration_s, transient_s=transient_s, dt_ms=dt, order=order)
    steps = n * int(round(1000.0 * duration_s / dt))
    return trains, wall, steps


def cost_model(model: str, order=2) -> dict:
    source = kernel_source(get_model(model), order)
    body = source[source.index("for step in range(n_steps)") :]
    # The noise branch runs only with noise; count the deterministic step.
    body = body[body.index("noise = noise * noise_decay") :]
    _, tables = get_kernel(get_model(model), order)
    arithmetic = sum(len(re.findall(rf" \{op} ", line)) for line in body.splitlines() for op in "+-*/")
    interpolations = len(re.findall(r"c\d+ = table\[i, \d+\]", body))
    exps = body.count("np.exp(")
    divisions = len(re.findall(r" / ", body))
    # Throughput bound of one core, scalar code (SIMD width 1: each neuron's step is a scalar chain; two neurons are
    # interleaved for latency, not vectorised): the arithmetic on two FP ports, an exp ~20 cycles (libm, polynomial)
    # and a division ~5 cycles of port time; the table loads (2 per interpolation) on two load ports in parallel.
    floating = (arithmetic - divisions) / 2.0 + 20.0 * exps + 5.0 * divisions
    cycles = max(floating, 2 * interpolations / 2.0)
    return {
        "table_columns": len(tables.columns),
        "interpolations_per_step": interpolations,
        "exps_per_step": exps,
        "divisions_per_step": len(re.findall(r"v_inf = total_ge / total_g", body)),
        "arithmetic_per_step": arithmetic,
        "bound_cycles": cycles,
        "states": len(get_model(model).state_names),
    }


def clock_ghz() -> float:
    """Nominal clock of this machine's cores (first 'cpu MHz' of /proc/cpuinfo; 2.5 GHz when unknown)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000.0
    except OSError:
        pass
    return 2.5


def main(quick: bool = False) -> None:
    threads = numba.get_num_threads()
    print(f"numba {numba.__version__}, {threads} threads; numpy {np.__version__}; {os.cpu_count()} CPUs")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other processes distort the timings)")
    print("All kernel timings exclude compilation (each kernel is warmed up first).\n")

    # ------------------------------------------------------------------------------------------ compilation
    print("== Compilation (first call: code generation + numba compile + lookup table) ==")
    for model in ("stg", "da"):
        m = get_model(model)
        first, table = warm_up(model, m.default_scheme, m.default_dt_ms)
        print(
            f"  {model}: scheme {m.default_scheme} first call {first:6.2f} s; "
            f"table rebuild for a new dt {table * 1000:6.1f} ms"
        )
    for order in (1, 2):
        first, _ = warm_up("stg", order, 0.025)
        print(f"  stg: order {order} first call {first:6.2f} s")
    print()

    # ---------------------------------------------------------------------------------------- kernel throughput
    print("== Kernel throughput (default schemes: STG staggered, DA midpoint; dt: STG 0.05 ms, DA 0.0125 ms) ==")
    header = f"  {'model':5} {'N':>6} {'sim s':>6} {'wall s':>8} {'neuron-steps/s':>15}"
    header += f" {'bio s/wall s/core':>18} {'ns/step/core':>13}"
    print(header)
    plan = {
        "stg": [(1, 6.0), (100, 6.0), (1000, 6.0 if not quick else 1.0), (10000, 1.0 if not quick else 0.2)],
        "da": [(1, 12.0), (100, 12.0 if not quick else 2.0), (1000, 2.0 if not quick else 0.5)],
    }
    per_core = {}
    for model, runs in plan.items():
        for n, duration in runs:
            _, wall, steps = kernel_throughput(model, n, duration)
            cores = min(threads, n)
            bio = n * duration / wall / cores
            per_core[(model, n)] = bio
            print(
                f"  {model:5} {n:6d} {duration:6.1f} {wall:8.3f} {steps / wall:15.3e} {bio:18.1f} "
                f"{wall * cores / steps * 1e9:13.1f}"
            )
    print("  (per core = divided by min(N, threads); N = 1 runs on one thread)")
    # Same run, same machine: the STG midpoint scheme (order 2), the default before the staggered scheme.
    n_mid, duration_mid = plan["stg"][-1]
    _, wall_mid, steps_mid = kernel_throughput("stg", n_mid, duration_mid, order=2)
    bio_mid = n_mid * duration_mid / wall_mid / min(threads, n_mid)
    print(
        f"  stg N={n_mid} midpoint (order 2): {bio_mid:.1f} bio s/wall s/core, "
        f"{wall_mid * min(threads, n_mid) / steps_mid * 1e9:.1f} ns/step/core; staggered / midpoint = "
        f"x{per_core[('stg', n_mid)] / bio_mid:.2f}\n"
    )

    # ------------------------------------------------------------------------------------------------- baseline
    print("== Baseline: per-neuron scipy BDF, rtol 1e-2, atol 1e-4 (dataset generator settings), one core ==")
    baseline = {}
    cases = [
        ("stg", "S1", 6000.0, 3000.0, 0.1),
        ("stg", "S3", 6000.0, 3000.0, 0.1),
        ("da", "tonic", 12000.0, 3000.0, 0.05),
        ("da", "bursting", 12000.0, 3000.0, 0.05),
    ]
    if quick:
        cases = [("stg", "S3", 2000.0, 1000.0, 0.1), ("da", "tonic", 3000.0, 1000.0, 0.05)]
    for model, name, duration_ms, transient_ms, sample_dt in cases:
        gbar = (STG_SETS if model == "stg" else DA_SETS)[name]
        with np.errstate(over="ignore"):  # rejected trial steps of the loose solver overflow exp()
            spikes, wall = timed(
                simulate_reference, model, gbar, duration_ms, transient_ms, sample_dt_ms=sample_dt, **BASELINE
            )
        bio = duration_ms / 1000.0 / wall
        baseline.setdefault(model, []).append(bio)
        print(
            f"  {model:5} {name:9} {duration_ms / 1000:5.1f} s simulated in {wall:6.2f} s -> {bio:6.3f} bio s/wall s "
            f"({spikes.size} spikes, sampling {sample_dt} ms)"
        )
    print()
    print("== Speed-up per core (kernel, largest N) / (baseline mean) ==")
    for model in ("stg", "da"):
        largest = max(n for (m, n) in per_core if m == model)
        base = float(np.mean(baseline[model]))
        print(
            f"  {model}: kernel {per_core[(model, largest)]:9.1f} bio s/wall s/core (N={largest}) vs baseline "
            f"{base:6.3f} -> x{per_core[(model, largest)] / base:,.0f} per core, "
            f"x{per_core[(model, largest)] * threads / base:,.0f} on {threads} cores"
        )
    print()

    # -------------------------------------------------------------------------------------- order 1 vs order 2
    print("== S3: schemes and steps against the converged reference (46 spikes, mean ISI 65.3486 ms) ==")
    n_copies = 200 if not quick else 20
    gbar = np.tile(STG_SETS["S3"], (n_copies, 1))
    for order, dt in ((1, 0.025), (2, 0.05), ("staggered", 0.05), (1, 0.0125), (2, 0.025), ("staggered", 0.025)):
        trains, wall = timed(simulate, "stg", gbar, dt_ms=dt, order=order)
        steps = n_copies * int(round(6000.0 / dt))
        isi = 1000.0 * np.diff(trains[0]).mean()
        error = isi / S3_REFERENCE["mean_isi_ms"] - 1.0
        bio = n_copies * 6.0 / wall / threads
        label = spike_train_features(trains[:1])["label"].iloc[0]
        print(
            f"  {str(order):9} dt {dt:6.4f} ms: {trains[0].size:3d} spikes ({label}), mean ISI {isi:8.4f} ms "
            f"({100 * error:+6.3f} %), {wall:6.3f} s for {n_copies} x 6 s -> {bio:8.1f} bio s/wall s/core, "
            f"{wall * threads / steps * 1e9:6.1f} ns/step/core"
        )
    print()

    # ------------------------------------------------------------------------------------------------ cost model
    print("== Cost model (per neuron-step; order 2 = two stages, staggered = one) ==")
    for model, orders in (("stg", (1, 2, "staggered")), ("da", (1, 2))):
        for order in orders:
            cost = cost_model(model, order)
            print(
                f"  {model} {str(order):9}: {cost['states']} states, {cost['table_columns']} table columns, "
                f"{cost['interpolations_per_step']} interpolated reads, {cost['exps_per_step']} exp, "
                f"{cost['divisions_per_step']} division(s) for V_inf, {cost['arithmetic_per_step']} arithmetic ops "
                f"-> bound ~{cost['bound_cycles']:.0f} cycles = {cost['bound_cycles'] / clock_ghz():.0f} ns "
                f"at {clock_ghz():.1f} GHz"
            )
    for model in ("stg", "da"):
        largest = max(n for (m, n) in per_core if m == model)
        dt = get_model(model).default_dt_ms
        ns = 1e9 / (per_core[(model, largest)] * 1000.0 / dt)
        scheme = get_model(model).default_scheme
        bound_ns = cost_model(model, scheme)["bound_cycles"] / clock_ghz()
        print(
            f"  {model}: achieved {ns:.1f} ns per neuron-step per core at N={largest} ({scheme}): "
            f"{ns / bound_ns:.2f}x the throughput bound at the nominal clock (turbo clocks allow < 1)"
        )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test of the script)")
    main(parser.parse_args().quick)
