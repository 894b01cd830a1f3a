"""Distil the posterior flows' summaries into amortised heads, and measure the heads against the sampled flows.

    python benchmarks/summary_head.py fit --model stg [--data training_data/stg_s51] [--n-contexts 20000]
    python benchmarks/summary_head.py evaluate --model stg [--n-trains 2000]

``fit`` (CPU) builds ``--n-contexts`` contexts per flow from simulated training trains (augmented as the flows'
training examples: k from the prior for the joint flow, jitter, deletions, truncations), draws ``--samples``
calibrated samples of each flow per context, fits the heads and writes ``<model>_summary.pt/.json`` next to the
shipped posterior (or in ``--out``). Rerun it whenever the posterior is retrained or recalibrated: a head distilled
from other weights or calibration is refused at load time.

``evaluate`` reads the held-out set ``tests/data/heldout/current_<model>`` (never used in distillation), at k known
(= 1, the known_k flow) and k unknown (drawn from the prior, the joint flow), and prints per parameter: head minus
sampled-flow summaries (median, 16/84 % quantiles, sd) in units of the flow's posterior sd (median absolute and 95th
percentile), next to the same difference between two sampled runs of the flow (seeds 0 and 1: the sampling noise
infer_dics' summaries carried); the 68 % (q16-q84) and 90 % (q05-q95) coverage of the truth by the head's and the
flow's intervals; the MAE of the medians; and the speed of summaries for 2,000 trains (head vs sampling, same run,
given contexts and end to end through infer_dics).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from posterior import HELDOUT, heldout_trains  # noqa: E402

# Simulated trains whose contexts the heads are distilled on (generate-data seeds used nowhere else; the recipe is in
# docs/posterior.md): the repository's training_data folder, which is not committed.
DEFAULT_DATA = {
    model: Path(__file__).resolve().parents[1] / "training_data" / folder
    for model, folder in (("stg", "stg_s51"), ("da", "da_s52"))
}
COMPARED = ("median", "q16", "q84", "sd")


def distillation_examples(model: str, folder, n_contexts: int, seed: int) -> tuple[dict, dict]:
    """Contexts per flow of about ``n_contexts`` augmented training trains (copies of the folder's trains when it
    holds fewer) and the recipe for the card."""
    from spikeinterface_dic.inference.data import load_training_data
    from spikeinterface_dic.inference.posterior import augmented_examples
    from spikeinterface_dic.inference.predict import load_predictor

    data = load_training_data(folder)
    n_trains = len(data["trains"])
    copies = max(1, math.ceil(n_contexts / n_trains))
    rng = np.random.default_rng([seed, 23])
    chosen = np.sort(rng.choice(n_trains, size=min(n_trains, math.ceil(n_contexts / copies)), replace=False))
    subset = {key: value[chosen] for key, value in data.items() if key not in ("trains", "recipe")}
    subset["trains"] = [data["trains"][i] for i in chosen]
    examples = augmented_examples(load_predictor(model), subset, copies, seed)
    recipe = {"data": Path(folder).name, "copies": copies, "n_trains_drawn": int(chosen.size)}
    return examples, recipe


def fit(args) -> None:
    import torch

    from spikeinterface_dic.inference.posterior import load_posterior
    from spikeinterface_dic.inference.predict import WEIGHTS_DIR
    from spikeinterface_dic.inference.summary_head import fit_summary_head

    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    examples, recipe = distillation_examples(
        args.model, args.data or DEFAULT_DATA[args.model], args.n_contexts, args.seed
    )
    recipe["context_seconds"] = time.perf_counter() - started
    print(f"{len(examples['groups'])} contexts per flow in {recipe['context_seconds']:.0f} s", flush=True)
    card = fit_summary_head(
        load_posterior(args.model, args.weights_dir),
        examples,
        args.out or args.weights_dir or WEIGHTS_DIR,
        args.model,
        samples=args.samples,
        seed=args.seed,
        time_budget_s=args.time_budget_s,
        recipe=recipe,
        epochs=args.epochs,
        patience=args.patience,
    )
    for flow, metric in card["metrics"].items():
        print(
            f"{flow}: targets {metric['target_seconds']:.0f} s, fit {metric['seconds']:.0f} s ({metric['epochs']} "
            f"epochs), validation median |error| (sd units, per parameter x {card['statistics']}): "
            f"{metric['validation_median_abs_error_sd']}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")


def _differences(a: np.ndarray, b: np.ndarray, reference: np.ndarray, names) -> dict:
    """Per parameter and compared statistic: |a - b| / reference sd, median and 95th percentile."""
    from spikeinterface_dic.inference.summary_head import STATISTICS

    out = {}
    for p, name in enumerate(names):
        for statistic in COMPARED:
            s = STATISTICS.index(statistic)
            ratio = np.abs(a[:, p, s] - b[:, p, s]) / reference[:, p, 5]
            out[(name, statistic)] = (float(np.median(ratio)), float(np.quantile(ratio, 0.95)))
    return out


def _coverage(statistics: np.ndarray, truth: np.ndarray, low: int, high: int) -> np.ndarray:
    return ((truth >= statistics[:, :, low]) & (truth <= statistics[:, :, high])).mean(axis=0)


def agreement(model: str, n_trains: int, seed: int, weights_dir=None) -> pd.DataFrame:
    """Head vs sampled flow on held-out trains, per setting and parameter (see module docstring)."""
    from spikeinterface_dic.inference.posterior import SUMMARY_SAMPLES, load_posterior, train_context
    from spikeinterface_dic.inference.predict import load_predictor
    from spikeinterface_dic.inference.summary_head import load_summary_head, sampled_statistics

    held = heldout_trains(model, n_trains, seed, HELDOUT / f"current_{model}")
    predictor = load_predictor(model, weights_dir)
    posterior = load_posterior(model, weights_dir)
    head = load_summary_head(model, weights_dir, posterior)
    if head is None:
        raise RuntimeError(f"no valid summary head for {model}: run `python benchmarks/summary_head.py fit`")
    rows = []
    for setting, flow in (("k known (= 1)", "known_k"), ("k unknown", "joint")):
        factors = np.ones(len(held["trains"])) if flow == "known_k" else np.exp(held["truth"][:, 2])
        context = train_context(predictor, [t * f for t, f in zip(held["trains"], factors, strict=True)])
        names = ("g_s", "g_u", "log_k")[: 3 if flow == "joint" else 2]
        truth = held["truth"][:, : len(names)]
        predicted = head.statistics(context, flow)
        sampled = sampled_statistics(posterior.sample(context, SUMMARY_SAMPLES, flow, seed=0))
        resampled = sampled_statistics(posterior.sample(context, SUMMARY_SAMPLES, flow, seed=1))
        for p, name in enumerate(names):
            rows.append(_row(setting, name, p, predicted, sampled, resampled, truth, np.ones(len(truth), bool)))
        if flow == "joint":  # ln k off the prior's point mass k = 1 (where its calibration is defined)
            continuous = truth[:, 2] != 0.0
            rows.append(_row(setting, "log_k (k != 1)", 2, predicted, sampled, resampled, truth, continuous))
    return pd.DataFrame(rows)


def _row(setting, name, p, predicted, sampled, resampled, truth, chosen) -> dict:
    predicted, sampled, resampled, truth = predicted[chosen], sampled[chosen], resampled[chosen], truth[chosen]
    names = [None] * predicted.shape[1]
    names[p] = name
    head_vs_flow = _differences(predicted, sampled, sampled, names)
    flow_vs_flow = _differences(resampled, sampled, sampled, names)
    row = {"setting": setting, "parameter": name, "n": len(truth)}
    for statistic in COMPARED:
        h, f = head_vs_flow[(name, statistic)], flow_vs_flow[(name, statistic)]
        row[f"{statistic}_med"], row[f"{statistic}_p95"] = h
        row[f"{statistic}_med_resample"], row[f"{statistic}_p95_resample"] = f
    for source, values in (("head", predicted), ("flow", sampled)):
        row[f"cover68_{source}"] = float(_coverage(values, truth, 1, 3)[p])
        row[f"cover90_{source}"] = float(_coverage(values, truth, 0, 4)[p])
    row["mae_head"] = float(np.mean(np.abs(predicted[:, p, 2] - truth[:, p])))
    row["mae_flow"] = float(np.mean(np.abs(sampled[:, p, 2] - truth[:, p])))
    return row


def speed(model: str, n_trains: int, seed: int, weights_dir=None) -> dict:
    """Trains per second of summaries for ``n_trains`` held-out trains at unknown k, head vs sampling, in one run:
    from contexts (the flow's own step) and end to end (infer_dics)."""
    import spikeinterface_dic as sdic
    from spikeinterface_dic.inference import summary_head
    from spikeinterface_dic.inference.posterior import SUMMARY_SAMPLES, load_posterior, summarise, train_context
    from spikeinterface_dic.inference.predict import load_predictor

    held = heldout_trains(model, n_trains, seed, HELDOUT / f"current_{model}")
    trains = (held["trains"] * math.ceil(n_trains / len(held["trains"])))[:n_trains]
    factors = np.exp(np.resize(held["truth"][:, 2], n_trains))
    trains = [t * f for t, f in zip(trains, factors, strict=True)]
    predictor, posterior = load_predictor(model, weights_dir), load_posterior(model, weights_dir)
    head = summary_head.load_summary_head(model, weights_dir, posterior)
    started = time.perf_counter()
    context = train_context(predictor, trains)
    out = {"n_trains": n_trains, "context": n_trains / (time.perf_counter() - started)}
    started = time.perf_counter()
    head.statistics(context, "joint")
    out["head_from_context"] = n_trains / (time.perf_counter() - started)
    started = time.perf_counter()
    summarise(posterior.sample(context, SUMMARY_SAMPLES, "joint", seed=0))
    out["sampling_from_context"] = n_trains / (time.perf_counter() - started)
    units = dict(enumerate(trains))
    for name, enabled in (("infer_dics_head", True), ("infer_dics_sampling", False)):
        summary_head.ENABLED = enabled
        started = time.perf_counter()
        sdic.infer_dics(units, model=model, weights_dir=weights_dir)
        out[name] = n_trains / (time.perf_counter() - started)
    summary_head.ENABLED = True
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fitting = commands.add_parser("fit")
    fitting.add_argument("--model", required=True, choices=("stg", "da"))
    fitting.add_argument("--data", default=None, help="folder written by generate-data (training trains)")
    fitting.add_argument("--n-contexts", type=int, default=20000)
    fitting.add_argument("--samples", type=int, default=200, help="calibrated flow samples per context")
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument("--time-budget-s", type=float, default=600.0, help="per head's gradient steps")
    fitting.add_argument("--epochs", type=int, default=300, help="per head (the time budget may stop it first)")
    fitting.add_argument("--patience", type=int, default=20, help="epochs without a better validation loss")
    fitting.add_argument("--weights-dir", default=None, help="posterior to distil (default: the shipped one)")
    fitting.add_argument("--out", default=None, help="default: next to the posterior weights")
    # 1: the flow's inverse is many small passes; on a shared 2-core machine 2 torch threads made each call ~6 s
    # slower (oversubscribed threads spinning), 20x the cost of the sampling itself.
    fitting.add_argument("--torch-threads", type=int, default=1)
    evaluation = commands.add_parser("evaluate")
    evaluation.add_argument("--model", required=True, choices=("stg", "da"))
    evaluation.add_argument("--n-trains", type=int, default=2000)
    evaluation.add_argument("--speed-trains", type=int, default=2000)
    evaluation.add_argument("--seed", type=int, default=0)
    evaluation.add_argument("--weights-dir", default=None)
    evaluation.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    if args.command == "fit":
        fit(args)
        return
    import torch

    torch.set_num_threads(args.torch_threads)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    table = agreement(args.model, args.n_trains, args.seed, args.weights_dir)
    print(table.round(3).to_string(index=False))
    rates = speed(args.model, args.speed_trains, args.seed, args.weights_dir)
    print(
        "trains/s (k unknown, {n_trains} trains): context {context:.0f}; from contexts head {head_from_context:.0f} vs "
        "sampling {sampling_from_context:.0f}; infer_dics with head {infer_dics_head:.0f} vs sampling "
        "{infer_dics_sampling:.0f}".format(**rates)
    )
    print(
        f"ratios: from contexts {rates['head_from_context'] / rates['sampling_from_context']:.0f}x, infer_dics "
        f"{rates['infer_dics_head'] / rates['infer_dics_sampling']:.1f}x"
    )


if __name__ == "__main__":
    main()
