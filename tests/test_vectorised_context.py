"""The batched per-train work of inference equals the one-train reference functions, and ``infer_dics`` still gives
the numbers of the per-train code path it replaced.

The statistics are computed for trains of equal length as one 2-D array with numpy's operations along the rows,
which are the one-train functions' operations in the same order: equal to the last bit here; 1e-12 relative leaves
room for another CPU's SIMD width. The frozen table (``tests/data/frozen_infer_dics.npz``) was written by this file's
``__main__`` with the per-train code (commit 0fe5f06) and must not be regenerated to make a refactor pass.
Tolerances there as in ``test_frozen_outputs.py``: network outputs are float32 and their last digits depend on the
CPU's torch kernels (rtol 1e-4); labels, counts and which out-of-distribution reasons fire are exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic.features import (
    _burst_structure_rows,
    _missed_spike_cv_rows,
    burst_structure,
    missed_spike_cv,
)
from spikeinterface_dic.inference.common import combine_windows, combine_windows_by_owner, mean_by_owner
from spikeinterface_dic.inference.data import load_training_data
from spikeinterface_dic.inference.predict import load_predictor
from spikeinterface_dic.inference.shape import (
    library_statistics,
    library_statistics_batch,
    shape_statistics,
    shape_statistics_batch,
)

DATA = Path(__file__).parent / "data"
SNAPSHOT = DATA / "frozen_infer_dics.npz"
FROZEN_NUMBERS = ("g_s", "g_u", "g_s_std", "g_u_std", "time_scale", "time_scale_std", "novelty", "p_bursting")


def edge_trains() -> list[np.ndarray]:
    """Trains at the edges of the statistics: empty, 1-4 spikes, duplicated times, zero ISIs, very long."""
    rng = np.random.default_rng(5)
    long_burster = np.concatenate([0.004 * np.arange(6) + 0.25 * k for k in range(4000)])
    return [
        np.zeros(0),
        np.array([0.3]),
        np.array([0.1, 0.2]),
        np.array([0.1, 0.25, 0.3]),
        np.array([0.1, 0.25, 0.3, 0.9]),
        np.array([0.1, 0.1, 0.2, 0.3, 0.4]),  # a duplicated spike: 3 positive ISIs
        np.array([0.1, 0.1, 0.1, 0.2, 0.2]),  # only 1 positive ISI
        np.array([0.5, 0.5, 0.5, 0.5]),  # no positive ISI
        np.repeat(np.cumsum(rng.exponential(0.1, 40)), 2),  # every spike twice
        0.1 * np.arange(30),  # regular: log ISIs equal up to rounding
        np.cumsum(rng.exponential(0.05, 20_000)),  # very long Poisson train
        long_burster,
    ]


@pytest.fixture(scope="module")
def heldout_trains() -> list[np.ndarray]:
    trains = []
    for name in ("current_stg", "current_da"):
        trains += load_training_data(DATA / "heldout" / name)["trains"]
    return trains + edge_trains()


def test_shape_statistics_batch_equals_one_train_function(heldout_trains):
    batch = shape_statistics_batch(heldout_trains)
    reference = np.array([shape_statistics(t) for t in heldout_trains])
    assert batch.shape == (len(heldout_trains), 8)
    np.testing.assert_allclose(batch, reference, rtol=1e-12, atol=0)  # NaN where the reference is NaN
    assert np.isfinite(batch).all(axis=1).sum() > 0.5 * len(heldout_trains)
    assert shape_statistics_batch([]).shape == (0, 8)


def test_library_statistics_batch_equals_one_train_function(heldout_trains):
    shapes, speeds = library_statistics_batch(heldout_trains)
    reference = [library_statistics(t) for t in heldout_trains]
    np.testing.assert_allclose(shapes, np.array([s for s, _ in reference]), rtol=1e-12, atol=0)
    np.testing.assert_allclose(speeds, np.array([v for _, v in reference]), rtol=1e-12, atol=0)


def test_burst_tests_of_rows_equal_one_train_functions(heldout_trains):
    rng = np.random.default_rng(2)
    trains = [t for t in heldout_trains if t.size >= 3 and t.size < 2000]
    trains += [np.round(np.cumsum(rng.gamma(0.3, 0.3, n)), 3) for n in (3, 4, 12, 60) for _ in range(20)]
    by_length = {}
    for train in trains:
        by_length.setdefault(train.size, []).append(train * 1000.0)
    for times in by_length.values():
        rows = np.diff(np.array(times), axis=1)
        np.testing.assert_allclose(
            _missed_spike_cv_rows(rows), [missed_spike_cv(np.diff(t)) for t in times], rtol=1e-12, atol=0
        )
        separation, gap, n_runs = _burst_structure_rows(rows)
        reference = np.array([burst_structure(t) for t in times])
        np.testing.assert_allclose(separation, reference[:, 0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(gap, reference[:, 1], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(n_runs, reference[:, 2])


def test_windows_combined_by_owner_equal_one_owner_function():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 30, size=200)
    owner = np.repeat(np.arange(200), counts)
    means, stds = rng.normal(size=(owner.size, 3)), rng.lognormal(size=(owner.size, 3))
    values = rng.random(owner.size)
    mean, std, n_windows = combine_windows_by_owner(means, stds, owner, 200)
    average = mean_by_owner(values, owner, 200)
    np.testing.assert_array_equal(n_windows, counts)
    for index in range(200):
        selected = owner == index
        if not selected.any():
            assert np.isnan(mean[index]).all() and np.isnan(std[index]).all() and np.isnan(average[index])
            continue
        expected_mean, expected_std = combine_windows(means[selected], stds[selected])
        np.testing.assert_allclose(mean[index], expected_mean, rtol=1e-12, atol=0)
        np.testing.assert_allclose(std[index], expected_std, rtol=1e-12, atol=0)
        np.testing.assert_allclose(average[index], values[selected].mean(), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        combine_windows_by_owner(means[:3], stds[:3], np.array([1, 0, 1]), 2)


def test_train_context_takes_precomputed_features(heldout_trains):
    from spikeinterface_dic.features import spike_train_features
    from spikeinterface_dic.inference.posterior import network_outputs, train_context

    predictor = load_predictor("stg")
    trains = [t for t in heldout_trains[:300] if t.size >= 4]
    network = network_outputs(predictor, trains)
    computed = train_context(predictor, trains, network)
    given = train_context(predictor, trains, network, features=spike_train_features(trains))
    np.testing.assert_array_equal(given, computed)
    with pytest.raises(ValueError, match="one row per train"):
        train_context(predictor, trains, network, features=spike_train_features(trains[:-1]))


def frozen_inputs() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """(STG trains, their known k (NaN: unknown)), (DA trains, known k): held-out trains cut at several lengths, a
    few with known k, and the edge cases (silent, too short, duplicated times, refractory violations, long)."""
    inputs = []
    for folder, n in (("current_stg", 160), ("current_da", 60)):
        trains = [t for t in load_training_data(DATA / "heldout" / folder)["trains"] if t.size >= 3][:n]
        rng = np.random.default_rng(0)
        cut = []
        for index, train in enumerate(trains):
            length = [train.size, 50, 12, 5][index % 4]
            start = int(rng.integers(0, train.size - min(length, train.size) + 1))
            cut.append(train[start : start + length])
        cut += edge_trains()
        cut.append(np.sort(np.concatenate([cut[0], cut[0] + 0.0003])))  # half the spikes are violations
        known = np.full(len(cut), np.nan)
        known[1:40:7] = [0.5, 2.0, 1.0, 3.0, 0.8, 1.5]
        inputs += [cut, known]
    return tuple(inputs)


def frozen_tables() -> dict:
    stg, stg_k, da, da_k = frozen_inputs()
    out = {}
    for model, trains, known in (("stg", stg, stg_k), ("da", da, da_k)):
        table = sdic.infer_dics(trains, model=model, time_scale=known, posterior=False)
        for column in FROZEN_NUMBERS:
            out[f"{model}_{column}"] = table[column].to_numpy(float)
        for column in ("label", "ood_reason"):
            out[f"{model}_{column}"] = np.array(table[column].astype(str).tolist())
        for column in ("n_spikes", "n_windows", "n_refractory_violations"):
            out[f"{model}_{column}"] = table[column].to_numpy(np.int64)
        out[f"{model}_in_distribution"] = table["in_distribution"].to_numpy(bool)
    return out


def _reasons_without_numbers(reasons: np.ndarray) -> list[str]:
    return [re.sub(r"[-+]?\d[\d.e+-]*", "#", reason) for reason in reasons]


def test_infer_dics_equals_frozen_per_train_path():
    frozen = np.load(SNAPSHOT)
    new = frozen_tables()
    for model in ("stg", "da"):
        for column in FROZEN_NUMBERS:
            np.testing.assert_allclose(
                new[f"{model}_{column}"], frozen[f"{model}_{column}"], rtol=1e-4, atol=1e-6, err_msg=column
            )
        for column in ("label", "n_spikes", "n_windows", "n_refractory_violations", "in_distribution"):
            np.testing.assert_array_equal(new[f"{model}_{column}"], frozen[f"{model}_{column}"], err_msg=column)
        assert _reasons_without_numbers(new[f"{model}_ood_reason"]) == _reasons_without_numbers(
            frozen[f"{model}_ood_reason"]
        )


if __name__ == "__main__":
    np.savez_compressed(SNAPSHOT, **frozen_tables())
    print(f"wrote {SNAPSHOT}")


def test_single_thread_sections_restore_torch_threads_under_concurrency():
    """Tiny torch calls run on one thread; Python threads entering and leaving such sections at once (a user running
    inference from several threads) leave torch's thread count as it was, and nobody restores it mid-section."""
    import threading

    import torch

    from spikeinterface_dic.inference.common import threads_for

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen_inside = []

    def work():
        for _ in range(200):
            with threads_for(10):
                seen_inside.append(torch.get_num_threads())

    try:
        workers = [threading.Thread(target=work) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert set(seen_inside) == {1}
        assert torch.get_num_threads() == 2
        with threads_for(10_000):  # large calls keep torch's threads
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
