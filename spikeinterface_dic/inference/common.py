"""Pieces shared by the network's inference (:mod:`.predict`) and the posterior (:mod:`.posterior`): where the
shipped weights live, how a train is cut into windows of ISIs and how window estimates combine, and the validation
of trains and known time scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).parent / "weights"


def isi_windows(isi_ms: np.ndarray, window: int) -> list[np.ndarray]:
    if isi_ms.size <= window:
        return [isi_ms]
    stride = window // 2
    starts = list(range(0, isi_ms.size - window + 1, stride))
    if starts[-1] != isi_ms.size - window:
        starts.append(isi_ms.size - window)
    return [isi_ms[s : s + window] for s in starts]


def combine_windows(means: np.ndarray, stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(means) == 1:
        return means[0], stds[0]
    weights = 1.0 / stds**2
    mean = (weights * means).sum(0) / weights.sum(0)
    # Half-overlapping windows share information: count them as half as many independent ones.
    within = 2.0 / weights.sum(0)
    between = means.var(axis=0)
    return mean, np.sqrt(within + between)


def as_trains(spike_trains) -> tuple[list, list[np.ndarray]]:
    if isinstance(spike_trains, dict):
        ids = list(spike_trains.keys())
        trains = [np.asarray(spike_trains[u], dtype=float) for u in ids]
    else:
        trains = [np.asarray(t, dtype=float) for t in spike_trains]
        ids = list(range(len(trains)))
    for unit_id, train in zip(ids, trains, strict=True):
        if train.ndim != 1:
            raise ValueError(f"unit {unit_id!r}: spike times must be a 1-D array in seconds; got shape {train.shape}")
        if not np.all(np.isfinite(train)):
            raise ValueError(f"unit {unit_id!r}: spike times contain NaN or infinite values")
    return ids, [np.sort(t) for t in trains]


def known_time_scales(time_scale, ids: list) -> np.ndarray:
    """Per-train known k (NaN where unknown) from None, one number, a sequence or a {unit_id: k} dict."""
    if time_scale is None:
        return np.full(len(ids), np.nan)
    if isinstance(time_scale, dict):
        known = np.array([float(time_scale.get(u, np.nan)) for u in ids])
    elif np.ndim(time_scale) == 0:
        known = np.full(len(ids), float(time_scale))
    else:
        known = np.asarray(time_scale, dtype=float)
        if known.shape != (len(ids),):
            raise ValueError(f"time_scale has {known.size} values for {len(ids)} spike trains; give one per train")
    bad = [u for u, k in zip(ids, known, strict=True) if not (np.isnan(k) or (np.isfinite(k) and k > 0))]
    if bad:
        raise ValueError(f"unit {bad[0]!r}: time_scale must be a positive number (or NaN / absent when unknown)")
    return known
