"""Matplotlib figures of twins' traces (:func:`spikeinterface_dic.twin_traces`). Every function returns the Figure.

Currents are drawn as recorded, outward positive (the convention of voltage-clamp plots: Na and Ca inward, below
zero; K outward, above), on a symmetric-log axis because they span four decades (Na ~ 1e3 uA/cm2 during a spike, H
and leak ~ 0.1-1 uA/cm2 between spikes).
"""

from __future__ import annotations

import numpy as np


def _row(traces, row: int, window_s):
    """(times, mask) of one recorded row within the window (rows of different k have their own times)."""
    t = traces.time_of(row)
    if window_s is None:
        return t, np.ones(t.size, dtype=bool)
    return t, (t >= window_s[0]) & (t <= window_s[1])


def plot_twin_traces(traces, twin: int = 0, window_s=None, currents=None, figure=None, figsize=(9, 6)):
    """One twin's membrane potential with its ionic currents (and calcium, when the model has it) below.

    Parameters
    ----------
    traces : Traces
        From :func:`~spikeinterface_dic.twin_traces` or ``simulate(..., record=...)``.
    twin : int, default: 0
        Position of the twin in ``traces`` (``traces.rows[twin]`` is its index in the population).
    window_s : (start, stop) | None, default: None
        Time window in s (None: everything recorded).
    currents : sequence of str | None, default: None
        Channel names to draw (None: every channel).
    """
    import matplotlib.pyplot as plt

    t, keep = _row(traces, twin, window_s)
    t = t[keep]
    names = [f"I_{c}" for c in currents] if currents is not None else list(traces.current_names)
    concentrations = [n for n in traces.names if n != "V" and not n.startswith("I_")]
    n_axes = 2 + len(concentrations)
    if figure is None:
        figure = plt.figure(figsize=figsize)
    else:
        figure.clear()
    axes = figure.subplots(n_axes, 1, sharex=True, gridspec_kw={"height_ratios": [2, 2] + [1] * len(concentrations)})
    axes[0].plot(t, traces.values("V", twin)[keep], color="k", lw=0.8)
    axes[0].set_ylabel("V (mV)")
    axes[0].set_title(f"twin {int(traces.rows[twin])}")
    colors = plt.get_cmap("tab10")
    for j, name in enumerate(names):
        axes[1].plot(t, traces.values(name, twin)[keep], lw=0.8, color=colors(j % 10), label=name[2:])
    axes[1].set_yscale("symlog", linthresh=1.0)
    axes[1].set_ylabel("current (uA/cm2)\ninward < 0 < outward")
    axes[1].legend(ncol=min(len(names), 8), fontsize="small", loc="upper right", frameon=False)
    for ax, name in zip(axes[2:], concentrations, strict=True):
        ax.plot(t, traces.values(name, twin)[keep], color="tab:green", lw=0.8)
        ax.set_ylabel(name)
    axes[-1].set_xlabel("time (s)")
    figure.align_ylabels(axes)
    return figure


def plot_twins_with_raster(
    recorded_train, spike_trains, traces, window_s=None, unit_label="", figure=None, figsize=None
):
    """The recorded raster of a unit above the voltage traces of several of its twins (same time axis).

    Parameters
    ----------
    recorded_train : array_like
        The unit's spike times (s), on the twins' clock (align them first, e.g. subtract the first spike).
    spike_trains : list of array_like
        The twins' spike times (s), one per row of ``traces`` (drawn as ticks above each trace).
    traces : Traces
    window_s : (start, stop) | None, default: None
    """
    import matplotlib.pyplot as plt

    n = traces.data.shape[0]
    if figure is None:
        figure = plt.figure(figsize=figsize or (9, 1.2 + 1.6 * n))
    else:
        figure.clear()
    axes = figure.subplots(n + 1, 1, sharex=True, gridspec_kw={"height_ratios": [0.6] + [2] * n})
    recorded = np.asarray(recorded_train, dtype=float)
    if window_s is not None:
        recorded = recorded[(recorded >= window_s[0]) & (recorded <= window_s[1])]
    axes[0].eventplot(recorded, colors="k", lineoffsets=0.5, linelengths=0.8)
    axes[0].set_yticks([])
    axes[0].set_ylabel("recorded", rotation=0, ha="right", va="center")
    axes[0].set_title(f"unit {unit_label}: recorded spikes and twins" if unit_label != "" else "recorded and twins")
    for row in range(n):
        ax = axes[row + 1]
        t, keep = _row(traces, row, window_s)
        ax.plot(t[keep], traces.values("V", row)[keep], color="k", lw=0.7)
        train = np.asarray(spike_trains[row], dtype=float)
        if window_s is not None:
            train = train[(train >= window_s[0]) & (train <= window_s[1])]
        ax.plot(train, np.full(train.size, 55.0), "|", color="tab:red", ms=6)
        ax.set_ylabel(f"twin {int(traces.rows[row])}\nV (mV)")
        ax.set_ylim(-90, 65)
    axes[-1].set_xlabel("time (s)")
    return figure


__all__ = ["plot_twin_traces", "plot_twins_with_raster"]
