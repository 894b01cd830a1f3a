"""Ragged data as flat values + int64 offsets, so every analyzer backend stores plain ndarrays (no pickle).

Row ``i`` of a ragged array is ``values[offsets[i]:offsets[i + 1]]``; ``offsets`` has one more entry than rows.
"""

from __future__ import annotations

import numpy as np


def offsets_from_lengths(lengths) -> np.ndarray:
    """Offsets (n + 1,) int64 of rows with the given lengths."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def row_positions(offsets, rows) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``values`` of the chosen rows, in that order, and the offsets of the result."""
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    new_offsets = offsets_from_lengths(lengths)
    positions = np.arange(new_offsets[-1], dtype=np.int64) + np.repeat(starts - new_offsets[:-1], lengths)
    return positions, new_offsets


def take_rows(values, offsets, rows) -> tuple[np.ndarray, np.ndarray]:
    """The chosen rows of a ragged array, as a new (values, offsets) pair."""
    positions, new_offsets = row_positions(offsets, rows)
    return np.asarray(values)[positions], new_offsets


def concatenate_rows(parts) -> tuple[np.ndarray, np.ndarray]:
    """Join ragged arrays given as (values, offsets) pairs, rows of the first part first."""
    parts = list(parts)
    values = np.concatenate([np.asarray(v) for v, _ in parts])
    lengths = np.concatenate([np.diff(np.asarray(o, dtype=np.int64)) for _, o in parts])
    return values, offsets_from_lengths(lengths)


def pack_rows(rows, dtype=np.float64, row_shape=()) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list of arrays (``row_shape`` is the trailing shape of each element)."""
    rows = [np.asarray(row, dtype=dtype).reshape((-1, *row_shape)) for row in rows]
    values = np.concatenate(rows) if rows else np.empty((0, *row_shape), dtype=dtype)
    return values, offsets_from_lengths([len(row) for row in rows])


def unpack_rows(values, offsets, rows=None) -> list[np.ndarray]:
    """List of the rows (all of them, or those listed in ``rows``) as separate arrays."""
    values = np.asarray(values)
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = range(offsets.size - 1) if rows is None else rows
    return [values[offsets[i] : offsets[i + 1]].copy() for i in rows]
