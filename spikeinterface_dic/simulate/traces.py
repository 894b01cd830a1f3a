"""Voltage, current and concentration traces of chosen rows, from a separate specialisation of the kernel.

Why a separate kernel: the spike-only kernel is the hot path of the whole package (populations of thousands of
twins); a run-time flag inside it would add a branch and live registers to every neuron-step. The trace kernel is
generated from the same declaration by :func:`.codegen._generate` with ``record=True``: the same statements in the
same order, plus a block after each step's rates that only READS V, the concentrations, the noise current and the
conductances ``a_<channel>`` the step used. Its spikes are therefore exactly the spike-only kernel's (same seed, same
arithmetic; tests/test_traces.py), and the spike-only kernel's source, compiled code and speed are unchanged.

What a sample holds (``simulate.codegen.record_names``): V at t_n (mV); each channel's current
a_<channel> * (V - E_<channel>) in uA/cm2 (outward positive, the declared reversal potential, e.g. STG's constant
E_Ca = 80 mV), with the conductance that drives V over [t_n, t_n + dt] (gates at the step's midpoint for the
second-order schemes); the OU noise current (uA/cm2, inward positive); each concentration at t_n.

Time scale k: the kernel integrates the unscaled model; sample times are multiplied by k (the currents of the scaled
model are the unscaled ones at t / k, same amplitudes).

Cost: the trace kernel runs one neuron per parallel iteration (the spike-only kernel interleaves two), and each
recorded sample costs n_channels + 3 stores; for a handful of rows this is negligible next to compilation (~5 s the
first time, cached on disk afterwards). Memory: rows x samples x (n_channels + 3) doubles (STG, 3 s at 0.1 ms:
30,000 samples, 2.9 MB per row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Traces:
    """Recorded traces of some rows of a simulation.

    Attributes
    ----------
    t_s : np.ndarray, shape (n_samples,) or (n_rows, n_samples)
        Sample times in seconds after the transient (the spike trains' clock); per row, NaN-padded, when the rows were
        simulated at different time scales (see :meth:`time_of`).
    rows : np.ndarray of int
        The rows of ``gbar`` recorded, in the order of ``data``.
    names : tuple of str
        Column names: "V" (mV), "I_<channel>" (uA/cm2, outward positive), "I_noise" (uA/cm2, inward positive) and
        each concentration (STG: "Ca", uM as in the model).
    data : np.ndarray, shape (n_rows, n_samples, n_columns)
    """

    t_s: np.ndarray
    rows: np.ndarray
    names: tuple
    data: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """(n_rows, n_samples) array of one column, e.g. ``traces["V"]`` or ``traces["I_Na"]``."""
        if name not in self.names:
            raise KeyError(f"no recorded trace {name!r}; recorded: {', '.join(self.names)}")
        return self.data[:, :, self.names.index(name)]

    def time_of(self, row: int) -> np.ndarray:
        """Sample times (s) of one recorded row (``t_s`` is 2-D, NaN-padded, when rows have different k)."""
        t = self.t_s if self.t_s.ndim == 1 else self.t_s[row]
        return t[np.isfinite(t)]

    def values(self, name: str, row: int) -> np.ndarray:
        """One row's samples of a column, matching :meth:`time_of`."""
        return self[name][row][: self.time_of(row).size]

    @property
    def current_names(self) -> tuple:
        """The channel currents recorded ("I_<channel>"), without the noise current."""
        return tuple(name for name in self.names if name.startswith("I_") and name != "I_noise")


def simulate_with_traces(
    model,
    gbar,
    rows,
    record_every_ms,
    *,
    duration_ms,
    transient_ms,
    dt_ms,
    noise_std,
    seed,
    time_scale,
    noise_cutoff_hz,
    max_rate_hz,
    initial_state,
    order,
):
    """(spike trains of every row, :class:`Traces` of ``rows``): the numba path of ``simulate(..., record=rows)``.

    Arguments are those of :func:`~spikeinterface_dic.simulate.simulate` after its checks (times in ms of the
    returned clock, i.e. before dividing by ``time_scale``).
    """
    from . import run_numba_kernel
    from .codegen import record_names

    rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    n_neurons = gbar.shape[0]
    if rows.ndim != 1 or rows.size == 0 or (rows < 0).any() or (rows >= n_neurons).any():
        raise ValueError(f"record must list row indices in [0, {n_neurons}); got {rows.tolist()}")
    if np.unique(rows).size != rows.size:
        raise ValueError(f"record lists a row twice: {rows.tolist()}")
    model_duration_ms, model_transient_ms = duration_ms / time_scale, transient_ms / time_scale
    if record_every_ms is None:
        every = 1
    else:
        if not float(record_every_ms) > 0:
            raise ValueError(f"record_every_ms must be > 0; got {record_every_ms}")
        every = max(1, int(round(float(record_every_ms) / time_scale / dt_ms)))
    n_steps = int(round(model_duration_ms / dt_ms))
    start = min(int(np.ceil(model_transient_ms / dt_ms - 1e-9)), n_steps)
    n_samples = max(0, (n_steps - 1 - start) // every + 1) if n_steps > start else 0
    names = record_names(model)
    slots = np.full(n_neurons, -1, dtype=np.int64)
    slots[rows] = np.arange(rows.size)
    out = np.zeros((rows.size, n_samples, len(names)))
    trains, _ = run_numba_kernel(
        model,
        gbar,
        model_duration_ms,
        model_transient_ms,
        dt_ms,
        noise_std,
        seed,
        noise_cutoff_hz * time_scale,
        max_rate_hz * time_scale,
        initial_state,
        None,
        1,
        order,
        record_arguments=(slots, start, every, out),
    )
    t_s = ((start + every * np.arange(n_samples)) * dt_ms - model_transient_ms) * (time_scale / 1000.0)
    trains = [train * (time_scale / 1000.0) for train in trains]
    return trains, Traces(t_s=t_s, rows=rows, names=names, data=out)


__all__ = ["Traces", "simulate_with_traces"]
