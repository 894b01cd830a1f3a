"""Pieces shared by the network's inference (:mod:`.predict`) and the posterior (:mod:`.posterior`): where the
shipped weights live, how a train is cut into windows of ISIs and how window estimates combine, and the validation
of trains and known time scales."""

from __future__ import annotations

import threading
from contextlib import contextmanager
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


def _sums_by_owner(values: np.ndarray, first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums over each owner's rows values[first:first + count], added row by row in order as numpy's sum over
    axis 0 of a 2-D array does (so the results equal it bit for bit); one numpy call per window position."""
    out = values[first].copy()
    for position in range(1, int(counts.max(initial=0))):
        alive = counts > position
        out[alive] += values[first[alive] + position]
    return out


def combine_windows_by_owner(
    means: np.ndarray, stds: np.ndarray, owner: np.ndarray, n_owners: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`combine_windows` for every owner at once: (n_owners, p) means and sds, equal to the one-owner
    function's, and the number of windows of each owner (NaN rows where it has none).

    ``owner`` (one entry per window row) must be non-decreasing, as windows are cut train by train.
    """
    owner = np.asarray(owner, dtype=np.int64)
    if owner.size and np.any(owner[1:] < owner[:-1]):
        raise ValueError("window owners must be non-decreasing (windows grouped train by train)")
    n_windows = np.bincount(owner, minlength=n_owners)[:n_owners]
    first = np.concatenate(([0], np.cumsum(n_windows)[:-1])).astype(np.int64)
    width = means.shape[1] if means.ndim == 2 else 0
    mean = np.full((n_owners, width), np.nan)
    std = np.full((n_owners, width), np.nan)
    single = np.flatnonzero(n_windows == 1)
    mean[single], std[single] = means[first[single]], stds[first[single]]
    several = np.flatnonzero(n_windows > 1)
    if several.size:
        start, count = first[several], n_windows[several]
        weights = 1.0 / stds**2
        weight_sum = _sums_by_owner(weights, start, count)
        mean[several] = _sums_by_owner(weights * means, start, count) / weight_sum
        # np.var's steps: the mean, squared deviations, their mean.
        centre = _sums_by_owner(means, start, count) / count[:, None]
        deviation = means[np.repeat(start, count) + _positions(count)] - np.repeat(centre, count, axis=0)
        between = _sums_by_owner(deviation * deviation, np.concatenate(([0], np.cumsum(count)[:-1])), count)
        std[several] = np.sqrt(2.0 / weight_sum + between / count[:, None])
    return mean, std, n_windows


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n_owners: int) -> np.ndarray:
    """(n_owners,) mean of each owner's values (NaN where it has none), equal to ``values[owner == i].mean()``: the
    owners with the same number of rows are averaged together along the rows of one 2-D array, which numpy sums
    like a 1-D array. ``owner`` must be non-decreasing."""
    owner = np.asarray(owner, dtype=np.int64)
    counts = np.bincount(owner, minlength=n_owners)[:n_owners]
    first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    out = np.full(n_owners, np.nan)
    for count in np.unique(counts[counts > 0]):
        owners = np.flatnonzero(counts == count)
        out[owners] = values[first[owners, None] + np.arange(count)].mean(axis=1)
    return out


def _positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., count - 1 for each count, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


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


# Torch calls on at most this many rows (network windows' ISI tokens, flow samples) run on one thread: their matrices
# are too small for intra-op parallelism to pay. Larger calls use torch's threads: on a quiet 2-core machine 1,000
# samples of one unit took 11.8 ms on two threads against 16 ms on one (before the shared first pass). On a machine
# whose cores are all busy with other work, torch's waiting threads can make such calls 20-40x slower: set
# torch.set_num_threads(1) (or OMP_NUM_THREADS=1) there.
SINGLE_THREAD_ROWS = 512


# Nesting depth of single-thread sections (across Python threads) and the thread count they restore: torch's
# setting is process-wide, so concurrent callers share one section and the last one out restores the count.
_single_thread_lock = threading.Lock()
_single_thread_depth = 0
_restored_threads = 1


@contextmanager
def threads_for(rows: int):
    """Context: torch on one thread for a call of at most SINGLE_THREAD_ROWS rows (the setting is restored, also when
    several Python threads run inference at once)."""
    import torch

    global _single_thread_depth, _restored_threads
    if rows > SINGLE_THREAD_ROWS:
        yield
        return
    with _single_thread_lock:
        if _single_thread_depth == 0:
            _restored_threads = torch.get_num_threads()
            if _restored_threads > 1:
                torch.set_num_threads(1)
        _single_thread_depth += 1
    try:
        yield
    finally:
        with _single_thread_lock:
            _single_thread_depth -= 1
            if _single_thread_depth == 0 and _restored_threads > 1:
                torch.set_num_threads(_restored_threads)
