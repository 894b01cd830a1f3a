"""Held-out evaluation of the shipped networks; prints the metrics and (with --write-card) stores them in the cards.

The held-out sets (tests/data/heldout/test_<model>, seed 1, never seen in training; clean trains, no noise) are
simulated with the validated kernel. Metrics on clean full trains through the public `infer_dics` (no augmentation):
MAE and R2 of g_s and g_u (all / spiking / bursting), 1-sd calibration, and the same under 2 ms jitter plus 5 %
deletions; time-scale recovery for trains multiplied by k in {0.5, 1, 2, 4, 8}, and the DICs of those trains with k
estimated and with k given. The network alone (`posterior=False`); the posterior flows are measured by
benchmarks/posterior.py.

Usage: python benchmarks/evaluate_inference.py [--write-card] [--models stg da]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.inference.data import load_training_data
from spikeinterface_dic.inference.predict import WEIGHTS_DIR, infer_dics, load_predictor

ROOT = Path(__file__).resolve().parents[1]


def _metrics(estimates, truth, labels) -> dict:
    out = {}
    for name, select in (
        ("all", np.ones(len(labels), bool)),
        ("spiking", labels == "spiking"),
        ("bursting", labels == "bursting"),
    ):
        for j, column in enumerate(("g_s", "g_u")):
            predicted = estimates[column].to_numpy()[select]
            std = estimates[f"{column}_std"].to_numpy()[select]
            target = truth[select, j]
            ok = np.isfinite(predicted)
            error = predicted[ok] - target[ok]
            out[f"mae_{column}_{name}"] = float(np.mean(np.abs(error)))
            out[f"r2_{column}_{name}"] = float(1 - np.sum(error**2) / np.sum((target[ok] - target[ok].mean()) ** 2))
            out[f"coverage_1sd_{column}_{name}"] = float(np.mean(np.abs(error) <= std[ok]))
    # The network's own pattern head against the rule-based label of the clean train (spiking vs bursting).
    patterned = (labels == "spiking") | (labels == "bursting")
    p_bursting = estimates["p_bursting"].to_numpy(float)[patterned]
    out["label_accuracy"] = float(np.mean((p_bursting > 0.5) == (labels[patterned] == "bursting")))
    out["n_trains"] = int(len(labels))
    return out


def evaluate(model: str, rng_seed: int = 0) -> dict:
    data = load_training_data(ROOT / "tests" / "data" / "heldout" / f"test_{model}")
    features = spike_train_features(data["trains"])
    keep = features["n_spikes"].to_numpy() >= 4
    trains = [t for t, k in zip(data["trains"], keep, strict=True) if k]
    truth = np.stack([data["g_s"], data["g_u"]], axis=1)[keep]
    labels = features["label"].to_numpy()[keep]
    results = {"clean": _metrics(infer_dics(trains, model, posterior=False), truth, labels)}
    rng = np.random.default_rng(rng_seed)
    perturbed = []
    for t in trains:
        jittered = np.sort(t + rng.normal(0, 0.002, t.size))
        kept = jittered[rng.random(t.size) >= 0.05]
        perturbed.append(kept if kept.size >= 4 else jittered)
    results["jitter_2ms_delete_5pct"] = _metrics(infer_dics(perturbed, model, posterior=False), truth, labels)
    scales = {}
    for k in (0.5, 1.0, 2.0, 4.0, 8.0):
        estimates = infer_dics([t * k for t in trains], model, posterior=False)
        ratio = estimates["time_scale"].to_numpy() / k
        log_error = np.abs(np.log(ratio))
        within_sd = np.abs(np.log(ratio)) <= np.log(
            estimates["time_scale_high"].to_numpy() / estimates["time_scale"].to_numpy()
        )
        scales[str(k)] = {
            "median_relative_error_bursting": float(np.median(np.abs(ratio[labels == "bursting"] - 1))),
            "fraction_within_10pct_bursting": float(np.mean(log_error[labels == "bursting"] < np.log(1.1))),
            "median_relative_error_spiking": float(np.median(np.abs(ratio[labels == "spiking"] - 1))),
            "fraction_within_10pct_spiking": float(np.mean(log_error[labels == "spiking"] < np.log(1.1))),
            "coverage_1sd_log_k": float(np.mean(within_sd)),
            "mae_g_s": float(np.nanmean(np.abs(estimates["g_s"].to_numpy() - truth[:, 0]))),
            "mae_g_u": float(np.nanmean(np.abs(estimates["g_u"].to_numpy() - truth[:, 1]))),
        }
        # The same trains with k given (infer_dics(time_scale=k)): the DICs as if the kinetics were known.
        known = infer_dics([t * k for t in trains], model, time_scale=k, posterior=False)
        for j, column in enumerate(("g_s", "g_u")):
            error = np.abs(known[column].to_numpy() - truth[:, j])
            scales[str(k)][f"mae_{column}_known_k"] = float(np.nanmean(error))
            scales[str(k)][f"coverage_1sd_{column}_known_k"] = float(np.nanmean(error <= known[f"{column}_std"]))
    results["time_scale"] = scales
    # Throughput: 50-spike windows, batched, CPU.
    predictor = load_predictor(model)
    windows = [np.diff(t[:50]) * 1000 for t in trains if t.size >= 50][:1024]
    windows = (windows * (4096 // max(1, len(windows)) + 1))[:4096]
    predictor.predict_windows(windows[:64])
    started = time.perf_counter()
    predictor.predict_windows(windows, batch_size=1024)
    results["cpu_trains_per_s_50_spikes"] = len(windows) / (time.perf_counter() - started)
    load_predictor.cache_clear()
    started = time.perf_counter()
    load_predictor(model)
    results["weights_load_s"] = time.perf_counter() - started
    return results


def evaluate_pipeline(model: str, n_units: int = 100, population_size: int = 16) -> dict:
    """run_pipeline on held-out trains (one per target): fraction of twins reproducing the recorded pattern."""
    from spikeinterface_dic.pipeline import run_pipeline

    data = load_training_data(ROOT / "tests" / "data" / "heldout" / f"test_{model}")
    _, first = np.unique(data["target_index"], return_index=True)
    chosen = [i for i in first if data["trains"][i].size >= 4][:n_units]
    trains = {int(data["target_index"][i]): data["trains"][i] for i in chosen}
    started = time.perf_counter()
    result = run_pipeline(trains, model=model, population_size=population_size, seed=0)
    fidelity = result.fidelity
    labels = result.estimates.loc[fidelity.index, "label"]
    return {
        "n_units": len(trains),
        "population_size": population_size,
        "mean_fraction_matching": float(fidelity["fraction_matching"].mean()),
        "mean_fraction_matching_bursting": float(fidelity["fraction_matching"][labels == "bursting"].mean()),
        "mean_fraction_matching_spiking": float(fidelity["fraction_matching"][labels == "spiking"].mean()),
        "mean_fraction_matching_network_time_scale": float(fidelity["fraction_matching_network_time_scale"].mean()),
        "mean_fraction_matching_before_selection": float(fidelity["fraction_matching_before_selection"].mean()),
        "candidates_per_unit": float(fidelity["n_candidates"].mean()),
        "candidate_acceptance": float(fidelity["candidate_acceptance"].mean()),
        "timings": result.provenance["timings"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["stg", "da"])
    parser.add_argument("--write-card", action="store_true")
    parser.add_argument("--pipeline", action="store_true", help="also run the end-to-end twin check")
    args = parser.parse_args()
    for model in args.models:
        results = evaluate(model)
        if args.pipeline:
            results["pipeline_heldout"] = evaluate_pipeline(model)
        print(model, json.dumps(results, indent=1))
        if args.write_card:
            path = WEIGHTS_DIR / f"{model}.json"
            card = json.loads(path.read_text())
            card["heldout_metrics"] = {k: v for k, v in results.items() if k not in ("weights_load_s",)}
            card["heldout_data"] = "tests/data/heldout/test_" + model + " (seed 1, clean trains, not used in training)"
            path.write_text(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
