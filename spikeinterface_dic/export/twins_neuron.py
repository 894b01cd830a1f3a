"""Twins of one unit as NEURON single-compartment cells (written by spikeinterface-dic's export_twins).

Run, in this folder:

    nrnivmodl .                      # compile the mechanisms once (needs a C compiler)
    python twins_neuron.py           # simulate every twin, write twins_neuron_spikes.json

Options: ``--dt-ms DT`` for a fixed step (Crank-Nicolson) instead of CVODE, ``--atol`` for CVODE's absolute
tolerance, ``--duration-s`` / ``--transient-s`` for another window (real time), ``--twins FILE`` for another twins
file built for the same model, ``--out FILE``. Each cell is built by :func:`build_cell` from twins.json; use it in
your own NEURON code (``from twins_neuron import build_cell, load``).

This file uses only NEURON and the standard library, and holds no model fact: twins.json lists the mechanisms (one
per channel, generated from the model declaration), conductances (mS/cm2), time scale k, capacitance, initial
voltage and spike thresholds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD_DT_MS = 0.1


def _density_mechanisms() -> set:
    """Names of the density mechanisms NEURON knows now."""
    from neuron import h

    types, name = h.MechanismType(0), h.ref("")
    names = set()
    for index in range(int(types.count())):
        types.select(index)
        types.selected(name)
        names.add(name[0])
    return names


def load(twins_file=None, mechanisms_folder=None) -> dict:
    """Return the twins description and load its compiled mechanisms (``nrnivmodl`` output in
    ``mechanisms_folder``, default this folder) unless NEURON already has them (it loads the current folder's own
    at import)."""
    import neuron

    description = json.loads(Path(twins_file or HERE / "twins.json").read_text())
    if set(description["mechanisms"]) <= _density_mechanisms():
        return description
    folder = Path(mechanisms_folder or HERE)
    if not any(folder.glob("*/.libs/libnrnmech.*")) and not any(folder.glob("*/libnrnmech.*")):
        raise SystemExit(f"no compiled mechanisms in {folder}: run `nrnivmodl .` there first")
    neuron.load_mechanisms(str(folder), warn_if_already_loaded=False)
    missing = sorted(set(description["mechanisms"]) - _density_mechanisms())
    if missing:
        raise SystemExit(f"mechanisms {missing} are not in {folder}: export and compile this model's twins there")
    return description


def build_cell(description: dict, gbar_mS_cm2, time_scale: float, name: str = "twin"):
    """One soma with every channel's mechanism at the twin's conductances and time scale k (cm = C k)."""
    from neuron import h

    section = h.Section(name=name)
    section.L = section.diam = math.sqrt(100.0 / math.pi)  # area 100 um2; density mechanisms do not depend on it
    section.nseg = 1
    section.cm = description["capacitance_uF_cm2"] * time_scale
    for mechanism, conductance in zip(description["mechanisms"], gbar_mS_cm2, strict=True):
        section.insert(mechanism)
        setattr(section(0.5), f"gbar_{mechanism}", conductance / 1000.0)  # mS/cm2 -> S/cm2
        setattr(section(0.5), f"k_{mechanism}", time_scale)
    for pool in description["pools"]:
        section.insert(pool["mechanism"])
        setattr(section(0.5), f"k_{pool['mechanism']}", time_scale)
        # Initial concentration of the model's private ion (read by gates at initialisation, before the pool's own
        # INITIAL block may have run).
        setattr(h, f"{pool['ion']}i0_{pool['ion']}_ion", pool["initial"])
    return section


def spike_onsets(description, onsets_ms, t_ms, v_mV, transient_ms) -> list:
    """The kernel's rule: an onset (upward crossing of spike_up_mV) counts only if V later crosses spike_down_mV
    downwards; onsets before the transient's end are dropped. Times in s after the transient."""
    down = description["spike_down_mV"]
    last_down = -math.inf
    for j in range(1, len(v_mV)):
        if v_mV[j - 1] >= down > v_mV[j]:
            last_down = t_ms[j]
    return [(t - transient_ms) / 1000.0 for t in onsets_ms if transient_ms <= t < last_down]


def simulate(description, dt_ms=None, atol=1e-6, duration_s=None, transient_s=None) -> dict:
    """Simulate every twin of ``description``; return {"spike_times_s": [...], "solver": ..., "wall_s": ...}."""
    from neuron import h

    h.load_file("stdrun.hoc")
    rows = description["gbar_mS_cm2"]

    def each(value) -> list:  # twins.json holds one number, or one per twin when the twins' k differ
        return value if isinstance(value, list) else [value] * len(rows)

    time_scales = each(description["time_scale"])
    durations_ms = [1000.0 * d for d in each(description["duration_s"] if duration_s is None else duration_s)]
    transients_ms = [1000.0 * t for t in each(description["transient_s"] if transient_s is None else transient_s)]
    cells, counters, recordings = [], [], []
    for index, (gbar, k) in enumerate(zip(rows, time_scales, strict=True)):
        section = build_cell(description, gbar, k, name=f"twin{index}")
        onsets = h.Vector()
        detector = h.NetCon(section(0.5)._ref_v, None, sec=section)
        detector.threshold = description["spike_up_mV"]
        detector.record(onsets)
        v_vector = h.Vector()
        v_vector.record(section(0.5)._ref_v, RECORD_DT_MS)  # only to confirm the last spike's repolarisation
        cells.append(section)
        counters.append((detector, onsets))
        recordings.append(v_vector)
    cvode = h.CVode()
    if dt_ms is None:
        cvode.active(1)
        cvode.atol(atol)
        cvode.use_local_dt(1)  # cells are independent: each keeps its own step
        solver = f"CVODE (local steps), atol {atol}"
    else:
        cvode.active(0)
        h.secondorder = 2
        h.dt = dt_ms
        h.steps_per_ms = 1.0 / dt_ms
        solver = f"fixed step {dt_ms} ms, Crank-Nicolson (secondorder=2)"
    started = time.perf_counter()
    h.finitialize(description["v_init_mV"])
    h.continuerun(max(durations_ms))
    wall_s = time.perf_counter() - started
    trains = []
    for (_, onsets), v_vector, transient_ms, end_ms in zip(
        counters, recordings, transients_ms, durations_ms, strict=True
    ):
        t_ms = [RECORD_DT_MS * j for j in range(len(v_vector))]
        kept = [t for t in onsets if t < end_ms]
        trains.append(spike_onsets(description, kept, t_ms, list(v_vector), transient_ms))
    return {"spike_times_s": trains, "solver": solver, "wall_s": wall_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twins", default=None, help="twins file (default: twins.json next to this script)")
    parser.add_argument("--mechanisms", default=None, help="folder where nrnivmodl was run (default: this folder)")
    parser.add_argument("--dt-ms", type=float, default=None, help="fixed step in ms (default: CVODE)")
    parser.add_argument("--atol", type=float, default=1e-6, help="CVODE absolute tolerance (default: 1e-6)")
    parser.add_argument("--duration-s", type=float, default=None, help="total time incl. transient, s (real time)")
    parser.add_argument("--transient-s", type=float, default=None, help="initial time discarded, s (real time)")
    parser.add_argument("--out", default="twins_neuron_spikes.json", help="output JSON file")
    arguments = parser.parse_args(argv)
    description = load(arguments.twins, arguments.mechanisms)
    result = simulate(description, arguments.dt_ms, arguments.atol, arguments.duration_s, arguments.transient_s)
    result.update(unit_id=description.get("unit_id"), twin_indices=description.get("twin_indices"))
    Path(arguments.out).write_text(json.dumps(result))
    counts = [len(train) for train in result["spike_times_s"]]
    print(f"{len(counts)} twins simulated ({result['solver']}, {result['wall_s']:.1f} s); spike counts {counts}")
    print(f"spike times written to {arguments.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
