"""Speed-invariant shape statistics of a spike train: out-of-distribution flags and a library estimate of k.

Multiplying every ISI by k shifts log ISIs by log k, so statistics of log ISI minus its median do not depend on k.
A train is out of distribution when its statistics are farther from the training trains (k-nearest-neighbour
distance, standardised) than 99 % of the training trains are from each other.

Speed-invariant statistics also give a second estimate of k for bursting trains (:class:`TimeScaleLibrary`): the
model trains whose shape is closest to the recorded one, all simulated at k = 1, tell how fast a neuron of that shape
runs; the recorded train's log mean ISI minus theirs is log k. The spread of that difference over the neighbours
is the estimate's uncertainty: it is the speed spread of degenerate neurons that share a firing shape, the limit of
what a train can tell about k. Cost: one k-d tree query per train (O(log n) for n library trains).

The statistics of many trains are computed together (:func:`shape_statistics_batch`,
:func:`library_statistics_batch`): trains with the same number of positive ISIs form one 2-D array and numpy's
reductions run along its rows, which performs the same floating-point operations in the same order as the one-train
functions (equal results, bit for bit), at one set of numpy calls per distinct train length instead of per train.
"""

from __future__ import annotations

import numpy as np

LIBRARY_NEIGHBOURS = 20
# The library's log k sd never goes below this (neighbours at identical speeds would otherwise claim certainty).
LIBRARY_MIN_LOG_STD = 0.02

SHAPE_NAMES = ("q05", "q25", "q75", "q95", "cv", "short_fraction", "long_fraction", "lag1")


def shape_statistics(train_s) -> np.ndarray:
    """8 shape statistics of one train (NaN row for fewer than 4 spikes)."""
    train = np.asarray(train_s, dtype=float)
    isi = np.diff(train)
    isi = isi[isi > 0]
    if isi.size < 3:
        return np.full(len(SHAPE_NAMES), np.nan)
    log_isi = np.log(isi)
    relative = log_isi - np.median(log_isi)
    q05, q25, q75, q95 = np.quantile(relative, [0.05, 0.25, 0.75, 0.95])
    cv = isi.std() / isi.mean()
    short_fraction = np.mean(relative < np.log(0.5))
    long_fraction = np.mean(relative > np.log(2.0))
    centred = log_isi - log_isi.mean()
    denominator = float(np.sum(centred**2))
    lag1 = float(np.sum(centred[1:] * centred[:-1]) / denominator) if denominator > 0 else 1.0
    return np.array([q05, q25, q75, q95, cv, short_fraction, long_fraction, lag1])


def _positive_isi_groups(trains_s) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    """The number of trains and, per number c >= 3 of positive ISIs, (train rows, (rows, c) array of their positive
    ISIs in s, in spike order): ISIs of the same trains and order as ``isi[isi > 0]`` of each train."""
    trains = [np.asarray(train, dtype=float) for train in trains_s]
    lengths = np.array([train.size for train in trains], dtype=np.int64)
    if not trains or lengths.sum() == 0:
        return len(trains), []
    train_of_spike = np.repeat(np.arange(len(trains)), lengths)
    isi = np.diff(np.concatenate(trains))
    keep = (train_of_spike[1:] == train_of_spike[:-1]) & (isi > 0)
    isi, isi_train = isi[keep], train_of_spike[1:][keep]
    counts = np.bincount(isi_train, minlength=len(trains))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    groups = []
    for count in np.unique(counts[counts >= 3]):
        rows = np.flatnonzero(counts == count)
        groups.append((rows, isi[starts[rows, None] + np.arange(count)]))
    return len(trains), groups


def shape_statistics_batch(trains_s) -> np.ndarray:
    """(n, 8) :func:`shape_statistics` of n trains (spike times in s; NaN rows for fewer than 3 positive ISIs),
    equal to the one-train function's, computed per group of trains of equal length."""
    n_trains, groups = _positive_isi_groups(trains_s)
    out = np.full((n_trains, len(SHAPE_NAMES)), np.nan)
    for rows, isi in groups:
        log_isi = np.log(isi)
        relative = log_isi - np.median(log_isi, axis=1)[:, None]
        out[rows, :4] = np.quantile(relative, [0.05, 0.25, 0.75, 0.95], axis=1).T
        out[rows, 4] = isi.std(axis=1) / isi.mean(axis=1)
        out[rows, 5] = np.mean(relative < np.log(0.5), axis=1)
        out[rows, 6] = np.mean(relative > np.log(2.0), axis=1)
        centred = log_isi - log_isi.mean(axis=1)[:, None]
        denominator = np.sum(centred**2, axis=1)
        numerator = np.sum(centred[:, 1:] * centred[:, :-1], axis=1)
        positive = denominator > 0
        out[rows, 7] = np.where(positive, numerator / np.where(positive, denominator, 1.0), 1.0)
    return out


class ShapeReference:
    """k-nearest-neighbour novelty score against reference shape statistics."""

    def __init__(self, vectors: np.ndarray, n_neighbours: int = 5, quantile: float = 0.99):
        vectors = vectors[np.isfinite(vectors).all(axis=1)]
        self.mean = vectors.mean(axis=0)
        self.std = vectors.std(axis=0) + 1e-6
        self.vectors = (vectors - self.mean) / self.std
        self.n_neighbours = n_neighbours
        self._tree = None
        self.threshold = float(np.quantile(self._distance(self.vectors, leave_one_out=True), quantile))

    def _distance(self, standardised: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        """Mean distance to the n_neighbours nearest reference rows (itself left out with ``leave_one_out``).
        Cost: a k-d tree query per row, O(log n_reference) for these 8 dimensions (a brute-force scan of the 3,123
        STG rows took ~3x as long for 2,000 trains)."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.vectors)
        skip = 1 if leave_one_out else 0
        # k as a list: the distances come back (n, k) even for one neighbour
        distances, _ = self._tree.query(standardised, k=list(range(1, self.n_neighbours + skip + 1)))
        return distances[:, skip:].mean(axis=1)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Novelty distance of each row (NaN rows give NaN)."""
        vectors = np.atleast_2d(vectors)
        out = np.full(len(vectors), np.nan)
        finite = np.isfinite(vectors).all(axis=1)
        if finite.any():
            out[finite] = self._distance((vectors[finite] - self.mean) / self.std)
        return out

    def to_arrays(self) -> dict:
        return {"shape_reference": self.vectors * self.std + self.mean}


LIBRARY_NAMES = ("q75", "q90", "q95", "max", "short_fraction", "long_fraction")


def library_statistics(train_s) -> tuple[np.ndarray, float]:
    """Shape statistics of the time-scale library and the speed coordinate, for one train.

    Speed is log mean ISI (seconds), which a time scale k shifts by log k. Shape is six statistics of log(ISI / mean
    ISI): its upper quantiles (inter-burst intervals and the longest intra-burst ones) and the fractions of ISIs
    below half and above twice the mean (spikes per burst and duty cycle). The short intra-burst ISIs themselves are
    left out on purpose: a few ms of spike-time jitter changes them, while the mean ISI and the long ISIs barely
    move, so the estimate stays usable on jittery recordings.
    """
    isi = np.diff(np.asarray(train_s, dtype=float))
    isi = isi[isi > 0]
    if isi.size < 3:
        return np.full(len(LIBRARY_NAMES), np.nan), np.nan
    mean = isi.mean()
    relative = np.log(isi / mean)
    quantiles = np.quantile(relative, [0.75, 0.9, 0.95, 1.0])
    fractions = [np.mean(relative < np.log(0.5)), np.mean(relative > np.log(2.0))]
    return np.concatenate([quantiles, fractions]), float(np.log(mean))


def library_statistics_batch(trains_s) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6) shapes and (n,) speeds of :func:`library_statistics` for n trains (NaN for fewer than 3 positive
    ISIs), equal to the one-train function's, computed per group of trains of equal length."""
    n_trains, groups = _positive_isi_groups(trains_s)
    shapes = np.full((n_trains, len(LIBRARY_NAMES)), np.nan)
    speeds = np.full(n_trains, np.nan)
    for rows, isi in groups:
        mean = isi.mean(axis=1)
        relative = np.log(isi / mean[:, None])
        shapes[rows, :4] = np.quantile(relative, [0.75, 0.9, 0.95, 1.0], axis=1).T
        shapes[rows, 4] = np.mean(relative < np.log(0.5), axis=1)
        shapes[rows, 5] = np.mean(relative > np.log(2.0), axis=1)
        speeds[rows] = np.log(mean)
    return shapes, speeds


class TimeScaleLibrary:
    """Nearest-neighbour estimate of log k from shape statistics and speed, against model trains simulated at k = 1.

    Parameters
    ----------
    shapes : (n, 6) array
        :func:`library_statistics` shapes of the library trains (model trains at k = 1).
    log_speeds : (n,) array
        Their speed coordinates (log mean ISI, seconds).
    """

    def __init__(self, shapes: np.ndarray, log_speeds: np.ndarray, n_neighbours: int = LIBRARY_NEIGHBOURS):
        from scipy.spatial import cKDTree

        keep = np.isfinite(shapes).all(axis=1) & np.isfinite(log_speeds)
        if keep.sum() < n_neighbours:
            raise ValueError(f"a time-scale library needs at least {n_neighbours} finite trains; got {keep.sum()}")
        self.shapes = np.asarray(shapes[keep], dtype=float)
        self.log_speeds = np.asarray(log_speeds[keep], dtype=float)
        self.mean = self.shapes.mean(axis=0)
        self.std = self.shapes.std(axis=0) + 1e-6
        self.n_neighbours = n_neighbours
        self._tree = cKDTree((self.shapes - self.mean) / self.std)

    def estimate(self, shapes: np.ndarray, log_speeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log k and its standard deviation per row (NaN where the row's statistics are not finite)."""
        shapes = np.atleast_2d(shapes)
        log_speeds = np.atleast_1d(np.asarray(log_speeds, dtype=float))
        log_k = np.full(len(shapes), np.nan)
        log_k_std = np.full(len(shapes), np.nan)
        finite = np.isfinite(shapes).all(axis=1) & np.isfinite(log_speeds)
        if finite.any():
            _, index = self._tree.query((shapes[finite] - self.mean) / self.std, self.n_neighbours)
            candidates = log_speeds[finite, None] - self.log_speeds[index]
            centre = np.median(candidates, axis=1)
            # 1.4826 x median absolute deviation: a robust sd (neighbours can include the odd chaotic member).
            spread = 1.4826 * np.median(np.abs(candidates - centre[:, None]), axis=1)
            log_k[finite] = centre
            log_k_std[finite] = np.maximum(spread, LIBRARY_MIN_LOG_STD)
        return log_k, log_k_std

    def to_arrays(self) -> dict:
        return {
            "library_shapes": self.shapes.astype(np.float32),
            "library_log_speeds": self.log_speeds.astype(np.float32),
        }
