"""Fast population simulation: all neurons of a conductance matrix in one compiled kernel.

``simulate(model, gbar, ...)`` returns, for each row of ``gbar``, the spike times in seconds measured from the end of
the transient. Backends: "numba" (default, generated from the model declaration, see :mod:`.codegen`) and "brian2"
(see :mod:`.brian2_backend`, when available).

Time scale: ``time_scale = k`` multiplies every time constant (gates, calcium) and the membrane capacitance by k, so
the solution is exactly V(t / k) of the unscaled model. The kernel therefore integrates the unscaled model over
duration / k with the same step and multiplies spike times by k: same accuracy at every k, exact scaling by
construction.

Noise: an Ornstein-Uhlenbeck (first-order low-pass, cut-off ``noise_cutoff_hz``) current added from t = 0 (the original
held it constant during the transient), with stationary standard deviation ``noise_std`` in uA/cm2, independent of dt.
(For reference: the original's sigma = 5 after its 4th-order Butterworth filter had an sd of 2.1 uA/cm2 for STG.) Each
neuron's noise is a deterministic function of (seed, row index), whatever the number of threads.
"""

from __future__ import annotations

import numpy as np

from ..dic import validate_gbar
from ..models import get_model

TABLE_RANGE_MV = (-150.0, 100.0)
TABLE_STEP_MV = 0.01
_TABLE_CACHE: dict = {}  # (model digest, dt_ms, order) -> lookup table: keyed by content, not by name


def _table(model, dt_ms: float, order=2, record: bool = False):
    from .codegen import get_kernel, slope_table

    kernel, builder = get_kernel(model, order, record=record)
    key = (model.digest, dt_ms, order)
    if key not in _TABLE_CACHE:
        grid = np.arange(TABLE_RANGE_MV[0], TABLE_RANGE_MV[1] + TABLE_STEP_MV / 2, TABLE_STEP_MV)
        _TABLE_CACHE[key] = np.ascontiguousarray(slope_table(builder.evaluate(grid, dt_ms)))
    return kernel, _TABLE_CACHE[key]


def simulate(
    model,
    gbar,
    duration_s: float | None = None,
    transient_s: float | None = None,
    backend: str = "numba",
    noise_std: float = 0.0,
    seed: int = 0,
    time_scale: float = 1.0,
    dt_ms: float | None = None,
    noise_cutoff_hz: float = 1000.0,
    max_rate_hz: float = 1000.0,
    initial_state=None,
    return_voltage_of: int | None = None,
    voltage_stride: int = 4,
    order: int | str | None = None,
    record=None,
    record_every_ms: float | None = None,
):
    """Simulate every row of ``gbar`` and return its spike times.

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object.
    gbar : array_like, shape (n_neurons, n_channels) or (n_channels,)
        Maximal conductances in mS/cm2, in ``model.conductance_names`` order.
    duration_s : float, default: None
        Total simulated time in seconds, transient included (None: the model's default, 6 s STG and 12 s DA,
        multiplied by ``time_scale``).
    transient_s : float, default: None
        Initial time discarded (None: 3 s x time_scale). Spike times are measured from its end.
    backend : "numba" | "brian2", default: "numba"
    noise_std : float | array_like, default: 0.0
        Standard deviation of the injected noisy current (uA/cm2), one value or one per row; 0 disables noise.
    seed : int | array_like of int, default: 0
        Seed of the noise (same seed, same result); an array gives one seed per row.
    time_scale : float, default: 1.0
        k > 0; k > 1 slows every kinetic (see module docstring).
    dt_ms : float, default: None
        Integration step in ms of model time; None uses the model's ``default_dt_ms`` (STG 0.05 ms, DA 0.0125 ms,
        chosen so that the model's default scheme gives spike counts within 1 and rates within 1 % of a
        converged reference on the example sets and random population members; see tests/test_simulate.py).
    max_rate_hz : float, default: 1000.0
        Size of the per-neuron spike buffer; exceeding it raises an error.
    initial_state : array_like, default: None
        (n_states,) or (n_neurons, n_states) in ``model.state_names`` order; None uses the model's initial state.
    return_voltage_of : int, default: None
        Row whose voltage trace (every ``voltage_stride`` steps) is also returned, as (t_s, v_mV).
    order : 1 | 2 | "staggered" | None, default: None
        Integration scheme of the numba kernel: 1 (exponential Euler), 2 (exponential midpoint: two stages per
        step) or "staggered" (second order, gates half a step after V: one stage per step; models whose gates all
        have time constants and whose targets depend on V and concentrations only). None uses the model's
        ``default_scheme`` (STG "staggered", DA 2).
    record : sequence of int, default: None
        Rows whose voltage, channel currents, noise current and concentrations are recorded after the transient
        (numba backend; a separate trace kernel, see :mod:`.traces`: the spikes are exactly the spike-only run's).
    record_every_ms : float, default: None
        Sampling step of the recorded traces in ms (of the returned time, i.e. after scaling by ``time_scale``),
        rounded to a whole number of integration steps; None records every step.

    Returns
    -------
    spike_trains : list of np.ndarray
        One float64 array per row, spike times in seconds after the transient.
    (t_s, v_mV) : tuple of np.ndarray
        Only when ``return_voltage_of`` is given: the result is then (spike_trains, (t_s, v_mV)).
    traces : Traces
        Only when ``record`` is given: the result is then (spike_trains, traces) (see :class:`.traces.Traces`).
    """
    model = get_model(model)
    dt_ms = model.default_dt_ms if dt_ms is None else float(dt_ms)
    if order is not None and order not in (1, 2, "staggered"):
        raise ValueError(f"order must be 1, 2, 'staggered' or None; got {order!r}")
    if not dt_ms > 0:
        raise ValueError(f"dt_ms must be > 0; got {dt_ms}")
    gbar = validate_gbar(model, np.atleast_2d(np.asarray(gbar, dtype=float)))
    if gbar.ndim != 2:
        raise ValueError(f"gbar must be 2-D (n_neurons, {model.n_channels}); got shape {gbar.shape}")
    if not (np.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a positive number; got {time_scale}")
    duration_ms = model.default_duration_ms * time_scale if duration_s is None else 1000.0 * float(duration_s)
    transient_ms = model.default_transient_ms * time_scale if transient_s is None else 1000.0 * float(transient_s)
    if not (duration_ms > 0 and 0 <= transient_ms < duration_ms):
        raise ValueError(
            f"need 0 <= transient_s < duration_s; got transient {transient_ms} ms, duration {duration_ms} ms"
        )
    noise_std = np.broadcast_to(np.asarray(noise_std, dtype=float), (gbar.shape[0],))
    if (noise_std < 0).any() or not np.isfinite(noise_std).all():
        raise ValueError(f"noise_std must be >= 0 and finite (a scalar or one value per row); got {noise_std}")
    if return_voltage_of is not None and not (0 <= int(return_voltage_of) < gbar.shape[0]):
        raise ValueError(f"return_voltage_of must be a row index in [0, {gbar.shape[0]}); got {return_voltage_of}")
    if int(voltage_stride) < 1:
        raise ValueError(f"voltage_stride must be >= 1; got {voltage_stride}")
    if backend == "brian2":
        unsupported = [
            name
            for name, value in (
                ("initial_state", initial_state),
                ("return_voltage_of", return_voltage_of),
                ("record", record),
            )
            if value is not None
        ] + (["order"] if order is not None else [])
        if unsupported:
            raise ValueError(f"backend='brian2' does not support {', '.join(unsupported)}; use backend='numba'")
        from .brian2_backend import simulate_brian2

        return simulate_brian2(
            model,
            gbar,
            duration_ms=duration_ms,
            transient_ms=transient_ms,
            noise_std=noise_std,
            seed=seed,
            time_scale=time_scale,
            dt_ms=dt_ms,
            noise_cutoff_hz=noise_cutoff_hz,
        )
    if backend != "numba":
        raise ValueError(f"unknown backend {backend!r}; choose 'numba' or 'brian2'")
    order = model.default_scheme if order is None else order
    if record is not None:
        if return_voltage_of is not None:
            raise ValueError("give either return_voltage_of or record (record includes the voltage), not both")
        from .traces import simulate_with_traces

        return simulate_with_traces(
            model,
            gbar,
            record,
            record_every_ms,
            duration_ms=duration_ms,
            transient_ms=transient_ms,
            dt_ms=dt_ms,
            noise_std=noise_std,
            seed=seed,
            time_scale=time_scale,
            noise_cutoff_hz=noise_cutoff_hz,
            max_rate_hz=max_rate_hz,
            initial_state=initial_state,
            order=order,
        )
    result = run_numba_kernel(
        model,
        gbar,
        duration_ms / time_scale,
        transient_ms / time_scale,
        dt_ms,
        noise_std,
        seed,
        noise_cutoff_hz * time_scale,
        max_rate_hz * time_scale,
        initial_state,
        return_voltage_of,
        voltage_stride,
        order,
    )
    trains, trace = result
    trains = [train * (time_scale / 1000.0) for train in trains]
    if return_voltage_of is None:
        return trains
    t_ms, v = trace
    return trains, (t_ms * (time_scale / 1000.0), v)


def row_noise_seeds(seed, n_neurons: int) -> np.ndarray:
    """The 64-bit noise seed of each row: ``seed`` itself when it is one int per row (keeps each row's noise
    independent of batching), else drawn from ``SeedSequence(seed)`` in row order."""
    if np.ndim(seed) == 1:
        noise_seeds = np.asarray(seed, dtype=np.uint64)
        if noise_seeds.shape != (n_neurons,):
            raise ValueError(f"seed must be an int or one int per row ({n_neurons}); got shape {noise_seeds.shape}")
        return noise_seeds
    return np.random.SeedSequence(seed).generate_state(max(n_neurons, 1), dtype=np.uint64)[:n_neurons]


def run_numba_kernel(
    model,
    gbar,
    duration_ms,
    transient_ms,
    dt_ms,
    noise_std,
    seed,
    noise_cutoff_hz,
    max_rate_hz,
    initial_state,
    return_voltage_of,
    voltage_stride,
    order,
    record_arguments: tuple = (),
):
    """Run the kernel; ``record_arguments`` (record_slot, record_start, record_every, record_out) selects the trace
    kernel (see :mod:`.traces`)."""
    kernel, table = _table(model, dt_ms, order, record=bool(record_arguments))
    n_neurons = gbar.shape[0]
    n_steps = int(round(duration_ms / dt_ms))
    if initial_state is None:
        y0 = np.tile(model.initial_state(), (n_neurons, 1))
    else:
        y0 = np.array(np.broadcast_to(np.asarray(initial_state, dtype=float), (n_neurons, len(model.state_names))))
    y_end = np.empty_like(y0)
    max_spikes = int(np.ceil((duration_ms - transient_ms) * max_rate_hz / 1000.0)) + 4
    out_times = np.empty((n_neurons, max_spikes))
    out_counts = np.zeros(n_neurons, dtype=np.int64)
    out_overflow = np.zeros(n_neurons, dtype=np.bool_)
    noise_seeds = row_noise_seeds(seed, n_neurons)
    noise_tau_ms = 1000.0 / (2.0 * np.pi * noise_cutoff_hz)
    noise_decay = float(np.exp(-dt_ms / noise_tau_ms))
    noise_scale = np.ascontiguousarray(noise_std * np.sqrt(1.0 - noise_decay**2))
    trace_index = -1 if return_voltage_of is None else int(return_voltage_of)
    trace = np.empty((n_steps - 1) // voltage_stride + 1 if trace_index >= 0 else 1)
    kernel(
        gbar,
        y0,
        y_end,
        table,
        TABLE_RANGE_MV[0],
        1.0 / TABLE_STEP_MV,
        dt_ms,
        model.capacitance_uF_cm2,
        n_steps,
        transient_ms,
        model.spike_up_mV,
        model.spike_down_mV,
        noise_decay,
        noise_scale,
        noise_seeds,
        out_times,
        out_counts,
        out_overflow,
        trace_index,
        voltage_stride,
        trace,
        *record_arguments,
    )
    if out_overflow.any():
        rows = np.flatnonzero(out_overflow)[:5].tolist()
        raise RuntimeError(f"rows {rows} fired faster than max_rate_hz={max_rate_hz}; raise max_rate_hz")
    trains = [out_times[i, : out_counts[i]].copy() for i in range(n_neurons)]
    t_trace = np.arange(trace.size) * dt_ms * voltage_stride if trace_index >= 0 else None
    return trains, (t_trace, trace)


__all__ = ["simulate", "row_noise_seeds"]
