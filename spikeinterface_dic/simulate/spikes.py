"""Spike detection on a sampled voltage trace (the rule of method spec 1.5, with interpolated onsets).

An onset is an upward crossing of ``up_mV`` (+10 mV); it counts only if V later falls below ``down_mV`` (0 mV), so a
final spike that has not repolarised is dropped. Unlike the original, which reports the first sample above +10 mV,
the onset time is interpolated linearly between the two samples around the crossing.
"""

from __future__ import annotations

import numpy as np


def detect_spikes(t_ms, v_mV, up_mV: float = 10.0, down_mV: float = 0.0) -> np.ndarray:
    """Spike onset times (ms, same origin as ``t_ms``) in a sampled trace."""
    t = np.asarray(t_ms, dtype=float)
    v = np.asarray(v_mV, dtype=float)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"t_ms and v_mV must be 1-D arrays of the same length; got {t.shape} and {v.shape}")
    up = np.flatnonzero((v[:-1] <= up_mV) & (v[1:] > up_mV))
    down = np.flatnonzero((v[:-1] >= down_mV) & (v[1:] < down_mV))
    if up.size == 0 or down.size == 0:
        return np.empty(0)
    up = up[up < down[-1]]
    fraction = (up_mV - v[up]) / (v[up + 1] - v[up])
    return t[up] + fraction * (t[up + 1] - t[up])
