"""Inference of (g_s, g_u, time scale k) from spike times with the shipped DICNet weights.

Cost model: one forward pass per window of at most 128 ISIs; a window costs O(T * width^2) for the embedding,
convolutions and feed-forward layers plus O(T^2 * width) for the attention layer. Trains are sorted by length and
batched, so padding is small. Long trains are cut into windows (stride 64 ISIs) whose estimates are combined by
inverse-variance weighting; the spread between windows is added to the reported variance, so non-stationary trains
get honest (wider) uncertainties rather than over-confident ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..features import label_reason, spike_train_features
from ..models import get_model
from ..schema import ESTIMATE_COLUMNS, ESTIMATE_NAMES
from .common import (
    WEIGHTS_DIR,
    as_trains,
    combine_windows_by_owner,
    isi_windows,
    known_time_scales,
    mean_by_owner,
    threads_for,
)
from .shape import ShapeReference, TimeScaleLibrary, library_statistics_batch, shape_statistics_batch

K_RANGE = (0.25, 8.0)
# The estimate columns of a train without an estimate (too few spikes), shared by every place that reports one.
NO_ESTIMATE = {column.name: column.empty_value() for column in ESTIMATE_COLUMNS if column.dtype in ("float64", "bool")}
# Below these a train's estimate is no better than the prior of its firing pattern (mean over g_s and g_u of MAE /
# MAE of the label's held-out median >= 0.9), measured by benchmarks/information_check.py on held-out trains at
# unknown k (docs/information_check.md). Tonic (and other non-bursting) trains are judged by spikes, bursters by
# bursts of >= 2 spikes: a burster's information comes in bursts.
MIN_INFORMATIVE_SPIKES = {"stg": 8, "da": 12}
MIN_INFORMATIVE_BURSTS = {"stg": 2, "da": 2}
# More refractory violations than this fraction of a train is not a few sorting errors: the times are probably in
# the wrong unit (seconds read as milliseconds) or the unit is a merge; removing them would leave a different train.
MAX_REFRACTORY_FRACTION = 0.2


class Predictor:
    """A loaded network plus its model card and shape reference."""

    def __init__(self, model_name: str, weights_dir: Path, device: str):
        import torch

        from .network import DICNet

        weights_path = weights_dir / f"{model_name}.pt"
        card_path = weights_dir / f"{model_name}.json"
        reference_path = weights_dir / f"{model_name}_reference.npz"
        for path in (weights_path, card_path, reference_path):
            if not path.exists():
                raise FileNotFoundError(
                    f"missing {path}; reinstall spikeinterface-dic or train with "
                    f"`spikeinterface-dic train --model {model_name}`"
                )
        self.model_name = model_name
        self.card = json.loads(card_path.read_text())
        for path, key in ((weights_path, "weights_sha256"), (reference_path, "reference_sha256")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != self.card[key]:
                raise RuntimeError(
                    f"{path} has sha256 {digest}, but its model card {card_path.name} records "
                    f"{self.card[key]}: the file is corrupt or from another training run; reinstall "
                    "the package or retrain"
                )
        self.net = DICNet(**self.card["config"])
        self.net.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
        self.net.to(device).eval()
        self.device = device
        self.window = int(self.card["window_isis"])
        with np.load(reference_path) as data:
            self.shape_reference = ShapeReference(data["shape_reference"])
            # References written before the library existed hold no library: k then comes from the network alone.
            self.time_scale_library = (
                TimeScaleLibrary(data["library_shapes"], data["library_log_speeds"])
                if "library_shapes" in data
                else None
            )
        self.weights_sha256 = self.card["weights_sha256"]

    def predict_windows(
        self, windows: list[np.ndarray], batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means and standard deviations (scaled network units) and the network's probability of a bursting pattern
        for windows of ISIs in ms."""
        import torch

        means = np.empty((len(windows), 3))
        stds = np.empty((len(windows), 3))
        p_bursting = np.empty(len(windows))
        lengths = np.array([len(w) for w in windows], dtype=np.int64)
        order = np.argsort(lengths)
        # A window is one row per ISI token: the single-thread rule counts tokens.
        with torch.inference_mode(), threads_for(int(lengths.sum())):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                mask = np.arange(lengths[rows].max()) < lengths[rows, None]
                log_isi = np.zeros(mask.shape, dtype=np.float32)
                log_isi[mask] = np.log(np.concatenate([windows[i] for i in rows]))  # row by row, as mask is
                out = self.net(torch.from_numpy(log_isi).to(self.device), torch.from_numpy(mask).to(self.device))
                means[rows] = out["mean"].float().cpu().numpy()
                stds[rows] = out["log_std"].float().exp().cpu().numpy()
                p_bursting[rows] = torch.softmax(out["logits"].float(), dim=1)[:, 1].cpu().numpy()
        return means, stds, p_bursting


@lru_cache(maxsize=8)
def load_predictor(model="stg", weights_dir=None, device: str = "cpu") -> Predictor:
    """Load (once per process) the network for a model, checking the weights' sha256 against the model card."""
    name = get_model(model).name
    return Predictor(name, Path(weights_dir) if weights_dir else WEIGHTS_DIR, device)


def _with_library(log_k: float, log_k_std: float, library_log_k: float, library_std: float) -> tuple[float, float]:
    """Combine the network's log k with the library's: inverse-variance weighted mean, the smaller of the two sds.

    Used for bursting trains only: their shape (spikes per burst, duty cycle, long ISIs) picks out neighbours whose
    speed says something about k. A tonic train's shape is a single ISI, so its library estimate is the spread of all
    tonic speeds - nothing beyond the network's prior - and is not used. Both estimates read the same train, so they
    are not independent: the product-of-Gaussians sd would be over-confident (held-out 1 sd coverage 0.59); the
    smaller of the two sds claims no gain from combining and covers 0.66-0.72 off k = 1 (model cards, STG).
    ``library_log_k``, ``library_std``: :meth:`TimeScaleLibrary.estimate` for the train (NaN: the network's alone).
    """
    if not math.isfinite(library_log_k):
        return log_k, log_k_std
    w_network, w_library = 1.0 / log_k_std**2, 1.0 / library_std**2
    combined = (w_network * log_k + w_library * library_log_k) / (w_network + w_library)
    return combined, min(log_k_std, library_std)


def _posterior_summaries(
    model_name,
    weights_dir,
    predictor,
    cleaned,
    known_k,
    owner,
    means,
    stds,
    p_bursting,
    enabled,
    k_range,
    features=None,
    span_source=None,
) -> dict:
    """{train index: posterior summary columns} for the trains of at least 4 spikes, when the model has posterior
    flows and ``enabled``; the network's window outputs are reused as the flows' embedding."""
    from . import summary_head
    from .posterior import SUMMARY_SAMPLES, draw, has_posterior, load_posterior, read_by_rate_mask, summarise

    folder = str(weights_dir) if weights_dir else None
    available = enabled and has_posterior(model_name, folder)
    if k_range is not None:
        low, high = (float(v) for v in k_range)
        if not (0 < low < high and math.isfinite(high)):
            raise ValueError(f"time_scale_range must be (k_low, k_high) with 0 < k_low < k_high; got {k_range}")
        if not available:
            raise ValueError(f"time_scale_range needs the posterior flows of model {model_name!r} (posterior=True)")
    if not available:
        return {}
    # Trains without network windows (too many refractory violations) get no estimate: their outputs would be NaN.
    n_windows = np.bincount(owner, minlength=len(cleaned))
    rows = [i for i, train in enumerate(cleaned) if train.size >= 4 and n_windows[i] > 0]
    if not rows:
        return {}
    combined_means, combined_stds, _ = combine_windows_by_owner(means, stds, owner, len(cleaned))
    mean_p_bursting = mean_by_owner(p_bursting, owner, len(cleaned))
    network = np.column_stack([combined_means[rows], np.log(combined_stds[rows]), mean_p_bursting[rows]])
    posterior = load_posterior(model_name, folder)
    trains = [cleaned[i] for i in rows]
    # Trains read whole with no range of k: the amortised head (distilled from this very posterior, else refused)
    # gives the summaries in one pass; long trains (segment mixtures) and ranges of k are sampled.
    head = None
    if summary_head.ENABLED and k_range is None:
        head = summary_head.load_summary_head(model_name, folder, posterior)
    done, from_head = (np.zeros(0, dtype=int), {})
    if head is not None:
        chosen = None if features is None else features.iloc[rows]
        # Long tonic trains with k unknown take k from their rate (draw), which no head was distilled from.
        by_rate = read_by_rate_mask(posterior, model_name, trains, chosen, span_source) & ~np.isfinite(known_k[rows])
        done, from_head = summary_head.head_summaries(
            head, predictor, trains, known_k[rows], network, chosen, skip=by_rate
        )
    sampled = np.setdiff1d(np.arange(len(rows)), done)
    table = {name: np.full(len(rows), np.nan) for name in from_head}
    if sampled.size:
        samples = draw(
            posterior,
            predictor,
            [trains[j] for j in sampled],
            SUMMARY_SAMPLES,
            known_k[rows][sampled],
            k_range,
            network=network[sampled],
            span_source=span_source,
        )
        for name, values in summarise(samples).items():
            table.setdefault(name, np.full(len(rows), np.nan))[sampled] = values
    for name, values in from_head.items():
        table[name][done] = values
    out = {}
    for j, index in enumerate(rows):
        summary = {name: float(values[j]) for name, values in table.items()}
        if np.isfinite(known_k[index]):  # k is given: keep it, with a zero-width interval
            summary.update(time_scale=float(known_k[index]), time_scale_std=0.0)
            summary.update(time_scale_low=float(known_k[index]), time_scale_high=float(known_k[index]))
        elif not np.isfinite(summary["g_s"]) and k_range is not None:
            # The train leaves (almost) no posterior mass in the user's range: no estimate rather than a fallback.
            summary["range_reason"] = (
                f"the train contradicts the time-scale range [{k_range[0]:g}, {k_range[1]:g}]: the posterior puts "
                "almost no mass there"
            )
        out[index] = summary
    return out


def _information_reasons(features_row, model_name: str) -> list[str]:
    """Why a train cannot support a confident estimate: too few spikes or bursts, or irregular firing."""
    reasons = []
    label, n_spikes = features_row["label"], int(features_row["n_spikes"])
    if label == "irregular":
        reasons.append(
            f"irregular firing ({label_reason(features_row)}): a deterministic model twin cannot reproduce a "
            "noise-driven train"
        )
    if label == "bursting":
        n_bursts = int(features_row["n_burst_runs"])
        if n_bursts < MIN_INFORMATIVE_BURSTS[model_name]:
            reasons.append(
                f"{n_bursts} burst{'s' if n_bursts != 1 else ''}: too few to estimate (at least "
                f"{MIN_INFORMATIVE_BURSTS[model_name]} are needed to beat the prior, docs/information_check.md)"
            )
    elif n_spikes < MIN_INFORMATIVE_SPIKES[model_name]:
        reasons.append(
            f"{n_spikes} spikes: too few to estimate (at least {MIN_INFORMATIVE_SPIKES[model_name]} are needed to "
            "beat the prior, docs/information_check.md)"
        )
    return reasons


def infer_dics(
    spike_trains,
    model="stg",
    device: str = "cpu",
    batch_size: int = 512,
    weights_dir=None,
    refractory_ms: float = 1.0,
    time_scale=None,
    time_scale_range: tuple | None = None,
    posterior: bool = True,
    span_source: str | None = None,
) -> pd.DataFrame:
    """Estimate (g_s, g_u) at threshold and the time scale k of every train, with standard deviations.

    Parameters
    ----------
    spike_trains : list of array_like | dict
        Spike times in seconds, one train per unit ({unit_id: times} keeps the ids).
    model : "stg" | "da", default: "stg"
    device : str, default: "cpu"
        torch device ("cuda" to use a GPU).
    refractory_ms : float, default: 1.0
        ISIs shorter than this are refractory violations (sorting errors); the second spike of each is dropped and
        the count is reported in ``n_refractory_violations``. When more than 20 % of a train's spikes would be
        dropped (:data:`MAX_REFRACTORY_FRACTION`), the unit gets no estimate and a reason naming the likely unit
        mistake instead of an estimate built from what is left.
    time_scale : None | float | sequence | dict, default: None
        A known time scale k (one for all trains, one per train, or {unit_id: k}; NaN or absent = unknown), e.g.
        from the recording temperature and a Q10. Spike times are divided by k before inference, so the network sees
        the train at the model's own kinetics; the reported time scale is k with a zero-width interval. Knowing k
        matters: for bursting trains the inter-burst period is set by both g_u and k (docs/time_scale.md).
    time_scale_range : (k_low, k_high) | None, default: None
        What is known of k as a range, for the units whose k is not given: the posterior under a prior flat in
        ln k on that range (needs the model's posterior flows).
    posterior : bool, default: True
        Report the joint posterior's summaries (:mod:`.posterior`) where the model has posterior flows: g_s, g_u
        and k are posterior medians, the sds posterior sds, ``*_q16``/``*_q84`` and k's interval the 16/84 %
        quantiles. False (or no flows): the network's mean and sd (quantile columns NaN).
    span_source : "recording" | "window" | None, default: None
        How the trains' spans came about, if you know: "recording" (they last as long as the recording did, which
        says nothing of k), "window" (simulated windows times k, as ``generate-data`` writes them). None weighs both
        by their evidence. It decides how long tonic trains of models with a rate density (DA) are read
        (docs/posterior.md, "Long trains").

    Returns
    -------
    pandas.DataFrame
        One row per train: g_s, g_u, g_s_std, g_u_std, time_scale, time_scale_std, time_scale_low, time_scale_high
        (1 sd interval of log k), label ("silent" | "spiking" | "bursting" | "irregular", from the rule-based
        features), in_distribution (bool), ood_reason, n_spikes, n_windows, n_refractory_violations, novelty,
        p_bursting (the network's own probability of a bursting pattern, averaged over windows).
        Trains with fewer than 3 spikes are "silent" with NaN estimates and a reason, never an error. Trains too
        short to beat the prior (:data:`MIN_INFORMATIVE_SPIKES`, :data:`MIN_INFORMATIVE_BURSTS`) and irregular
        trains keep their estimate (so it can be seen) but are never in distribution, with the reason in words.
    """
    from .tonic_rate import check_span_source

    check_span_source(span_source)  # before any work: a misspelt value must not cost a run
    model = get_model(model)
    predictor = load_predictor(model.name, str(weights_dir) if weights_dir else None, device)
    ids, trains = as_trains(spike_trains)
    known_k = known_time_scales(time_scale, ids)
    # Refractory cleaning of all trains at once: a spike closer than refractory_ms to the previous one of its train
    # is dropped (each train's first spike is kept).
    lengths = np.array([train.size for train in trains], dtype=np.int64)
    flat = np.concatenate(trains).astype(float) if trains else np.zeros(0)
    train_of_spike = np.repeat(np.arange(len(trains)), lengths)
    keep = np.ones(flat.size, dtype=bool)
    keep[1:] = (train_of_spike[1:] != train_of_spike[:-1]) | (np.diff(flat) >= refractory_ms / 1000.0)
    kept = np.bincount(train_of_spike[keep], minlength=len(trains))
    violations = (lengths - kept).tolist()
    flat = flat[keep]
    starts = np.concatenate(([0], np.cumsum(kept)))
    cleaned = [flat[starts[i] : starts[i + 1]] for i in range(len(trains))]
    isi_ms = np.diff(flat) * 1000.0  # ISI j of train i: isi_ms[starts[i] + j] for j < kept[i] - 1
    # Units whose trains would lose most of their spikes get no estimate (a reason instead of an error: one bad
    # unit must not abort the others, e.g. in the SpikeInterface extension).
    too_many_violations = [
        count > MAX_REFRACTORY_FRACTION * train.size for count, train in zip(violations, trains, strict=True)
    ]
    features = spike_train_features(cleaned, burst_shape=True)  # the burst shape for the posterior's context
    windows, owner = [], []
    for index, train in enumerate(cleaned):
        if train.size >= 3 and not too_many_violations[index]:
            scale = 1.0 if np.isnan(known_k[index]) else known_k[index]
            isi = isi_ms[starts[index] : starts[index + 1] - 1]
            for w in isi_windows(np.maximum(isi / scale, 0.05), predictor.window):
                windows.append(w)
                owner.append(index)
    owner = np.array(owner, dtype=int)
    means, stds, p_bursting = (
        predictor.predict_windows(windows, batch_size) if windows else (np.empty((0, 3)), np.empty((0, 3)), np.empty(0))
    )
    summaries = _posterior_summaries(
        model.name,
        weights_dir,
        predictor,
        cleaned,
        known_k,
        owner,
        means,
        stds,
        p_bursting,
        posterior,
        time_scale_range,
        features,
        span_source,
    )
    n_trains = len(cleaned)
    # Everything per train that numpy can do for all trains at once (equal to the one-train functions' results);
    # the loop below is scalar arithmetic and the reasons in words.
    combined_means, combined_stds, n_windows = combine_windows_by_owner(means, stds, owner, n_trains)
    mean_p_bursting = mean_by_owner(p_bursting, owner, n_trains)
    novelty = predictor.shape_reference.score(shape_statistics_batch(cleaned)).tolist()
    library_log_k, library_std = np.full(n_trains, np.nan), np.full(n_trains, np.nan)
    labels = features["label"].tolist()
    estimable = np.array([train.size >= 3 for train in cleaned], dtype=bool) & ~np.array(too_many_violations, bool)
    if predictor.time_scale_library is not None:
        chosen = np.flatnonzero(estimable & np.isnan(known_k) & (features["label"].to_numpy() == "bursting"))
        if chosen.size:
            shapes, speeds = library_statistics_batch([cleaned[i] for i in chosen])
            library_log_k[chosen], library_std[chosen] = predictor.time_scale_library.estimate(shapes, speeds)
    feature_rows = features.to_dict("records")
    main_frequency = features["main_frequency_hz"].tolist()
    combined_means, combined_stds = combined_means.tolist(), combined_stds.tolist()
    library_log_k, library_std = library_log_k.tolist(), library_std.tolist()
    mean_p_bursting, n_windows = mean_p_bursting.tolist(), n_windows.tolist()
    rows = []
    rate_low, rate_high = predictor.card["training_rate_hz_range"]
    threshold = predictor.shape_reference.threshold
    for index, train in enumerate(cleaned):
        row = {
            "n_spikes": int(train.size),
            "n_refractory_violations": violations[index],
            "label": labels[index],
        }
        if too_many_violations[index]:
            total = trains[index].size
            row.update(
                NO_ESTIMATE,
                ood_reason=(
                    f"{violations[index]} of {total} spikes ({100 * violations[index] / total:.0f} %) come less than "
                    f"{refractory_ms:g} ms after the previous one: times probably in seconds read as milliseconds "
                    "(or a merged unit); no estimate"
                ),
                n_windows=0,
            )
            rows.append(row)
            continue
        if train.size < 3:
            row.update(
                NO_ESTIMATE,
                ood_reason=f"{train.size} spikes: at least 3 are needed to estimate DICs",
                n_windows=0,
            )
            rows.append(row)
            continue
        mean, std = combined_means[index], combined_stds[index]
        log_k, log_k_std = mean[2], std[2]
        if not math.isnan(known_k[index]):
            # The network saw train / k; whatever time scale it reads there is not reported: k is given.
            log_k, log_k_std = math.log(known_k[index]), 0.0
        elif predictor.time_scale_library is not None and row["label"] == "bursting":
            log_k, log_k_std = _with_library(log_k, log_k_std, library_log_k[index], library_std[index])
        k = math.exp(log_k)
        estimate = {
            "g_s": 10.0 * mean[0],
            "g_u": 10.0 * mean[1],
            "g_s_std": 10.0 * std[0],
            "g_u_std": 10.0 * std[1],
            "time_scale": k,
            "time_scale_std": k * log_k_std,
            "time_scale_low": math.exp(log_k - log_k_std),
            "time_scale_high": math.exp(log_k + log_k_std),
        }
        summary = dict(summaries.get(index, {}))
        range_reason = summary.pop("range_reason", "")
        if summary:
            estimate.update(summary)
            k = estimate["time_scale"] if np.isfinite(estimate["time_scale"]) else k
        reasons = _information_reasons(feature_rows[index], model.name)
        if range_reason:
            reasons.append(range_reason)
        if math.isfinite(novelty[index]) and novelty[index] > threshold:
            reasons.append(
                f"ISI pattern unlike any {model.name} model train at any time scale (novelty "
                f"{novelty[index]:.2f} > {threshold:.2f})"
            )
        if not (K_RANGE[0] / 1.5 <= k <= K_RANGE[1] * 1.5):
            reasons.append(f"time scale k = {k:.3g} is outside the modelled range [{K_RANGE[0]}, {K_RANGE[1]}]")
        main = main_frequency[index]
        if math.isfinite(main) and not (rate_low / 1.5 <= main * k <= rate_high * 1.5):
            reasons.append(
                f"main frequency {main:.3g} Hz is {main * k:.3g} Hz at k = 1, outside the training range "
                f"[{rate_low:.3g}, {rate_high:.3g}] Hz"
            )
        row.update(
            estimate,
            in_distribution=not reasons,
            ood_reason="; ".join(reasons),
            n_windows=n_windows[index],
            novelty=novelty[index],
            p_bursting=mean_p_bursting[index],
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_NAMES), index=pd.Index(ids, name="unit_id"))
    frame["in_distribution"] = frame["in_distribution"].astype(bool)
    return frame


def sample_posterior(
    spike_trains,
    model="stg",
    n: int = 1000,
    seed: int = 0,
    time_scale=None,
    time_scale_range: tuple | None = None,
    weights_dir=None,
    refractory_ms: float = 1.0,
    span_source: str | None = None,
) -> dict:
    """Posterior samples of (g_s, g_u, k) for every unit: ``{unit_id: (n, 3) array}`` (NaN rows for trains of fewer
    than 4 spikes, or whose posterior holds no mass inside ``time_scale_range``).

    Parameters
    ----------
    spike_trains : dict | list of array_like
        Spike times in seconds.
    model : "stg" | "da", default: "stg"
    n : int, default: 1000
        Samples per unit.
    seed : int, default: 0
        Same seed, same samples.
    time_scale : None | float | sequence | dict, default: None
        Known k (as :func:`~spikeinterface_dic.infer_dics` takes it): its units get samples of (g_s, g_u) given k.
    time_scale_range : (k_low, k_high) | None, default: None
        What you know of k as a range (e.g. (2, 6) from the recording temperature): the posterior under a prior
        flat in ln k on that range.
    weights_dir : str | None, default: None
        Folder holding ``<model>_posterior.pt/.json`` and the network (None: the shipped ones).
    span_source : "recording" | "window" | None, default: None
        How the trains' spans came about, if you know (as :func:`~spikeinterface_dic.infer_dics` takes it).
    """
    from .posterior import draw, load_posterior
    from .tonic_rate import check_span_source

    check_span_source(span_source)
    model = get_model(model)
    ids, trains = as_trains(spike_trains)
    known = known_time_scales(time_scale, ids)
    cleaned = [t[np.concatenate([[True], np.diff(t) >= refractory_ms / 1000.0])] if t.size else t for t in trains]
    usable = np.array([t.size >= 4 for t in cleaned])
    out = {u: np.full((int(n), 3), np.nan) for u in ids}
    if usable.any():
        rows = np.flatnonzero(usable)
        samples = draw(
            load_posterior(model.name, str(weights_dir) if weights_dir else None),
            load_predictor(model.name, str(weights_dir) if weights_dir else None),
            [cleaned[i] for i in rows],
            int(n),
            known[rows],
            time_scale_range,
            seed,
            span_source=span_source,
        )
        samples[:, :, 2] = np.exp(samples[:, :, 2])
        for j, row in enumerate(rows):
            out[ids[row]] = samples[j]
    return out
