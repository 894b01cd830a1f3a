"""DIC estimates in sliding windows: drift, neuromodulation or state changes over a recording."""

from __future__ import annotations

import numpy as np
import pandas as pd

TIME_COURSE_COLUMNS = (
    "unit_id",
    "window_index",
    "t_start_s",
    "t_stop_s",
    "t_center_s",
    "g_s",
    "g_s_std",
    "g_u",
    "g_u_std",
    "time_scale",
    "time_scale_low",
    "time_scale_high",
    "log_time_scale",
    "log_time_scale_std",
    "label",
    "in_distribution",
    "ood_reason",
    "n_spikes",
)


def window_starts(t_start_s: float, t_stop_s: float, window_s: float, step_s: float) -> np.ndarray:
    """Starts of the full windows [start, start + window_s) that fit in [t_start_s, t_stop_s]."""
    if not (window_s > 0 and step_s > 0):
        raise ValueError(f"window_s and step_s must be > 0 (s); got {window_s}, {step_s}")
    count = int(np.floor((t_stop_s - t_start_s - window_s) / step_s + 1e-9)) + 1
    if count < 1:
        raise ValueError(
            f"the span [{t_start_s:.3g}, {t_stop_s:.3g}] s is shorter than one window of {window_s} s; shorten "
            "window_s or give a longer recording"
        )
    return t_start_s + step_s * np.arange(count)


def dics_over_time(
    spike_trains,
    window_s: float,
    step_s: float | None = None,
    model="stg",
    t_start_s: float | None = None,
    t_stop_s: float | None = None,
    device: str = "cpu",
    refractory_ms: float = 1.0,
) -> pd.DataFrame:
    """Windowed DIC estimates of every unit (one batched :func:`spikeinterface_dic.infer_dics` call).

    Windows [t, t + window_s) start every ``step_s`` from ``t_start_s``; only full windows are used. Each window's
    estimate uses only the ISIs inside it, so consecutive estimates are independent when ``step_s >= window_s``
    (and correlated when windows overlap). A window needs at least 3 spikes; emptier windows get NaN estimates and
    a reason in ``ood_reason``. Long windows give tighter estimates (more ISIs); a window should hold several
    bursts of a bursting unit (a few seconds for STG-like rhythms).

    Parameters
    ----------
    spike_trains : dict | list of array_like
        Spike times in seconds ({unit_id: times}; a list gets ids 0..n-1).
    window_s : float
        Window length in seconds.
    step_s : float | None, default: None
        Step between window starts in seconds; None uses ``window_s`` (no overlap).
    model : "stg" | "da", default: "stg"
    t_start_s, t_stop_s : float | None, default: None
        Span to cover; None uses the first and last spike over all units.
    device : str, default: "cpu"
    refractory_ms : float, default: 1.0
        See :func:`spikeinterface_dic.infer_dics`.

    Returns
    -------
    pandas.DataFrame
        Long table, one row per (unit, window): unit_id, window_index, t_start_s, t_stop_s, t_center_s, g_s,
        g_s_std, g_u, g_u_std, time_scale, time_scale_low, time_scale_high, log_time_scale, log_time_scale_std,
        label, in_distribution, ood_reason, n_spikes.
    """
    from ..inference.predict import infer_dics

    if not isinstance(spike_trains, dict):
        spike_trains = dict(enumerate(spike_trains))
    trains = {u: np.sort(np.asarray(t, dtype=float).reshape(-1)) for u, t in spike_trains.items()}
    spikes = [t for t in trains.values() if t.size]
    if (t_start_s is None or t_stop_s is None) and not spikes:
        raise ValueError("no unit has any spike: give t_start_s and t_stop_s, or spike trains with spikes")
    t_start_s = float(min(t[0] for t in spikes)) if t_start_s is None else float(t_start_s)
    t_stop_s = float(max(t[-1] for t in spikes)) if t_stop_s is None else float(t_stop_s)
    step_s = float(window_s) if step_s is None else float(step_s)
    starts = window_starts(t_start_s, t_stop_s, float(window_s), step_s)
    pieces, owners = {}, []
    for unit_id, train in trains.items():
        left = np.searchsorted(train, starts, side="left")
        right = np.searchsorted(train, starts + window_s, side="left")
        for index, (i, j) in enumerate(zip(left, right, strict=True)):
            pieces[len(owners)] = train[i:j]
            owners.append((unit_id, index))
    estimates = infer_dics(pieces, model=model, device=device, refractory_ms=refractory_ms)
    frame = estimates.reset_index(drop=True)
    frame.insert(0, "unit_id", [u for u, _ in owners])
    index = np.array([i for _, i in owners], dtype=np.int64)
    frame.insert(1, "window_index", index)
    frame.insert(2, "t_start_s", starts[index])
    frame.insert(3, "t_stop_s", starts[index] + window_s)
    frame.insert(4, "t_center_s", starts[index] + window_s / 2.0)
    k = frame["time_scale"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["log_time_scale"] = np.log(k)
        frame["log_time_scale_std"] = frame["time_scale_std"].to_numpy(float) / k
    return frame[list(TIME_COURSE_COLUMNS)]
