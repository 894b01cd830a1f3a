"""Dynamic Input Conductances (Drion et al. 2015), batched over neurons and voltages.

For a model declared in :mod:`spikeinterface_dic.models` and maximal conductances ``gbar`` (mS/cm2), the steady-state
slope of the I-V curve is split by timescale into fast, slow and ultraslow feedback and divided by the leak:

    g_f(V) + g_s(V) + g_u(V) = (1 / g_leak) dI_inf/dV,          g_DIC(V) = S(V; gbar) . gbar

(method spec section 3). Derivatives of steady states are exact complex-step derivatives of the declared
expressions, so no hand-written derivative can drift from the model. Positive DIC = restorative feedback.

Cost model: one evaluation of every gate steady state (one exp each) and three reference time constants per
(neuron, voltage) pair, plus one complex evaluation per gate for the derivative: O(n_gates) exps, fully vectorised.
"""

from __future__ import annotations

import numpy as np

from .models import Model, get_model

COMPLEX_STEP = 1e-30  # imaginary step of complex-step derivatives: exact to rounding, no cancellation


def validate_gbar(model: Model, gbar, name: str = "gbar") -> np.ndarray:
    """Check maximal conductances against a model and return them as a float array.

    Parameters
    ----------
    model : Model
        The model whose channels the last axis holds.
    gbar : array_like, shape (..., n_channels)
        Maximal conductances (mS/cm2).
    name : str, default: "gbar"
        Argument name used in error messages.

    Raises
    ------
    ValueError
        On a wrong last axis, NaN, negative conductances or a non-positive leak.
    """
    gbar = np.asarray(gbar, dtype=float)
    if gbar.ndim == 0 or gbar.shape[-1] != model.n_channels:
        raise ValueError(
            f"{name} must have shape (..., {model.n_channels}) with columns {', '.join(model.conductance_names)} "
            f"for model {model.name!r}; got shape {gbar.shape}"
        )
    if np.isnan(gbar).any():
        rows = np.argwhere(np.isnan(gbar).any(axis=-1)).tolist()[:5]
        raise ValueError(f"{name} contains NaN conductances (rows {rows}); give a value for every channel")
    if (gbar < 0).any():
        rows = np.argwhere((gbar < 0).any(axis=-1)).tolist()[:5]
        raise ValueError(f"{name} contains negative conductances (rows {rows}); maximal conductances must be >= 0")
    if (gbar[..., model.leak_index] <= 0).any():
        rows = np.argwhere(gbar[..., model.leak_index] <= 0).tolist()[:5]
        raise ValueError(f"{name} has g_leak <= 0 (rows {rows}); DICs are normalised by the leak, which must be > 0")
    return gbar


def timescale_weight(tau_ms, tau_low_ms, tau_high_ms):
    """Log-interpolated weight: 1 if tau <= tau_low, 0 if tau > tau_high, else (ln tau_high - ln tau)/(ln ratio)."""
    tau, low, high = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (tau_ms, tau_low_ms, tau_high_ms)))
    with np.errstate(divide="ignore", invalid="ignore"):
        middle = (np.log(high) - np.log(tau)) / (np.log(high) - np.log(low))
    return np.where(tau <= low, 1.0, np.where(tau > high, 0.0, middle))


def _derivative(function, arguments: dict, variable: str):
    shifted = dict(arguments)
    shifted[variable] = arguments[variable] + 1j * COMPLEX_STEP
    return np.imag(function(**shifted)) / COMPLEX_STEP


def _gate_values(model: Model, gate, arguments: dict):
    names = model.free_names(gate.inf)
    function = model.function(gate.inf, names)

    def call(**kwargs):
        return function(*[kwargs[n] for n in names])

    local = {n: arguments[n] for n in names}
    value = call(**local)
    derivatives = {n: _derivative(call, local, n) for n in names}
    return value, derivatives


def gating_factor(channel, gate_values: dict):
    """prod(x ** power) over the gates of a channel (1 for the leak), given {gate name: value}."""
    value = 1.0
    for gate_name, power in channel.gates:
        value = value * gate_values[gate_name] ** power
    return value


def gating_factor_partial(channel, gate_values: dict, gate_name: str):
    """d(prod x^p)/dx for one gate x of the channel."""
    result = 1.0
    for name, power in channel.gates:
        if name == gate_name:
            result = result * power * gate_values[name] ** (power - 1)
        else:
            result = result * gate_values[name] ** power
    return result


def channel_sensitivity(channel, gate_values: dict, driving, paths: dict):
    """One channel's column of the unnormalised S: (fast, slow, ultraslow) rows.

    Parameters
    ----------
    channel : Channel
        The channel.
    gate_values : dict
        {gate name: steady-state value}.
    driving : float | np.ndarray
        V - E_rev.
    paths : dict
        {gate name: [(d x_inf/dV along one path, w_fs, w_su), ...]}: the direct voltage path and one path per
        concentration the gate reads, each with the timescale weights of that path.

    Returns
    -------
    tuple
        (fast, slow, ultraslow): the static factor plus the fast share of every path's contribution, then the slow and
        ultraslow shares (w_su - w_fs and 1 - w_su of each contribution).
    """
    fast, slow, ultraslow = gating_factor(channel, gate_values), 0.0, 0.0
    for gate_name, _ in channel.gates:
        partial = gating_factor_partial(channel, gate_values, gate_name) * driving
        for slope, w_fs, w_su in paths[gate_name]:
            contribution = partial * slope
            fast = fast + w_fs * contribution
            slow = slow + (w_su - w_fs) * contribution
            ultraslow = ultraslow + (1.0 - w_su) * contribution
    return fast, slow, ultraslow


def concentration_steady_state(model: Model, concentration, v, gbar):
    """C_inf(V; gbar) and dC_inf/dV for a concentration driven by its source currents."""
    c_inf = concentration.beta
    dc_dv = 0.0
    for channel_name in concentration.source_channels:
        index = model.channel_index(channel_name)
        channel = model.channels[index]
        reversal = model.constants[channel.reversal]
        values, derivatives = {}, {}
        for gate_name, _ in channel.gates:
            values[gate_name], partials = _gate_values(model, model.gate_by_name[gate_name], {"V": v})
            derivatives[gate_name] = partials["V"]
        factor = gating_factor(channel, values)
        dfactor = sum(gating_factor_partial(channel, values, g) * derivatives[g] for g, _ in channel.gates)
        g = gbar[..., index]
        c_inf = c_inf - concentration.alpha * g * factor * (v - reversal)
        dc_dv = dc_dv - concentration.alpha * g * (dfactor * (v - reversal) + factor)
    return c_inf, dc_dv


def sensitivity_matrix(model, gbar, v_mV=None, normalize: bool = True) -> np.ndarray:
    """Sensitivity matrix S(V; gbar), shape (..., 3, n_channels), rows (fast, slow, ultraslow).

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object.
    gbar : array_like, shape (..., n_channels)
        Maximal conductances (mS/cm2). Only the leak (normalisation) and, for STG, g_CaT and g_CaS (through the
        steady-state calcium) enter S; the other columns may hold any finite value.
    v_mV : float | array_like, default: None
        Voltage(s) in mV, broadcast against ``gbar[..., 0]``; None uses the model's V_th.
    normalize : bool, default: True
        Divide by g_leak (the method always does).
    """
    model = get_model(model)
    gbar = np.asarray(gbar, dtype=float)
    v = np.asarray(model.v_th_mV if v_mV is None else v_mV, dtype=float)
    shape = np.broadcast_shapes(gbar.shape[:-1], v.shape)
    v = np.broadcast_to(v, shape)
    gbar = np.broadcast_to(gbar, shape + (model.n_channels,))

    arguments = {"V": v}
    concentration_slopes = {}
    for concentration in model.concentrations:
        arguments[concentration.name], concentration_slopes[concentration.name] = concentration_steady_state(
            model, concentration, v, gbar
        )

    tau_fast = model.function(model.tau_fast_ms)(v)
    tau_slow = model.function(model.tau_slow_ms)(v)
    tau_ultraslow = model.function(model.tau_ultraslow_ms)(v)

    gate_values, contributions = {}, {}  # contributions: gate -> list of (d x_inf/dV along one path, w_fs, w_su)
    for gate in model.gates:
        value, partials = _gate_values(model, gate, arguments)
        gate_values[gate.name] = value
        if gate.dic_timescale == "fast":
            weights = (1.0, 1.0)
        elif gate.dic_timescale == "ultraslow":
            weights = (0.0, 0.0)
        else:
            tau = model.function(gate.tau_ms)(v)
            weights = (timescale_weight(tau, tau_fast, tau_slow), timescale_weight(tau, tau_slow, tau_ultraslow))
        paths = [(partials["V"], *weights)]
        for concentration in model.concentrations:
            if concentration.name in partials:
                tau_c = np.full(shape, concentration.tau_ms)
                paths.append(
                    (
                        partials[concentration.name] * concentration_slopes[concentration.name],
                        timescale_weight(tau_c, tau_fast, tau_slow),
                        timescale_weight(tau_c, tau_slow, tau_ultraslow),
                    )
                )
        contributions[gate.name] = paths

    matrix = np.zeros(shape + (3, model.n_channels))
    for index, channel in enumerate(model.channels):
        driving = v - model.constants[channel.reversal]
        for row, value in enumerate(channel_sensitivity(channel, gate_values, driving, contributions)):
            matrix[..., row, index] = value
    if normalize:
        matrix = matrix / gbar[..., model.leak_index, None, None]
    return matrix


def compute_dics(model, gbar, v_mV=None) -> np.ndarray:
    """Leak-normalised DICs (g_f, g_s, g_u), shape (..., 3).

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object.
    gbar : array_like, shape (..., n_channels)
        Maximal conductances in mS/cm2, columns in ``model.conductance_names`` order, all >= 0, leak > 0.
    v_mV : float | array_like | None, default: None
        Voltage(s) in mV (broadcast against the neurons); None uses the model's fixed V_th.

    Examples
    --------
    >>> import spikeinterface_dic as sdic
    >>> sdic.compute_dics("stg", [6600.8, 125.96, 4.149, 18.34, 159.68, 413.83, 0.3216, 0.009577])  # doctest: +SKIP
    array([-6.16, 3.94, 4.97])
    """
    model = get_model(model)
    gbar = validate_gbar(model, gbar)
    matrix = sensitivity_matrix(model, gbar, v_mV)
    shape = matrix.shape[:-2]
    return np.einsum("...rc,...c->...r", matrix, np.broadcast_to(gbar, shape + (model.n_channels,)))


def total_input_conductance(model, gbar, v_mV) -> np.ndarray:
    """g_t(V) = g_f + g_s + g_u = (1/g_leak) dI_inf/dV, weight-independent."""
    return compute_dics(model, gbar, v_mV).sum(axis=-1)


def compute_threshold(
    model, gbar, v_min_mV: float = -80.0, v_max_mV: float = 0.0, grid_step_mV: float = 0.25, tolerance_mV: float = 1e-9
) -> np.ndarray:
    """Per-neuron threshold: the first voltage where g_t changes from > 0 to <= 0 (NaN where there is none).

    A grid scan on [v_min_mV, v_max_mV] brackets the first decreasing zero of g_t, then a vectorised bisection refines
    it to ``tolerance_mV``. Returns an array of shape ``gbar.shape[:-1]`` in mV.
    """
    model = get_model(model)
    gbar = validate_gbar(model, gbar)
    batch = gbar.reshape(-1, model.n_channels)
    grid = np.arange(v_min_mV, v_max_mV + 0.5 * grid_step_mV, grid_step_mV)
    g_t = total_input_conductance(model, batch[:, None, :], grid[None, :])  # (n, n_grid)
    crossing = (g_t[:, :-1] > 0) & (g_t[:, 1:] <= 0)
    has_crossing = crossing.any(axis=1)
    first = np.argmax(crossing, axis=1)
    low, high = grid[first].copy(), grid[first + 1].copy()
    n_iterations = int(np.ceil(np.log2(grid_step_mV / tolerance_mV))) + 1
    for _ in range(n_iterations):
        middle = 0.5 * (low + high)
        positive = total_input_conductance(model, batch, middle) > 0
        low = np.where(positive, middle, low)
        high = np.where(positive, high, middle)
    threshold = np.where(has_crossing, 0.5 * (low + high), np.nan)
    return threshold.reshape(gbar.shape[:-1])
