"""Train the posterior flows of a model and measure them on held-out trains (accuracy, coverage, SBC).

    python benchmarks/posterior.py fit --model stg --data training_data/stg_s11 --out my_weights --work-dir run1
    python benchmarks/posterior.py evaluate --model stg [--n-trains 1500]

``fit`` is CPU-only and bounded by ``--time-budget-s`` (both flows together); ``evaluate`` reads the held-out set
``tests/data/heldout/test_<model>`` (never used in training), builds each train's context at k = 1 (known, the
``known_k`` flow) and at a k drawn from the prior (unknown, the ``joint`` flow), and prints per class (tonic /
bursting by the train's rule-based label): MAE of the posterior median against the network's estimate (``infer_dics``
with the same knowledge of k), the coverage of the central 50/68/90 % intervals, and the simulation-based
calibration statistic (chi-square of the rank histogram of the truth among the posterior draws, 10 bins: 16.9 is
the 95 % point of chi-square with 9 degrees of freedom). The trains of a held-out set come in populations of 16
members sharing their (g_s, g_u), so they are not independent: ``cover_68_se`` is the cluster-robust standard error
of the 68 % coverage, and ``sbc_chi2_independent`` the statistic on one train per target (the only one whose
chi-square null holds; ``sbc_chi2`` over all trains is inflated by the clustering).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

HELDOUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "heldout"
LEVELS = (0.50, 0.68, 0.90)


def heldout_trains(model: str, n_trains: int, seed: int, folder=None) -> dict:
    from spikeinterface_dic.features import spike_train_features
    from spikeinterface_dic.inference.train import load_folders

    # Several folders pool into one set, each folder's targets numbered apart (load_folders).
    data = load_folders(folder or HELDOUT / f"test_{model}")
    labels = spike_train_features(data["trains"])["label"].to_numpy()
    usable = np.flatnonzero(np.array([t.size >= 8 for t in data["trains"]]) & np.isin(labels, ["spiking", "bursting"]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(usable, size=min(n_trains, usable.size), replace=False))
    # k from the posterior's own prior (the network's: k = 1 with probability 1/2, else log2 k uniform on
    # [-2.5, 3.5]): the calibration checks (coverage, SBC) hold for parameters drawn from the prior it assumes.
    log_k = np.where(rng.random(chosen.size) < 0.5, 0.0, rng.uniform(-2.5, 3.5, chosen.size) * math.log(2.0))
    return {
        "trains": [np.asarray(data["trains"][i]) for i in chosen],
        "truth": np.column_stack([data["g_s"][chosen], data["g_u"][chosen], log_k]),
        "label": labels[chosen],
        "target": data["target_index"][chosen],  # members of a target share (g_s, g_u): not independent trains
    }


def coverage_and_ranks(samples: np.ndarray, truth: np.ndarray) -> dict:
    """Per parameter: coverage of central intervals at LEVELS, the SBC rank of the truth (0..n_samples) and, per
    train, whether the 68 % interval holds it ("inside_68")."""
    inside = {level: _inside_central(samples, truth, level) for level in LEVELS}
    out = {level: covered.mean(axis=0) for level, covered in inside.items()}
    out["inside_68"] = inside[0.68]  # per train: the cluster-robust SE needs it
    out["ranks"] = (samples < truth[:, None, :]).sum(axis=1)
    return out


def _inside_central(samples: np.ndarray, truth: np.ndarray, level: float) -> np.ndarray:
    """(n, p) whether each truth lies in its central ``level`` interval."""
    low = np.quantile(samples, 0.5 - level / 2, axis=1)
    high = np.quantile(samples, 0.5 + level / 2, axis=1)
    return (truth >= low) & (truth <= high)


def randomized_pit(samples: np.ndarray, truth: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per train, the truth's randomized CDF position among its draws (n_trains, n) and its randomized rank (0..n):
    the draws below it plus a uniform share of the draws equal to it. Why: ln k's posterior has an atom at k = 1 (the
    prior's point mass, draws exactly 0), and for a distribution with an atom the central interval's coverage is not
    a calibration test (an interval that ends in the atom holds more than its level) while the randomized position is
    uniform on (0, 1) over the prior for the exact posterior, atoms included. Over every train (k = 1 included), not
    over the trains at k != 1: a subset chosen by the truth is not one over which even the exact posterior covers at
    its level (docs/posterior.md, "Calibration of ln k")."""
    rng = np.random.default_rng([seed, 17])
    below = (samples < truth[:, None]).sum(axis=1)
    equal = (samples == truth[:, None]).sum(axis=1)
    position = (below + rng.random(len(truth)) * equal) / samples.shape[1]
    rank = below + np.floor(rng.random(len(truth)) * (equal + 1)).astype(int)
    return position, rank


def sbc_chi2(ranks: np.ndarray, n_samples: int, bins: int = 10) -> float:
    counts = np.histogram(ranks, bins=bins, range=(0, n_samples + 1))[0]
    expected = len(ranks) / bins
    return float(((counts - expected) ** 2 / expected).sum())


def clustered_se(covered: np.ndarray, clusters: np.ndarray) -> float:
    """Standard error of a coverage (mean of 0/1 ``covered``) whose trains come in clusters sharing their truth (the
    members of a population target): the cluster-robust (sandwich) estimate, sqrt(sum over clusters of (sum of
    residuals)^2) / n. With 16 members per target it is ~2x the binomial one."""
    residual = covered.astype(float) - covered.mean()
    _, inverse = np.unique(clusters, return_inverse=True)
    return float(np.sqrt((np.bincount(inverse, weights=residual) ** 2).sum()) / len(covered))


def first_of_each(clusters: np.ndarray) -> np.ndarray:
    """Indices of the first train of each cluster: independent trains for the SBC statistic (its chi-square null
    assumes independent ranks; members of a target share their truth)."""
    return np.sort(np.unique(clusters, return_index=True)[1])


def degrade(trains: list, seed: int, jitter_ms: float = 2.0, deletion: float = 0.05) -> list:
    """Gaussian spike-time jitter (sd ``jitter_ms``) and random deletion of a fraction of spikes."""
    rng = np.random.default_rng(seed)
    out = []
    for train in trains:
        t = np.sort(train + rng.normal(0.0, jitter_ms / 1000.0, train.size))
        keep = rng.random(t.size) >= deletion
        out.append(t[keep] if keep.sum() >= 8 else t)
    return out


def evaluate(
    model: str,
    n_trains: int,
    seed: int,
    n_samples: int = 400,
    weights_dir=None,
    jitter: bool = False,
    heldout=None,
    crop=None,
    jitter_fraction: float | None = None,
    whole_fraction: float | None = None,
    span_source: str | None = None,
) -> pd.DataFrame:
    """The table of the module docstring. ``jitter`` degrades every train; ``jitter_fraction`` a random fraction of
    them instead. ``crop`` crops every train; with ``whole_fraction`` a random fraction of them stays whole. Mixed so
    (``--jitter-fraction 0.5 --whole-fraction 0.5``) the held-out trains are drawn as the calibration trains are
    (``calibration_examples``): the distribution over which the maps were fitted, where a calibrated posterior must
    cover at its level; the pure protocols are its parts, which a train does not reveal. ``span_source``: what the
    posterior is told of the spans (``draw``; "window" is the truth of these sets: windows times k, cropped or not)."""
    import spikeinterface_dic as sdic
    from spikeinterface_dic.inference.posterior import cropped, load_posterior
    from spikeinterface_dic.inference.predict import load_predictor

    held = heldout_trains(model, n_trains, seed, heldout)
    if jitter or jitter_fraction:  # labels stay those of the clean trains
        rough = degrade(held["trains"], seed)
        chosen = np.random.default_rng([seed, 11]).random(len(rough)) < (1.0 if jitter else jitter_fraction)
        held["trains"] = [r if c else t for t, r, c in zip(held["trains"], rough, chosen, strict=True)]
    if crop:  # recordings of any length: a random sub-window of each train (labels of the whole train)
        rng = np.random.default_rng([seed, 7])
        parts = [cropped(t, rng, tuple(crop), 8) for t in held["trains"]]
        whole = np.random.default_rng([seed, 13]).random(len(parts)) < (whole_fraction or 0.0)
        held["trains"] = [t if w else p for t, p, w in zip(held["trains"], parts, whole, strict=True)]
    predictor = load_predictor(model)
    posterior = load_posterior(model, weights_dir)
    rows = []
    for setting in ("k known (= 1 after dividing)", "k unknown"):
        known = setting.startswith("k known")
        factors = np.ones(len(held["trains"])) if known else np.exp(held["truth"][:, 2])
        scaled = [t * factor for t, factor in zip(held["trains"], factors, strict=True)]
        # The reported posterior, as sample_posterior draws it (calibration, point-mass and rescaling rules).
        started = time.perf_counter()
        samples = draw_in_blocks(
            posterior,
            predictor,
            scaled,
            n_samples,
            factors if known else np.full(len(scaled), np.nan),
            seed,
            span_source=span_source,
        )
        samples = samples[:, :, :2] if known else samples
        draw_s = time.perf_counter() - started
        truth = held["truth"][:, : samples.shape[2]]
        network = sdic.infer_dics(
            dict(enumerate(scaled)), model=model, time_scale=list(factors) if known else None, posterior=False
        )
        median = np.median(samples, axis=1)
        off_one = truth[:, -1] != 0.0  # ln k where the prior is continuous (the calibration's domain)
        # With k unknown, also the trains at k = 1: the original network's figures are on such trains.
        subsets = [(setting, np.ones(len(truth), dtype=bool))]
        if not known:
            subsets.append(("k unknown, trains at k = 1", ~off_one))
        for (subset_name, subset), label in itertools.product(subsets, ("spiking", "bursting")):
            if subset_name != setting:
                chosen = subset & (held["label"] == label)
                stats, targets = coverage_and_ranks(samples[chosen], truth[chosen]), held["target"][chosen]
                rows += [
                    {
                        "setting": subset_name,
                        "class": label,
                        "parameter": name,
                        "n": int(chosen.sum()),
                        "n_targets": len(first_of_each(targets)),
                        "mae_posterior": float(np.mean(np.abs(median[chosen, p] - truth[chosen, p]))),
                        "mae_network": float(
                            np.nanmean(np.abs(network[name].to_numpy(float)[chosen] - truth[chosen, p]))
                        ),
                        **{f"cover_{int(level * 100)}": float(stats[level][p]) for level in LEVELS},
                        "cover_68_se": clustered_se(stats["inside_68"][:, p], targets),
                    }
                    for p, name in enumerate(("g_s", "g_u"))
                ]
                continue
            chosen = held["label"] == label
            stats = coverage_and_ranks(samples[chosen], truth[chosen])
            targets = held["target"][chosen]
            independent = first_of_each(targets)
            if not known:
                continuous = coverage_and_ranks(samples[chosen & off_one], truth[chosen & off_one])
                continuous_targets = held["target"][chosen & off_one]
                continuous_independent = first_of_each(continuous_targets)
            for p, name in enumerate(("g_s", "g_u", "log_k")[: samples.shape[2]]):
                net = network[name].to_numpy(float) if name != "log_k" else np.log(network["time_scale"].to_numpy())
                rows.append(
                    {
                        "setting": setting,
                        "class": label,
                        "parameter": name,
                        "n": int(chosen.sum()),
                        "n_targets": len(independent),
                        "mae_posterior": float(np.nanmean(np.abs(median[chosen, p] - truth[chosen, p]))),
                        "mae_network": float(np.nanmean(np.abs(net[chosen] - truth[chosen, p]))),
                        "n_network": int(np.isfinite(net[chosen]).sum()),
                        **{f"cover_{int(level * 100)}": float(stats[level][p]) for level in LEVELS},
                        "cover_68_se": clustered_se(stats["inside_68"][:, p], targets),
                        "sbc_chi2": sbc_chi2(stats["ranks"][:, p], n_samples),
                        "sbc_chi2_independent": sbc_chi2(stats["ranks"][independent, p], n_samples),
                        "trains_per_s": len(scaled) / draw_s,
                    }
                )
            if not known:
                pit, rank = randomized_pit(samples[chosen, :, 2], truth[chosen, 2], seed)
                rows.append(
                    {
                        "setting": setting,
                        "class": label,
                        "parameter": "log_k (randomized PIT)",
                        "n": int(chosen.sum()),
                        "n_targets": len(independent),
                        **{
                            f"cover_{int(level * 100)}": float(np.mean(np.abs(pit - 0.5) <= level / 2))
                            for level in LEVELS
                        },
                        "cover_68_se": clustered_se(np.abs(pit - 0.5) <= 0.34, targets),
                        "sbc_chi2": sbc_chi2(rank, n_samples),
                        "sbc_chi2_independent": sbc_chi2(rank[independent], n_samples),
                    }
                )
                rows.append(
                    {
                        "setting": setting,
                        "class": label,
                        "parameter": "log_k (k != 1)",
                        "n": int((chosen & off_one).sum()),
                        "n_targets": len(continuous_independent),
                        **{f"cover_{int(level * 100)}": float(continuous[level][2]) for level in LEVELS},
                        "cover_68_se": clustered_se(continuous["inside_68"][:, 2], continuous_targets),
                        "sbc_chi2": sbc_chi2(continuous["ranks"][:, 2], n_samples),
                        "sbc_chi2_independent": sbc_chi2(continuous["ranks"][continuous_independent, 2], n_samples),
                    }
                )
    return pd.DataFrame(rows)


def draw_in_blocks(
    posterior, predictor, trains: list, n_samples: int, time_scales, seed: int, block: int = 1000, span_source=None
):
    """``draw`` over blocks of ``block`` trains. Each train's noise is keyed by its own context, not by the batch, so
    the draws are one call's, except where the network's float32 round-off differs between batch compositions (a
    train's context bytes, hence its noise, then differ: other draws of the same posterior). Why blocks: with the
    rescaling rule (DA) the rescaled copies of 12,000 trains at once need > 20 GB."""
    from spikeinterface_dic.inference.posterior import draw

    time_scales = np.asarray(time_scales, dtype=float)
    return np.concatenate(
        [
            draw(
                posterior,
                predictor,
                trains[start : start + block],
                n_samples,
                time_scales[start : start + block],
                seed=seed,
                span_source=span_source,
            )
            for start in range(0, len(trains), block)
        ]
    )


def calibration_examples(
    model: str, folders: list, seed: int, jitter_fraction: float, max_trains: int, crop=None, whole_fraction=0.5
) -> tuple[dict, dict, dict, list]:
    """Contexts and truths of calibration trains (folders written by generate-data with seeds used nowhere else):
    trains of at least 8 spikes labelled spiking or bursting, k from the posterior's prior for the joint flow (1 for
    the known_k flow), and ``jitter_fraction`` of them degraded (2 ms jitter, 5 % deletions) as users' trains are;
    ``whole_fraction`` of them whole windows (what a long recording's segments are), the others cropped as the
    joint flow's training examples were (``crop``, the card's ``joint_crop``: a recording of any length). The map
    is stratified by length (:func:`fit_calibration`): the known_k flow calibrated on whole trains alone covered
    0.61 (68 %) of cropped tonic STG trains, calibrated on crops alone 0.71-0.73 of whole DA tonic trains.
    Also returns the joint flow's trains (at their k), which the reported map is fitted on."""
    from spikeinterface_dic.features import spike_train_features
    from spikeinterface_dic.inference.posterior import cropped, train_context
    from spikeinterface_dic.inference.predict import load_predictor
    from spikeinterface_dic.inference.train import load_folders

    data = load_folders(folders if len(folders) > 1 else folders[0])
    labels = spike_train_features(data["trains"])["label"].to_numpy()
    usable = np.flatnonzero(np.array([t.size >= 8 for t in data["trains"]]) & np.isin(labels, ["spiking", "bursting"]))
    rng = np.random.default_rng([seed, 5])
    if usable.size > max_trains:  # ~3,000 per class put the fitted quantiles within ~0.01 of their limits
        usable = np.sort(rng.choice(usable, size=max_trains, replace=False))
    trains = [np.asarray(data["trains"][i], dtype=float) for i in usable]
    degraded = rng.random(len(trains)) < jitter_fraction
    rough = degrade([t for t, d in zip(trains, degraded, strict=True) if d], seed)
    trains = [rough.pop(0) if d else t for t, d in zip(trains, degraded, strict=True)]
    log_k = np.where(rng.random(len(trains)) < 0.5, 0.0, rng.uniform(-2.5, 3.5, len(trains)) * math.log(2.0))
    predictor = load_predictor(model)
    if crop:  # recordings of any length (the joint flow was trained on such crops): both flows calibrated on them
        whole = rng.random(len(trains)) < whole_fraction
        trains = [t if keep else cropped(t, rng, tuple(crop), 8) for t, keep in zip(trains, whole, strict=True)]
    joint_trains = [t * math.exp(k) for t, k in zip(trains, log_k, strict=True)]
    contexts = {"known_k": train_context(predictor, trains), "joint": train_context(predictor, joint_trains)}
    g = np.column_stack([data["g_s"][usable], data["g_u"][usable]])
    truths = {"known_k": g, "joint": np.column_stack([g, log_k])}
    recipe = {
        "folders": [str(Path(f).name) for f in folders],
        "n_trains": len(trains),
        "degraded_fraction": float(degraded.mean()),
        "joint_crop": crop,
        "whole_fraction": whole_fraction if crop else 1.0,
        "seed": seed,
    }
    return contexts, truths, recipe, joint_trains


def _span_fraction_argument(parser, flag: str, help_text: str) -> None:
    """A LOW HIGH range of the fraction of a train's span kept (``cropped``)."""
    parser.add_argument(flag, nargs=2, type=float, default=None, metavar=("LOW", "HIGH"), help=help_text)


def main() -> None:
    from spikeinterface_dic.inference.tonic_rate import SPAN_SOURCES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit")
    fit.add_argument("--model", required=True, choices=("stg", "da"))
    fit.add_argument("--data", nargs="+", required=True, help="folders written by generate-data")
    fit.add_argument("--out", required=True)
    fit.add_argument("--copies", type=int, default=3)
    fit.add_argument("--epochs", type=int, default=60)
    fit.add_argument("--time-budget-s", type=float, default=1800.0)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--init-seed", type=int, default=None, help="initial weights and batch order (default: --seed); same examples"
    )
    fit.add_argument("--flows", nargs="+", default=["joint", "known_k"], choices=["joint", "known_k"])
    fit.add_argument(
        "--base-context",
        action="store_true",
        help="the flows read the context without the burst-shape statistics (BASE_CONTEXT_NAMES: the cards before "
        "2026-12-06)",
    )
    _span_fraction_argument(
        fit,
        "--joint-crop",
        "fraction of the span each joint example keeps (default: JOINT_CROP of inference/posterior.py)",
    )
    fit.add_argument(
        "--config",
        default=None,
        help='flow architecture as JSON, e.g. \'{"transforms": 4, "bins": 8, "hidden_features": [256, 256], '
        '"passes": 2}\' (default: DEFAULT_FLOW_CONFIG of spikeinterface_dic/inference/posterior.py)',
    )
    fit.add_argument(
        "--work-dir",
        default=None,
        help="keep the run's state here (example blocks, a checkpoint per epoch): the same command resumes it",
    )
    merge = commands.add_parser("merge", help="each flow from the run with the lowest validation NLL")
    merge.add_argument("--model", required=True, choices=("stg", "da"))
    merge.add_argument("--inputs", nargs="+", required=True, help="folders written by fit")
    merge.add_argument("--out", required=True)
    merge.add_argument(
        "--take", nargs="+", default=[], metavar="FLOW=FOLDER", help="take a flow from this run whatever its NLL"
    )
    evaluation = commands.add_parser("evaluate")
    evaluation.add_argument("--model", required=True, choices=("stg", "da"))
    evaluation.add_argument("--n-trains", type=int, default=1500)
    evaluation.add_argument("--seed", type=int, default=0)
    evaluation.add_argument("--weights-dir", default=None)
    evaluation.add_argument("--jitter", action="store_true", help="2 ms spike-time jitter and 5 %% deletions")
    _span_fraction_argument(
        evaluation,
        "--crop",
        "keep a random sub-window of each train, this fraction of its span (log-uniform), as recordings of any length "
        "are (JOINT_CROP: 0.25 1)",
    )
    evaluation.add_argument(
        "--jitter-fraction", type=float, default=None, help="degrade this fraction of the trains (instead of --jitter)"
    )
    evaluation.add_argument(
        "--whole-fraction", type=float, default=None, help="with --crop: keep this fraction of the trains whole"
    )
    evaluation.add_argument(
        "--span-source",
        choices=SPAN_SOURCES,
        default=None,
        help="tell the posterior how the spans came about (these sets: window); default: unknown, as users' trains",
    )
    evaluation.add_argument(
        "--heldout",
        nargs="+",
        default=None,
        help="held-out data folder(s), pooled (default: tests/data/heldout/test_<model>)",
    )
    evaluation.add_argument(
        "--card", action="store_true", help="record the table in the posterior's model card (heldout_metrics)"
    )
    calibration = commands.add_parser(
        "calibrate", help="fit the marginal calibration of the shipped (or --weights-dir) flows; written in the card"
    )
    calibration.add_argument("--model", required=True, choices=("stg", "da"))
    calibration.add_argument("--data", nargs="+", required=True, help="folders written by generate-data")
    calibration.add_argument("--weights-dir", default=None)
    calibration.add_argument("--seed", type=int, default=0)
    # 0: the shipped cards were fitted on clean trains (docs/posterior.md, "Calibration").
    calibration.add_argument("--jitter-fraction", type=float, default=0.0)
    calibration.add_argument("--max-trains", type=int, default=6000)
    calibration.add_argument(
        "--whole-fraction", type=float, default=0.5, help="calibration trains kept whole (the others cropped)"
    )
    calibration.add_argument(
        "--log-k-off-one",
        action="store_true",
        help="fit the joint flow's map of ln k on the trains at k != 1 alone (the cards before 2026-12-06's fourth "
        "session) instead of on every train with randomized positions in the point mass",
    )
    calibration.add_argument(
        "--no-irregularity-split",
        action="store_true",
        help="one map per class and length stratum (the cards before 2026-12-06's split by irregularity)",
    )
    rate = commands.add_parser(
        "rate-density",
        help="fit the log-rate density of tonic training trains at k = 1 (the k of long tonic trains, "
        "inference/tonic_rate.py); written in the card",
    )
    rate.add_argument("--model", required=True, choices=("stg", "da"))
    rate.add_argument("--data", nargs="+", required=True, help="the flows' training folders (trains at k = 1)")
    rate.add_argument("--weights-dir", default=None)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    if args.command == "rate-density":
        from spikeinterface_dic.features import spike_train_features
        from spikeinterface_dic.inference.data import load_training_data
        from spikeinterface_dic.inference.predict import WEIGHTS_DIR
        from spikeinterface_dic.inference.tonic_rate import fit_tonic_rate_density

        log_rates = []
        for folder in args.data:
            features = spike_train_features(load_training_data(folder)["trains"])
            tonic = features["label"].to_numpy() == "spiking"
            log_rates.append(np.log(features["mean_rate_hz"].to_numpy(float)[tonic]))
        entry = fit_tonic_rate_density(np.concatenate(log_rates))
        entry["data"] = [str(Path(folder).name) for folder in args.data]
        path = Path(args.weights_dir or WEIGHTS_DIR) / f"{args.model}_posterior.json"
        card = json.loads(path.read_text())
        card["tonic_rate_density"] = entry
        path.write_text(json.dumps(card, indent=2, default=str))
        print(f"{entry['n_trains']} tonic trains; density on {len(entry['density'])} points written to {path}")
    elif args.command == "calibrate":
        from spikeinterface_dic.inference.posterior import (
            CALIBRATION_LEVELS,
            PosteriorEstimator,
            fit_calibration,
            fit_reported_calibration,
            load_posterior,
        )
        from spikeinterface_dic.inference.predict import WEIGHTS_DIR, load_predictor

        folder = Path(args.weights_dir or WEIGHTS_DIR)
        crop = PosteriorEstimator(folder, args.model).card.get("joint_crop")
        contexts, truths, recipe, joint_trains = calibration_examples(
            args.model, args.data, args.seed, args.jitter_fraction, args.max_trains, crop, args.whole_fraction
        )
        split = not args.no_irregularity_split
        randomized = not args.log_k_off_one
        knots = fit_calibration(
            PosteriorEstimator(folder, args.model), contexts, truths, split=split, randomized_point_mass=randomized
        )
        path = folder / f"{args.model}_posterior.json"
        card = json.loads(path.read_text())
        card["calibration"] = {
            "scale": "cdf",
            "levels": list(CALIBRATION_LEVELS),
            "knots": knots,
            "method": "marginal CDF map per flow, class (context burst flag), "
            + ("irregularity half (-shape_q05 against the class's median), " if split else "")
            + "length stratum (log number of spikes: each train its own stratum's map) and parameter: quantiles of "
            "the truths' CDF positions in the flow's marginal (spikeinterface_dic.inference.posterior."
            "MarginalCalibration); the joint flow's ln k "
            + (
                "on every train, a truth at k = 1 at a uniform position within the point mass (randomized PIT)"
                if randomized
                else "on the trains at k != 1"
            ),
            "data": recipe,
        }
        path.write_text(json.dumps(card, indent=2, default=str))
        # Last, with the rescaling rule (DA), the reported map: fitted on what draw() reports with the maps just
        # fitted (PosteriorEstimator.report says why, and why not without the rule).
        load_posterior.cache_clear()
        posterior = PosteriorEstimator(folder, args.model)
        if posterior.rescaling:  # in blocks: the rescaled copies of 12,000 trains at once need > 20 GB
            predictor = load_predictor(args.model)
            # The map serves the flows' path, which long tonic trains' rate draws join after it (draw): fitted on the
            # flows' draws alone.
            posterior.tonic_rate_density = None
            unknown = np.full(len(joint_trains), np.nan)
            reported = draw_in_blocks(posterior, predictor, joint_trains, 400, unknown, args.seed)
            card["calibration"]["reported_knots"] = fit_reported_calibration(
                reported, truths["joint"], contexts["joint"], split=split
            )
            path.write_text(json.dumps(card, indent=2, default=str))
            load_posterior.cache_clear()
        for flow, classes in knots.items():
            for name, class_map in classes.items():
                groups = class_map.get("groups", [class_map])
                for group_name, strata in zip(
                    ("regular", "irregular") if len(groups) > 1 else ("",), groups, strict=True
                ):
                    bounds = [0.0, *np.exp(strata["log_n_edges"]).round().tolist(), math.inf]
                    for low, high, quantiles in zip(bounds[:-1], bounds[1:], strata["quantiles"], strict=True):
                        where = f"{group_name} n_spikes {low:.0f}-{high:.0f}"
                        print(flow, name, where, np.round(quantiles, 3).tolist())
    elif args.command == "fit":
        from spikeinterface_dic.inference.posterior import BASE_CONTEXT_NAMES, CONTEXT_NAMES, JOINT_CROP, fit_posterior
        from spikeinterface_dic.inference.predict import load_predictor
        from spikeinterface_dic.inference.train import load_folders

        data = load_folders(args.data if len(args.data) > 1 else args.data[0])
        card = fit_posterior(
            load_predictor(args.model),
            data,
            args.out,
            args.model,
            copies=args.copies,
            seed=args.seed,
            init_seed=args.init_seed,
            epochs=args.epochs,
            time_budget_s=args.time_budget_s,
            flows=tuple(args.flows),
            work_dir=args.work_dir,
            config=json.loads(args.config) if args.config else None,
            crop=tuple(args.joint_crop) if args.joint_crop else JOINT_CROP,
            context_names=BASE_CONTEXT_NAMES if args.base_context else CONTEXT_NAMES,
            progress=lambda *state: print("progress", *state, flush=True),
        )
        for name, metric in card["metrics"].items():
            print(f"{name}: validation NLL {metric['validation_nll']:.3f} after {metric['epochs']} epochs")
        training = card["training"]
        print(f"{training['n_examples']} examples, {training['seconds_this_call']:.0f} s this call")
        if not training["complete"]:
            print("the time budget ran out: run the same command again to continue")
    elif args.command == "merge":
        from spikeinterface_dic.inference.posterior import merge_runs

        card = merge_runs(args.model, args.inputs, args.out, dict(item.split("=", 1) for item in args.take))
        for name, metric in card["metrics"].items():
            print(f"{name}: validation NLL {metric['validation_nll']:.3f} from {metric['source']}")
    else:
        table = evaluate(
            args.model,
            args.n_trains,
            args.seed,
            weights_dir=args.weights_dir,
            jitter=args.jitter,
            heldout=args.heldout,
            crop=args.crop,
            jitter_fraction=args.jitter_fraction,
            whole_fraction=args.whole_fraction,
            span_source=args.span_source,
        )
        print(table.round(3).to_string(index=False))
        if args.card:
            from spikeinterface_dic.inference.predict import WEIGHTS_DIR

            path = Path(args.weights_dir or WEIGHTS_DIR) / f"{args.model}_posterior.json"
            card = json.loads(path.read_text())
            degraded = f"jitter_2ms_deletions_5pct_of_{args.jitter_fraction:g}" if args.jitter_fraction else "clean"
            key = (
                ("jitter_2ms_deletions_5pct" if args.jitter else degraded)
                + (f"_cropped_{args.crop[0]:g}-{args.crop[1]:g}" if args.crop else "")
                + (f"_whole_{args.whole_fraction:g}" if args.crop and args.whole_fraction else "")
                + (f"_span_{args.span_source}" if args.span_source else "")
                + ("_" + "+".join(Path(folder).name for folder in args.heldout) if args.heldout else "")
            )
            card.setdefault("heldout_metrics", {})[key] = {
                "n_trains": args.n_trains,
                "seed": args.seed,
                "k_prior_of_the_test": "k = 1 with probability 1/2, else log2 k uniform on [-2.5, 3.5]",
                "crop": args.crop,
                "jitter_fraction": 1.0 if args.jitter else (args.jitter_fraction or 0.0),
                "whole_fraction": (args.whole_fraction or 0.0) if args.crop else 1.0,
                "span_source": args.span_source,
                "rows": table.round(4).to_dict(orient="records"),
            }
            path.write_text(json.dumps(card, indent=2, default=str))


if __name__ == "__main__":
    main()
