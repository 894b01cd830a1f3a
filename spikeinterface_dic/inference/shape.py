"""Speed-invariant shape statistics of a spike train, used to flag trains the model cannot produce at any time scale.

Multiplying every ISI by k shifts log ISIs by log k, so statistics of log ISI minus its median do not depend on k.
A train is out of distribution when its statistics are farther from the training trains (k-nearest-neighbour
distance, standardised) than 99 % of the training trains are from each other.
"""

from __future__ import annotations

import numpy as np

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


class ShapeReference:
    """k-nearest-neighbour novelty score against reference shape statistics."""

    def __init__(self, vectors: np.ndarray, n_neighbours: int = 5, quantile: float = 0.99):
        vectors = vectors[np.isfinite(vectors).all(axis=1)]
        self.mean = vectors.mean(axis=0)
        self.std = vectors.std(axis=0) + 1e-6
        self.vectors = (vectors - self.mean) / self.std
        self.n_neighbours = n_neighbours
        self.threshold = float(np.quantile(self._distance(self.vectors, leave_one_out=True), quantile))

    def _distance(self, standardised: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        out = np.empty(len(standardised))
        for start in range(0, len(standardised), 512):
            block = standardised[start : start + 512]
            squared = (block**2).sum(1)[:, None] + (self.vectors**2).sum(1)[None, :] - 2.0 * block @ self.vectors.T
            d = np.sqrt(np.maximum(squared, 0.0))
            d.sort(axis=1)
            k = self.n_neighbours + (1 if leave_one_out else 0)
            out[start : start + 512] = d[:, (1 if leave_one_out else 0) : k].mean(axis=1)
        return out

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
