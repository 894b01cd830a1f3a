"""How few spikes (or bursts) can a DIC estimate rest on? Error and coverage of ``infer_dics`` on truncated trains.

Held-out simulated trains with known (g_s, g_u) (tests/data/heldout/test_<model>, seed 1, never seen in training) are
slowed or sped up by a time scale k drawn from the network's training prior (half at k = 1, else log2 k uniform on
``K_LOG2_RANGE``), then cut to their first n spikes for n in N_SPIKES (and the full train). For every n the script
reports the mean absolute error of g_s, g_u and ln k and the fraction of units whose error is within the reported
1 sd ("coverage"), next to the error of the prior: always answering the held-out median of g_s and g_u and k = 1
(the prior's median). Where the estimate's MAE is at least ``NO_BETTER_THAN_PRIOR`` x the prior's, the train
carries no usable information about that quantity: the estimate is no better than not looking at it.

Tonic and bursting trains (labels of the full train) are reported apart; for bursting ones the truncated trains are
also grouped by how many bursts of >= 2 spikes they hold (:func:`spikeinterface_dic.features.burst_structure`, the
count ``infer_dics`` sees), since a burster's information comes in bursts, not spikes.

The thresholds it prints are those written into ``spikeinterface_dic.inference.predict`` (MIN_INFORMATIVE_SPIKES,
MIN_INFORMATIVE_BURSTS) and docs/information_check.md.

    python benchmarks/information_check.py --model stg --n-trains 300

Cost: one ``infer_dics`` call per truncation length on 2 x n-trains trains; about 2 minutes on 2 CPU cores for the
defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from spikeinterface_dic.features import burst_structure, spike_train_features
from spikeinterface_dic.inference.data import load_training_data
from spikeinterface_dic.inference.predict import infer_dics
from spikeinterface_dic.inference.train import K_LOG2_RANGE, K_PRIOR_POINT_MASS

ROOT = Path(__file__).resolve().parents[1]
N_SPIKES = (3, 4, 5, 8, 12, 20, 35, 60)
NO_BETTER_THAN_PRIOR = 0.9  # an estimate whose MAE is >= 90 % of the prior's has learned (almost) nothing
MIN_UNITS = 10  # a row (or burst-count level) with fewer units is noise, not a measurement
BURST_BINS = (-1, 0, 1, 2, 3, 4, 6, 10, np.inf)  # bursting trains grouped by bursts held: (-1, 0], (0, 1], ...
BURST_BIN_NAMES = ("0", "1", "2", "3", "4", "5-6", "7-10", ">10")


def _sample(model: str, n_trains: int, rng) -> dict:
    data = load_training_data(ROOT / "tests" / "data" / "heldout" / f"test_{model}")
    labels = spike_train_features(data["trains"])["label"].to_numpy()
    lengths = np.array([len(train) for train in data["trains"]])
    chosen = {}
    for label in ("spiking", "bursting"):
        candidates = np.flatnonzero((labels == label) & (lengths >= N_SPIKES[0]))
        chosen[label] = rng.choice(candidates, size=min(n_trains, candidates.size), replace=False)
    n_all = sum(index.size for index in chosen.values())
    log2_k = np.where(rng.random(n_all) < K_PRIOR_POINT_MASS, 0.0, rng.uniform(*K_LOG2_RANGE, n_all))
    # The prior that also knows the full train's label: what the firing pattern alone tells about (g_s, g_u).
    label_prior = {
        label: (float(np.median(data["g_s"][labels == label])), float(np.median(data["g_u"][labels == label])))
        for label in chosen
    }
    return {
        "label_prior": label_prior,
        "data": data,
        "chosen": chosen,
        "k": dict(zip(np.concatenate(list(chosen.values())), 2.0**log2_k, strict=True)),
        "prior": (float(np.median(data["g_s"])), float(np.median(data["g_u"]))),
    }


def _errors(trains: list, truth: np.ndarray, k_true: np.ndarray, model: str) -> pd.DataFrame:
    estimates = infer_dics(trains, model)
    out = {}
    for j, name in enumerate(("g_s", "g_u")):
        error = np.abs(estimates[name].to_numpy(float) - truth[:, j])
        out[f"error_{name}"] = error
        out[f"covered_{name}"] = error <= estimates[f"{name}_std"].to_numpy(float)
    log_k = np.log(estimates["time_scale"].to_numpy(float))
    log_k_sd = np.log(estimates["time_scale_high"].to_numpy(float)) - log_k
    out["error_log_k"] = np.abs(log_k - np.log(k_true))
    out["covered_log_k"] = out["error_log_k"] <= log_k_sd
    return pd.DataFrame(out)


def measure(model: str = "stg", n_trains: int = 300, seed: int = 0) -> pd.DataFrame:
    """One row per (label, truncation): spikes, bursts, MAE and coverage of g_s, g_u, ln k, and the prior's MAE."""
    rng = np.random.default_rng(seed)
    sample = _sample(model, n_trains, rng)
    data, prior, label_prior = sample["data"], sample["prior"], sample["label_prior"]
    rows = []
    for label, indices in sample["chosen"].items():
        for n in (*N_SPIKES, None):
            # Units long enough to be cut at n; the prior's error is measured on the same units.
            units = indices if n is None else indices[[len(data["trains"][i]) >= n for i in indices]]
            if units.size < MIN_UNITS:
                continue
            truth = np.stack([data["g_s"][units], data["g_u"][units]], axis=1)
            k_true = np.array([sample["k"][i] for i in units])
            trains = [data["trains"][i][:n] * k for i, k in zip(units, k_true, strict=True)]
            errors = _errors(trains, truth, k_true, model)
            errors["n_bursts"] = [burst_structure(train * 1000.0)[2] for train in trains]
            errors["n_spikes"] = [len(train) for train in trains]
            groups = [("all", np.nan, errors)]
            if label == "bursting":
                bins = pd.cut(errors["n_bursts"], BURST_BINS, labels=False)
                groups += [
                    (f"{BURST_BIN_NAMES[b]} bursts", BURST_BINS[b] + 1, group) for b, group in errors.groupby(bins)
                ]
            for group_name, fewest_bursts, group in groups:
                group_truth, group_k = truth[group.index], k_true[group.index]
                group_prior = {
                    "g_s": float(np.mean(np.abs(group_truth[:, 0] - prior[0]))),
                    "g_u": float(np.mean(np.abs(group_truth[:, 1] - prior[1]))),
                    "log_k": float(np.mean(np.abs(np.log(group_k)))),
                }
                group_label_prior = {
                    "g_s": float(np.mean(np.abs(group_truth[:, 0] - label_prior[label][0]))),
                    "g_u": float(np.mean(np.abs(group_truth[:, 1] - label_prior[label][1]))),
                    "log_k": group_prior["log_k"],
                }
                row = {
                    "label": label,
                    "truncation": "full" if n is None else n,
                    "group": group_name,
                    "fewest_bursts": fewest_bursts,
                    "n_units": len(group),
                    "median_spikes": float(group["n_spikes"].median()),
                    "median_bursts": float(group["n_bursts"].median()),
                }
                for name in ("g_s", "g_u", "log_k"):
                    row[f"mae_{name}"] = float(group[f"error_{name}"].mean())
                    row[f"prior_mae_{name}"] = group_prior[name]
                    row[f"ratio_{name}"] = row[f"mae_{name}"] / group_prior[name] if group_prior[name] else np.nan
                    row[f"label_prior_mae_{name}"] = group_label_prior[name]
                    row[f"label_ratio_{name}"] = (
                        row[f"mae_{name}"] / group_label_prior[name] if group_label_prior[name] else np.nan
                    )
                    row[f"coverage_{name}"] = float(group[f"covered_{name}"].mean())
                rows.append(row)
    return pd.DataFrame(rows)


def thresholds(table: pd.DataFrame) -> dict:
    """Smallest spike count (tonic) and burst count (bursting) from which on the DIC estimate beats the prior.

    "Beat" = the mean over g_s and g_u of MAE / MAE of the label's prior (the held-out median of the trains with
    the same full-train label: what the firing pattern alone tells) is below NO_BETTER_THAN_PRIOR, at that level and
    at every larger one in the table. (Both separately would be too strict: with k unknown a tonic train's rate
    cannot tell g_s from k, so g_s alone may never beat the prior while g_u does.)
    """

    def first_informative(levels, ratios_ok):
        informative = None
        for level, ok in sorted(zip(levels, ratios_ok, strict=True), reverse=True):
            if not ok:
                break
            informative = level
        return informative

    def beats_prior(frame):
        return (frame["label_ratio_g_s"] + frame["label_ratio_g_u"]) / 2 < NO_BETTER_THAN_PRIOR

    tonic = table[(table["label"] == "spiking") & (table["group"] == "all") & (table["truncation"] != "full")]
    bursts = table[(table["label"] == "bursting") & (table["group"] != "all")]
    # Pool each burst-count group over truncations (the same number of bursts, reached at different n).
    pooled = (
        bursts.assign(
            weighted_g_s=bursts["label_ratio_g_s"] * bursts["n_units"],
            weighted_g_u=bursts["label_ratio_g_u"] * bursts["n_units"],
        )
        .groupby("fewest_bursts")[["weighted_g_s", "weighted_g_u", "n_units"]]
        .sum()
    )
    pooled = pooled[pooled["n_units"] >= MIN_UNITS]
    ok = (pooled["weighted_g_s"] + pooled["weighted_g_u"]) / (2 * pooled["n_units"]) < NO_BETTER_THAN_PRIOR
    return {
        "min_spikes_tonic": first_informative(tonic["truncation"].astype(int), beats_prior(tonic)),
        "min_bursts": first_informative(pooled.index.astype(int), ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("stg", "da"), default="stg")
    parser.add_argument("--n-trains", type=int, default=300, help="trains per label (default: 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the table as CSV here")
    args = parser.parse_args()
    table = measure(args.model, args.n_trains, args.seed)
    if args.out:
        table.to_csv(args.out, index=False)
    columns = ["label", "truncation", "group", "n_units", "median_spikes", "median_bursts"] + [
        f"{kind}_{name}" for name in ("g_s", "g_u", "log_k") for kind in ("mae", "ratio", "label_ratio", "coverage")
    ]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 500):
        print(table[columns].round(3).to_string(index=False))
    print(thresholds(table))


if __name__ == "__main__":
    main()
