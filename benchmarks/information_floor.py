"""How much can a spike train tell about (g_s, g_u)? Information floors on the held-out set, next to the network.

The DIC goal of the inference issue (clean held-out MAE STG <= 2.3 / 1.4) is judged against what the trains carry.
A tonic STG train after the transient is periodic to a CV of ~2e-4: apart from structure far below a millisecond, it
carries one number, its rate. This script estimates, on the held-out trains at k = 1 (tests/data/heldout, seed 1):

- ``rate only``: the conditional median of g_s (g_u) given the rate, from the 100 library trains (k = 1, clean) with
  the nearest rates. It is the smallest MAE any estimator that reads only the rate can reach (up to the
  nearest-neighbour approximation), so fraction_spiking x this is a lower bound on the all-train MAE of such an
  estimator, whatever it does on bursting trains.
- ``rate only, k from prior``: the same when k is unknown and drawn from the network's training prior (1/2 at
  k = 1, else log2 k uniform on [-2.5, 3.5]): the floor for an estimator that, like the network, must also infer k.
- ``shape + rate``: nearest neighbours (30) in the standardised 8 shape statistics plus the rate. On clean
  simulated trains this reads the sub-millisecond ISI structure (lag-1 correlation and skew of ISIs that differ by
  ~0.02 ms); the same estimate after 0.1 ms jitter (the timing resolution of a 30 kHz recording) shows how much of it
  survives.
- ``burst features``: nearest neighbours (30) in log inter-burst and intra-burst frequency, burst duration and
  spikes per burst, for bursting trains.
- ``burst features, k unknown``: the same with the library spread over log2 k uniform on [-2.5, 3.5]: what is left
  when k must be inferred too. The inter-burst period is set by both g_u and k, so g_u suffers most.
- ``network``: ``infer_dics`` (the shipped weights), for comparison.

Library data: model trains from ``spikeinterface-dic generate-data`` (not shipped: 3000 STG targets take ~4 min):

    spikeinterface-dic generate-data --model stg --out data/stg_s5 --n-targets 3000 --chunk-size 100 --seed 5
    python benchmarks/information_floor.py --model stg --library data/stg_s5

Cost: feature extraction O(n spikes) plus k-d tree queries; about a minute for 48,000 library trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.inference.data import load_training_data
from spikeinterface_dic.inference.predict import infer_dics
from spikeinterface_dic.inference.shape import shape_statistics
from spikeinterface_dic.inference.train import K_LOG2_RANGE, K_PRIOR_POINT_MASS

ROOT = Path(__file__).resolve().parents[1]
BURST_COLUMNS = ["f_inter_bursting_hz", "f_intra_bursting_hz", "duration_bursting_ms", "nbr_spikes_bursting"]


def _neighbour_median(library_x, library_y, query_x, n_neighbours):
    keep_library = np.isfinite(library_x).all(axis=1)
    keep_query = np.isfinite(query_x).all(axis=1)
    mean, std = library_x[keep_library].mean(0), library_x[keep_library].std(0) + 1e-12
    tree = cKDTree((library_x[keep_library] - mean) / std)
    _, index = tree.query((query_x[keep_query] - mean) / std, n_neighbours)
    out = np.full((len(query_x), library_y.shape[1]), np.nan)
    out[keep_query] = np.median(library_y[keep_library][index], axis=1)
    return out


def _shape_rate(trains, jitter_s, rng):
    rows = []
    for train in trains:
        t = np.sort(train + rng.normal(0.0, jitter_s, train.size)) if jitter_s else train
        isi = np.diff(t)
        rows.append(np.r_[shape_statistics(t), np.log(isi.mean()) if isi.size else np.nan])
    return np.array(rows)


def floors(model: str, library_folders: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    parts = [load_training_data(folder) for folder in library_folders]
    clean = np.concatenate([p["noise_std"] == 0 for p in parts])
    library_trains = [t for p in parts for t in p["trains"]]
    library_y = np.stack([np.concatenate([p["g_s"] for p in parts]), np.concatenate([p["g_u"] for p in parts])], 1)
    heldout = load_training_data(ROOT / "tests" / "data" / "heldout" / f"test_{model}")
    library_features = spike_train_features(library_trains)
    heldout_features = spike_train_features(heldout["trains"])
    keep = heldout_features["n_spikes"].to_numpy() >= 4
    truth = np.stack([heldout["g_s"], heldout["g_u"]], 1)
    labels = heldout_features["label"].to_numpy()
    library_labels = library_features["label"].to_numpy()
    network = infer_dics([t for t, k in zip(heldout["trains"], keep, strict=True) if k], model)
    network_y = np.full((len(labels), 2), np.nan)
    network_y[keep] = network[["g_s", "g_u"]].to_numpy()

    results = {"n_library_trains": int(clean.sum())}
    for pattern in ("spiking", "bursting"):
        query = keep & (labels == pattern)
        reference = clean & (library_labels == pattern)
        estimates = {"network": network_y[query]}
        if pattern == "spiking":
            rate = lambda f, m: np.log(f.loc[m, ["f_spiking_hz"]].to_numpy(float))  # noqa: E731
            estimates["rate only"] = _neighbour_median(
                rate(library_features, reference), library_y[reference], rate(heldout_features, query), 100
            )
            # The same with k unknown, drawn from the network's training prior (20 draws per library train).
            draws = 20
            log_k = np.where(
                rng.random(draws * int(reference.sum())) < K_PRIOR_POINT_MASS,
                0.0,
                rng.uniform(*K_LOG2_RANGE, draws * int(reference.sum())) * np.log(2.0),
            )
            estimates["rate only, k from prior"] = _neighbour_median(
                np.tile(rate(library_features, reference), (draws, 1)) - log_k[:, None],
                np.tile(library_y[reference], (draws, 1)),
                rate(heldout_features, query),
                100 * draws,
            )
            library_query = [library_trains[i] for i in np.flatnonzero(reference)]
            heldout_query = [heldout["trains"][i] for i in np.flatnonzero(query)]
            for jitter in (0.0, 1e-4):
                estimates[f"shape + rate, jitter {jitter * 1e3:.1f} ms"] = _neighbour_median(
                    _shape_rate(library_query, jitter, rng),
                    library_y[reference],
                    _shape_rate(heldout_query, jitter, rng),
                    30,
                )
        else:

            def bursts(f, m):
                x = f.loc[m, BURST_COLUMNS].to_numpy(float).copy()
                x[:, :3] = np.log(np.maximum(x[:, :3], 1e-3))
                return x

            estimates["burst features"] = _neighbour_median(
                bursts(library_features, reference), library_y[reference], bursts(heldout_features, query), 30
            )
            # k unknown, log2 k uniform on the prior's range: frequencies shift by -log k, durations by +log k.
            draws = 10
            shift = np.array([-1.0, -1.0, 1.0, 0.0])
            log_k = rng.uniform(*K_LOG2_RANGE, draws * int(reference.sum())) * np.log(2.0)
            estimates["burst features, k unknown"] = _neighbour_median(
                np.tile(bursts(library_features, reference), (draws, 1)) + shift * log_k[:, None],
                np.tile(library_y[reference], (draws, 1)),
                bursts(heldout_features, query),
                30,
            )
        results[pattern] = {
            "fraction": float(query.sum() / keep.sum()),
            "n": int(query.sum()),
            **{
                name: [float(np.nanmean(np.abs(value[:, j] - truth[query, j]))) for j in range(2)]
                for name, value in estimates.items()
            },
        }
    spiking = results["spiking"]
    results["all-train MAE lower bound for rate-only tonic estimates"] = [
        spiking["fraction"] * spiking["rate only"][j] for j in range(2)
    ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stg", choices=["stg", "da"])
    parser.add_argument("--library", nargs="+", required=True, help="generate-data folders (k = 1 model trains)")
    args = parser.parse_args()
    results = floors(args.model, args.library)
    print(f"{args.model}: library {results['n_library_trains']} clean trains; MAE g_s / g_u on held-out (k = 1)")
    for pattern in ("spiking", "bursting"):
        block = results[pattern]
        print(f"  {pattern} ({block['n']} trains, fraction {block['fraction']:.3f})")
        for name, value in block.items():
            if isinstance(value, list):
                print(f"    {name:<28s} {value[0]:6.3f} / {value[1]:6.3f}")
    bound = results["all-train MAE lower bound for rate-only tonic estimates"]
    print(f"  all trains, lower bound with rate-only tonic estimates: {bound[0]:.3f} / {bound[1]:.3f}")


if __name__ == "__main__":
    main()
