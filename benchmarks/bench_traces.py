"""Cost of trace recording against the spike-only kernel, measured in the same run (docs/export.md).

Run:  python benchmarks/bench_traces.py [--repeats 5]

For STG (256 neurons) and DA (128 neurons), 2 s of model time, no noise: the spike-only kernel (``simulate``), the
same population through the trace kernel recording 4 rows every 0.1 ms (``simulate(..., record=[0, 1, 2, 3])``), and
the trace kernel on the 4 recorded rows alone (what :func:`spikeinterface_dic.twin_traces` does). Calls alternate
and the best of ``--repeats`` is kept, so both kernels see the same machine load; compilation is excluded (one
warm-up call each). Also prints the sha256 of the spike-only kernel's generated source: the trace option leaves it
byte-identical, so the spike-only path compiles to the same code as before.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import time

import numba
import numpy as np

from spikeinterface_dic.models import get_model
from spikeinterface_dic.simulate import simulate
from spikeinterface_dic.simulate.codegen import LANES, kernel_source


def population(model: str, n: int) -> np.ndarray:
    sets = np.array(list(get_model(model).extra["example_sets"].values()))
    rng = np.random.default_rng(0)
    return sets[np.arange(n) % len(sets)] * rng.uniform(0.95, 1.05, size=(n, sets.shape[1]))


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(repeats: int = 5) -> None:
    print(f"numba threads: {numba.get_num_threads()}")
    for name, n in (("stg", 256), ("da", 128)):
        model = get_model(name)
        source = kernel_source(model, model.default_scheme, lanes=LANES)
        print(f"\n{name}: spike-only kernel source sha256 {hashlib.sha256(source.encode()).hexdigest()[:16]}")
        gbar = population(name, n)
        window = dict(duration_s=2.0, transient_s=0.5)
        recorded = dict(record=[0, 1, 2, 3], record_every_ms=0.1)
        spikes_only = functools.partial(simulate, name, gbar, **window)
        with_traces = functools.partial(simulate, name, gbar, **recorded, **window)
        rows_alone = functools.partial(simulate, name, gbar[:4], **recorded, **window)
        for function in (spikes_only, with_traces, rows_alone):
            function()  # compile / load from the cache
        results = {"spike-only": [], "trace kernel, all rows": [], "trace kernel, 4 rows": []}
        for _ in range(repeats):  # alternate, so both kernels see the same load
            for label, function in zip(results, (spikes_only, with_traces, rows_alone), strict=True):
                results[label].append(best_time(function, 1))
        steps = 2000.0 / model.default_dt_ms
        for label, times in results.items():
            rows = 4 if "4 rows" in label else n
            ns = min(times) / (rows * steps) * 1e9 * numba.get_num_threads()
            print(f"  {label:24s} best {min(times):7.3f} s   {ns:6.1f} ns per neuron-step per thread")
        ratio = min(results["trace kernel, all rows"]) / min(results["spike-only"])
        print(f"  trace kernel / spike-only, same population: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
