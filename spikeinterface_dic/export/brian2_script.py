"""Standalone Brian2 script of a unit's twins: the Brian2 backend's equations (generated from the declaration by
:func:`~spikeinterface_dic.simulate.brian2_backend.brian2_equations`, without noise) in one file that needs only
Brian2.

Time scale: as in the backend, the script integrates the unscaled model over each twin's window / k and multiplies
its spike times by its k (exact: the k-scaled model is V(t / k); twins drawn from the posterior have their own k).
Scheme: Brian2's ``exponential_euler`` at half the model's numba step (STG 0.025 ms: within 0.25 % of the kernel in
mean ISI, tests/test_brian2.py); any Brian2 method may be passed.
Spike rule: the kernel's (onset = upward crossing of spike_up_mV interpolated between steps, kept only if V later
crosses spike_down_mV downwards).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_TEMPLATE = '''"""Twins of unit {unit!r} of model {model!r} as a standalone Brian2 script (written by spikeinterface-dic
{version}; equations generated from the model declaration, sha256 {digest}...).

Run:  python {filename} [--duration-s S] [--transient-s S] [--dt-ms DT] [--method NAME]
Prints each twin's spike count and writes spike times (s after the transient, real time) to {stem}_spikes.json.
Time scale: each twin's unscaled model runs over its window / k and its spike times are multiplied by its k.
"""

import argparse
import json

import numpy as np
from brian2 import EventMonitor, NeuronGroup, cm, defaultclock, ms, msiemens, mV, run, uF

EQUATIONS = """
{equations}
"""
CONDUCTANCE_NAMES = {names!r}
GBAR_MS_CM2 = {gbar!r}
TWIN_INDICES = {indices!r}
TIME_SCALES = {time_scale!r}  # k of each twin
INITIAL_STATE = {initial!r}
CAPACITANCE_UF_CM2 = {capacitance!r}
SPIKE_UP_MV, SPIKE_DOWN_MV = {up!r}, {down!r}
DURATION_S, TRANSIENT_S = {duration!r}, {transient!r}  # each twin's window, s of real time


def main(argv=None):
    parser = argparse.ArgumentParser(description="simulate the twins")
    parser.add_argument("--duration-s", type=float, default=None, help="total time, s of real time (default: twins')")
    parser.add_argument("--transient-s", type=float, default=None, help="initial time discarded, s (default: twins')")
    parser.add_argument("--dt-ms", type=float, default={dt!r}, help="step in ms of model time")
    parser.add_argument("--method", default="exponential_euler", help="Brian2 integration method")
    parser.add_argument("--out", default="{stem}_spikes.json")
    arguments = parser.parse_args(argv)
    defaultclock.dt = arguments.dt_ms * ms
    events = {{
        "onset": f"v > {{SPIKE_UP_MV!r}}*mV and v_prev <= {{SPIKE_UP_MV!r}}*mV",
        "repolarised": f"v < {{SPIKE_DOWN_MV!r}}*mV and v_prev >= {{SPIKE_DOWN_MV!r}}*mV",
    }}
    neurons = NeuronGroup(
        len(GBAR_MS_CM2), EQUATIONS, method=arguments.method, events=events,
        namespace={{"Cm": CAPACITANCE_UF_CM2 * uF / cm**2}},
    )
    for name, value in INITIAL_STATE.items():
        setattr(neurons, name, value * mV if name == "v" else value)
    neurons.v_prev = INITIAL_STATE["v"] * mV
    neurons.t_repol = -1 * ms
    gbar = np.asarray(GBAR_MS_CM2)
    for j, name in enumerate(CONDUCTANCE_NAMES):
        setattr(neurons, f"g_{{name}}", gbar[:, j] * msiemens / cm**2)
    neurons.run_regularly("v_prev = v", when="start")
    neurons.run_on_event("repolarised", "t_repol = t")
    onsets = EventMonitor(neurons, "onset", variables=["v", "v_prev"])
    k = np.asarray(TIME_SCALES, dtype=float)
    duration = np.asarray(DURATION_S if arguments.duration_s is None else [arguments.duration_s] * len(k))
    transient = np.asarray(TRANSIENT_S if arguments.transient_s is None else [arguments.transient_s] * len(k))
    end_ms, transient_ms = duration / k * 1000, transient / k * 1000  # model time
    run(end_ms.max() * ms)
    dt = arguments.dt_ms
    t_repol_ms = np.asarray(neurons.t_repol / ms)
    trains = [[] for _ in GBAR_MS_CM2]
    for i, t, v, v_prev in zip(onsets.i, onsets.t / ms, onsets.v / mV, onsets.v_prev / mV):
        onset = t - dt + dt * (SPIKE_UP_MV - v_prev) / (v - v_prev)  # interpolated between the two steps
        if transient_ms[i] <= onset < min(t_repol_ms[i], end_ms[i]):
            trains[i].append((onset - transient_ms[i]) / 1000 * k[i])
    with open(arguments.out, "w") as file:
        json.dump({{"unit_id": {unit!r}, "twin_indices": TWIN_INDICES, "spike_times_s": trains}}, file)
    print("spike counts", [len(train) for train in trains], "-> written to", arguments.out)


if __name__ == "__main__":
    main()
'''


def brian2_script(model, unit_id, gbar, indices, time_scale, duration_s, transient_s, filename) -> str:
    """The script's text."""
    from ..simulate.brian2_backend import brian2_equations
    from ..version import __version__

    state = dict(zip(model.state_names, model.initial_state().tolist(), strict=True))
    initial = {"v": state.pop("V"), **state}
    return _TEMPLATE.format(
        unit=str(unit_id),
        model=model.name,
        version=__version__,
        digest=model.digest[:16],
        filename=filename,
        stem=Path(filename).stem,
        time_scale=np.broadcast_to(np.asarray(time_scale, dtype=float), (len(gbar),)).tolist(),
        equations=brian2_equations(model, noise=False),
        names=list(model.conductance_names),
        gbar=np.asarray(gbar, dtype=float).tolist(),
        indices=[int(i) for i in indices],
        initial=initial,
        capacitance=float(model.capacitance_uF_cm2),
        up=float(model.spike_up_mV),
        down=float(model.spike_down_mV),
        duration=np.broadcast_to(np.asarray(duration_s, dtype=float), (len(gbar),)).tolist(),
        transient=np.broadcast_to(np.asarray(transient_s, dtype=float), (len(gbar),)).tolist(),
        dt=float(model.default_dt_ms) / 2.0,
    )


def write_brian2_script(model, unit_id, gbar, indices, time_scale, duration_s, transient_s, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"twins_{model.name}_brian2.py"
    text = brian2_script(model, unit_id, gbar, indices, time_scale, duration_s, transient_s, path.name)
    temporary = path.with_suffix(".py.tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path
