"""Reference integration with scipy (for tests and benchmark baselines, not for production use).

The right-hand side is generated from the model declaration (the same one the numba kernel uses), with an exact
Jacobian-free implicit solver. With ``rtol=1e-8`` it serves as the converged reference that the fast kernel is checked
against; with the original's settings (BDF, rtol 1e-2, atol 1e-4) it is the baseline the benchmarks compare with.
"""

from __future__ import annotations

import numpy as np

from ..models import Model, get_model
from .spikes import detect_spikes


def make_rhs(model: Model, gbar: np.ndarray, time_scale: float = 1.0):
    """f(t, y) for one neuron, states in ``model.state_names`` order (ms, mV)."""
    model = get_model(model)
    gbar = np.asarray(gbar, dtype=float)
    states = model.state_names
    dynamic = model.dynamic_gates
    instantaneous = [g for g in model.gates if g.tau_ms is None]
    targets = []
    for gate in dynamic:
        expression = gate.dynamic_inf or gate.inf
        names = model.free_names(expression)
        targets.append((model.function(expression, names), names, model.function(gate.tau_ms)))
    instant = [(g.name, model.function(g.inf)) for g in instantaneous]
    reversals = np.array([model.constants[c.reversal] for c in model.channels])
    capacitance = model.capacitance_uF_cm2 * time_scale

    def rhs(t, y):
        values = dict(zip(states, y, strict=True))
        v = values["V"]
        for name, function in instant:
            values[name] = function(v)
        currents = {}
        total = 0.0
        for index, channel in enumerate(model.channels):
            factor = 1.0
            for gate_name, power in channel.gates:
                factor *= values[gate_name] ** power
            currents[channel.name] = gbar[index] * factor * (v - reversals[index])
            total += currents[channel.name]
        dydt = np.empty(len(states))
        dydt[0] = -total / capacitance
        for j, (target, names, tau) in enumerate(targets):
            gate_name = dynamic[j].name
            dydt[1 + j] = (target(*[values[n] for n in names]) - values[gate_name]) / (tau(v) * time_scale)
        offset = 1 + len(dynamic)
        for j, c in enumerate(model.concentrations):
            source = sum(currents[s] for s in c.source_channels)
            dydt[offset + j] = (c.beta - c.alpha * source - values[c.name]) / (c.tau_ms * time_scale)
        return dydt

    return rhs


def simulate_reference(
    model,
    gbar,
    duration_ms: float,
    transient_ms: float,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    sample_dt_ms: float = 0.01,
    time_scale: float = 1.0,
):
    """Integrate one neuron with scipy and return spike onsets (ms after the transient) detected on a fine grid."""
    from scipy.integrate import solve_ivp

    model = get_model(model)
    rhs = make_rhs(model, gbar, time_scale)
    t_eval = np.arange(transient_ms, duration_ms, sample_dt_ms)
    solution = solve_ivp(
        rhs,
        (0.0, duration_ms),
        model.initial_state(),
        method=method,
        rtol=rtol,
        atol=atol,
        t_eval=t_eval,
        max_step=1.0 * time_scale if method != "LSODA" else np.inf,
    )
    if not solution.success:
        raise RuntimeError(f"reference integration failed: {solution.message}")
    return detect_spikes(solution.t, solution.y[0], model.spike_up_mV, model.spike_down_mV) - transient_ms
