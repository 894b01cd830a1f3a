"""Agreement of the exported NEURON twins with the numba kernel, at the kernel's default and converged steps
(the numbers of docs/export.md).

Run:  python benchmarks/bench_neuron_agreement.py [--atol 1e-6] [--folder DIR]

Exports the example sets and random population members of STG and DA (plus one twin at k = 2) with
``export_twins(format="neuron")``, compiles the mechanisms with ``nrnivmodl`` and runs ``twins_neuron.py`` (CVODE,
``--atol``) in a subprocess per set; then simulates the same twins with the kernel at its default step and at a
converged step (STG 0.01 ms, DA 0.0025 ms) and prints, per twin, kernel / NEURON spike counts and the relative
difference of mean ISIs over the model's default window. Needs NEURON and a C++ compiler; ~2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from spikeinterface_dic.export import export_twins
from spikeinterface_dic.models import get_model
from spikeinterface_dic.population import generate_population
from spikeinterface_dic.simulate import simulate

CONVERGED_DT_MS = {"stg": 0.01, "da": 0.0025}
RANDOM_TARGETS = {"stg": [(-5.0, 5.0), (3.0, 5.0)], "da": [(-3.0, 2.0), (5.0, 3.0)]}


def twin_sets(model: str) -> dict:
    examples = get_model(model).extra["example_sets"]
    members = [generate_population(model, g_s=g_s, g_u=g_u, n=3, seed=1).gbar for g_s, g_u in RANDOM_TARGETS[model]]
    first = next(iter(examples))
    return {
        "examples " + ",".join(examples): (np.array(list(examples.values())), 1.0),
        "random members": (np.concatenate(members), 1.0),
        f"{first} at k=2": (np.array([examples[first]]), 2.0),
    }


def compare(kernel_trains, neuron_trains) -> str:
    cells = []
    for ours, theirs in zip(kernel_trains, neuron_trains, strict=True):
        difference = (
            np.mean(np.diff(ours)) / np.mean(np.diff(theirs)) - 1.0 if min(ours.size, theirs.size) > 1 else np.nan
        )
        cells.append(f"{ours.size}/{theirs.size} {difference:+.3%}")
    return "; ".join(cells)


def main(atol: float, folder: Path) -> None:
    nrnivmodl = Path(sys.executable).parent / "nrnivmodl"
    for model in ("stg", "da"):
        sets = twin_sets(model)
        base = folder / model
        for index, (label, (gbar, k)) in enumerate(sets.items()):
            export_twins(gbar, label, "neuron", base / f"set{index}", model=model, time_scale=k)
        subprocess.run([str(nrnivmodl), "."], cwd=base / "set0", check=True, capture_output=True)
        print(f"\n{model}: NEURON CVODE atol {atol}; kernel default step {get_model(model).default_dt_ms} ms and "
              f"converged {CONVERGED_DT_MS[model]} ms (kernel/NEURON spikes, mean-ISI difference)")  # fmt: skip
        for index, (label, (gbar, k)) in enumerate(sets.items()):
            out = base / f"set{index}" / "spikes.json"
            command = [sys.executable, "twins_neuron.py", "--twins", str(base / f"set{index}" / "twins.json")]
            completed = subprocess.run(
                command + ["--atol", repr(atol), "--out", str(out)], cwd=base / "set0", capture_output=True, text=True
            )
            if completed.returncode:
                raise SystemExit(completed.stderr[-2000:])
            neuron_trains = [np.asarray(t) for t in json.loads(out.read_text())["spike_times_s"]]
            default = simulate(model, gbar, time_scale=k)
            converged = simulate(model, gbar, time_scale=k, dt_ms=CONVERGED_DT_MS[model])
            print(f"  {label}\n    default step:   {compare(default, neuron_trains)}")
            print(f"    converged step: {compare(converged, neuron_trains)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atol", type=float, default=1e-6)
    parser.add_argument("--folder", default=None, help="work folder (default: a temporary one)")
    arguments = parser.parse_args()
    if arguments.folder:
        main(arguments.atol, Path(arguments.folder))
    else:
        with tempfile.TemporaryDirectory() as temporary:
            main(arguments.atol, Path(temporary))
