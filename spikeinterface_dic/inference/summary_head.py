"""Amortised posterior summaries: a small MLP per flow that maps a train's context straight to the calibrated flow's
marginal summaries (5/16/50/84/95 % quantiles and sd of each parameter), distilled from the flow's own samples.

Why: ``infer_dics`` reports per train the posterior median, sd and 16/84 % quantiles. Drawing them
(:data:`.posterior.SUMMARY_SAMPLES` samples through the flow's inverse, then the marginal calibration) was 80 % of its
time (~200 trains/s on 2 cores). Those summaries are a smooth function of the context, so a regression head trained on
many (context, sampled summaries) pairs returns them in one small forward pass, and without the sampling noise of 200
draws (0.06-0.11 posterior sd, median absolute, for the median and the 16/84 % quantiles).

Distillation: contexts of simulated training trains (augmented as the flows' own training examples, never the
held-out sets), each with the summaries of ``samples`` calibrated draws of its flow (the targets, in the flow's
standardised target units). The head predicts the median, then the gaps to the 16/84 % quantiles and from those to
the 5/95 % quantiles (softplus, so quantiles never cross), and the sd; the loss is the squared error in units of the
target's own posterior sd (a narrow posterior matters as much as a wide one), with early stopping on a validation
split by population target.

Staleness: a head is valid only for the posterior it was distilled from. Its card records the sha256 of the
posterior weights and a digest of the card's calibration knots and point-mass rule; :func:`load_summary_head`
refuses a head whose records differ from the loaded posterior (a logged warning, and ``infer_dics`` samples
instead), so retraining or recalibrating the flows never silently reuses an old head. Refit with
``benchmarks/summary_head.py fit``.

Cost model: one MLP pass per train (O(width^2)), ~2e5 trains/s on 2 cores (shared); the context (:func:`.posterior.
train_context`) then dominates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .common import WEIGHTS_DIR
from .posterior import (
    BASE_CONTEXT_NAMES,
    CONTEXT_NAMES,
    FLOWS,
    read_context_columns,
    segments,
    train_context,
    training_window_s,
    window_time_scale,
)

_logger = logging.getLogger(__name__)

# False forces the sampling path in infer_dics (tests and benchmarks compare the two).
ENABLED = True
# Per parameter, the statistics the head predicts: quantiles at these CDF positions, then the sd.
QUANTILES = (0.05, 0.16, 0.5, 0.84, 0.95)
STATISTICS = ("q05", "q16", "median", "q84", "q95", "sd")
# Floor of the loss's scale (standardised target units): a posterior narrower than this is not weighted more.
SD_FLOOR = 0.02


def calibration_digest(card: dict) -> str:
    """sha256 of what a posterior card adds to its flows' draws: the calibration knots, the point-mass rule and the
    reported map (canonical JSON; the knots alone for cards without the rule, as heads distilled before it
    recorded; no key for cards without a reported map)."""
    calibration = card.get("calibration", {})
    knots = calibration.get("knots", {})
    recorded = knots if card.get("point_mass") is None else {"knots": knots, "point_mass": card["point_mass"]}
    if calibration.get("reported_knots"):  # the last map is part of the reported posterior too
        recorded = {**recorded, "reported_knots": calibration["reported_knots"]}
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()


def sampled_statistics(samples: np.ndarray) -> np.ndarray:
    """(n_trains, p, 6): per parameter the 5/16/50/84/95 % quantiles and sd of samples (n_trains, n, p), as
    :func:`.posterior.summarise` computes them."""
    quantiles = np.quantile(samples, QUANTILES, axis=1)  # (5, n_trains, p)
    return np.concatenate([np.moveaxis(quantiles, 0, 2), samples.std(axis=1)[:, :, None]], axis=2)


def _build_head(n_context: int, n_parameters: int, hidden: tuple):
    import torch

    layers, width = [], n_context
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.SiLU()]
        width = size
    layers.append(torch.nn.Linear(width, n_parameters * len(STATISTICS)))
    return torch.nn.Sequential(*layers)


def _statistics_from_raw(raw, n_parameters: int):
    """Ordered statistics (n, p, 6) from the head's raw outputs: median, then softplus gaps outwards; sd > 0."""
    import torch

    softplus = torch.nn.functional.softplus
    r = raw.reshape(len(raw), n_parameters, len(STATISTICS))
    median = r[..., 0]
    q16, q84 = median - softplus(r[..., 1]), median + softplus(r[..., 3])
    q05, q95 = q16 - softplus(r[..., 2]), q84 + softplus(r[..., 4])
    return torch.stack([q05, q16, median, q84, q95, softplus(r[..., 5])], dim=-1)


def head_columns(posterior) -> dict:
    """Per flow, the context columns its head reads: every column the reported posterior of that flow depends on
    (the joint flow's draws at k = 1 come from the point-mass flow, which may read more columns than the joint
    flow: a head without them would average over what they tell)."""
    columns = {flow: np.asarray(posterior.context_columns[flow]) for flow in FLOWS}
    if posterior.point_mass:
        columns["joint"] = np.union1d(columns["joint"], posterior.context_columns[posterior.point_mass["flow"]])
    return columns


def head_scaling(posterior, columns: dict) -> dict:
    """Per flow, the standardisation of its head's context columns (each column's mean and sd from a flow that reads
    it, the head's own flow first) and of its targets (the flow's)."""
    out = {}
    for flow in FLOWS:
        mean, std = np.empty(len(columns[flow])), np.empty(len(columns[flow]))
        for j, column in enumerate(columns[flow]):
            source = next(f for f in (flow, *FLOWS) if column in posterior.context_columns[f])
            where = int(np.flatnonzero(posterior.context_columns[source] == column)[0])
            mean[j] = posterior.scaling[source]["context_mean"][where]
            std[j] = posterior.scaling[source]["context_std"][where]
        out[flow] = {**posterior.scaling[flow], "context_mean": mean, "context_std": std}
    return out


def column_names(columns: dict) -> dict:
    return {flow: [CONTEXT_NAMES[c] for c in columns[flow]] for flow in FLOWS}


class SummaryHead:
    """The heads of a model's flows with their standardisation (see module docstring)."""

    def __init__(self, state: dict, card: dict, scaling: dict, sampled_flows: tuple = (), context_columns=None):
        self.card = card
        self.scaling = scaling
        # The context columns each head reads (head_columns); all of train_context's by default.
        every = np.arange(len(CONTEXT_NAMES))
        self.context_columns = {flow: (context_columns or {}).get(flow, every) for flow in FLOWS}
        self.sampled_flows = tuple(sampled_flows)  # flows whose summaries are sampled, not read from the head
        self.heads = {}
        for flow in card["flows"]:
            head = _build_head(len(self.context_columns[flow]), len(FLOWS[flow]), tuple(card["config"]["hidden"]))
            head.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == flow})
            head.eval()
            self.heads[flow] = head

    def statistics(self, context: np.ndarray, flow: str) -> np.ndarray:
        """(n_trains, p, 6) quantiles 5/16/50/84/95 % and sd of (g_s, g_u[, ln k]) for context rows."""
        import torch

        scaling = self.scaling[flow]
        read = read_context_columns(context, self.context_columns[flow])
        standardised = (read - scaling["context_mean"]) / scaling["context_std"]
        with torch.inference_mode():
            raw = self.heads[flow](torch.from_numpy(standardised.astype(np.float32)))
            values = _statistics_from_raw(raw, len(FLOWS[flow])).double().numpy()
        mean, std = scaling["target_mean"][:, None], scaling["target_std"][:, None]
        values[..., :5] = values[..., :5] * std + mean
        values[..., 5] *= std[:, 0]
        return values


def summary_columns(statistics: np.ndarray) -> dict:
    """infer_dics' summary columns from statistics (n, p, 6), exactly as :func:`.posterior.summarise` defines them
    (k from ln k: the exponential of its median, quantiles and k times its sd); NaN k columns for the known_k flow."""
    out = {}
    for p, name in enumerate(("g_s", "g_u")):
        out[name], out[f"{name}_std"] = statistics[:, p, 2], statistics[:, p, 5]
        out[f"{name}_q16"], out[f"{name}_q84"] = statistics[:, p, 1], statistics[:, p, 3]
    if statistics.shape[1] == 3:
        k = np.exp(statistics[:, 2, 2])
        out["time_scale"], out["time_scale_std"] = k, k * statistics[:, 2, 5]
        out["time_scale_low"], out["time_scale_high"] = np.exp(statistics[:, 2, 1]), np.exp(statistics[:, 2, 3])
    else:
        for column in ("time_scale", "time_scale_std", "time_scale_low", "time_scale_high"):
            out[column] = np.full(len(statistics), np.nan)
    return out


def head_summaries(
    head: SummaryHead, predictor, trains_s: list, known_k: np.ndarray, network: np.ndarray, features=None, skip=None
):
    """Summary columns for the trains the flows read whole (one segment, :func:`.posterior.segments`).

    Trains with a known k are divided by it and read by the ``known_k`` head, the others by the ``joint`` head, as
    :func:`.posterior.draw` does. ``network``: the network's outputs per train (as divided). Returns (indices of the
    trains summarised, {column: values for those trains}); long trains are left to the sampled segment mixture.
    ``features``: the trains' :func:`~spikeinterface_dic.features.spike_train_features` rows, when computed (reused
    for the joint flow, whose trains are not divided). ``skip``: trains left to the sampled path (one bool each).
    """
    known_k = np.asarray(known_k, dtype=float)
    window = training_window_s(predictor.model_name)
    indices, tables = [], []
    skip = np.zeros(len(trains_s), dtype=bool) if skip is None else np.asarray(skip, dtype=bool)
    for flow, chosen in (("known_k", np.isfinite(known_k)), ("joint", ~np.isfinite(known_k))):
        if flow in head.sampled_flows:
            continue
        rows = np.flatnonzero(chosen & ~skip)
        trains = [trains_s[i] / (known_k[i] if flow == "known_k" else 1.0) for i in rows]
        scale = window_time_scale(network[rows], flow)
        whole = np.array([len(segments(t, window * s)) == 1 for t, s in zip(trains, scale, strict=True)], dtype=bool)
        if not whole.any():
            continue
        reuse = features is not None and flow == "joint"
        context = train_context(
            predictor,
            [t for t, w in zip(trains, whole, strict=True) if w],
            network[rows[whole]],
            features.iloc[rows[whole]] if reuse else None,
        )
        statistics = head.statistics(context, flow)
        trusted = plausible(statistics, context, predictor.model_name)
        indices.append(rows[whole][trusted])
        tables.append(summary_columns(statistics[trusted]))
    if not indices:
        return np.zeros(0, dtype=int), {}
    return np.concatenate(indices), {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


# A head's summary is used only where it is plausible; elsewhere the train's posterior is sampled. Why: the head is a
# regression fitted where distillation contexts are dense; at the edge of the training region it can extrapolate
# (e.g. a noisy tonic STG train at the network's g_u ~ 21 got g_u 29.8 +- 0.06 from the head, 19.6 +- 0.7 from the
# flow). Plausible: every quantile inside the training region widened by HEAD_SUPPORT_MARGIN of its width on each
# side (the flow's own samples stay there), and the median within HEAD_MAX_NETWORK_SDS of the network's sds of the
# network's mean (the network is the context's main part; the flow never moved a held-out train that far from it).
HEAD_SUPPORT_MARGIN = 0.25
# Flows whose head failed the held-out calibration check (``benchmarks/summary_head.py evaluate``) and whose summaries
# are therefore always sampled: DA joint, whose head's ln k intervals covered 0.59 (68 %) of the held-out trains at
# k != 1 against the sampled flow's 0.66 (2026-12-05, flows trained on 101,376 DA trains).
SAMPLED_FLOWS = {"da": ("joint",)}
HEAD_MAX_NETWORK_SDS = 4.0


def plausible(statistics: np.ndarray, context: np.ndarray, model_name: str) -> np.ndarray:
    """(n,) whether each train's head statistics (n, p, 6) are plausible (see HEAD_SUPPORT_MARGIN)."""
    from ..models import get_model
    from .train import K_LOG2_RANGE

    model = get_model(model_name)
    bounds = [model.extra["training_g_s"], model.extra["training_g_u"], [v * math.log(2.0) for v in K_LOG2_RANGE]]
    n_parameters = statistics.shape[1]
    ok = np.all(np.isfinite(statistics), axis=(1, 2))
    for p in range(n_parameters):
        low, high = bounds[p]
        margin = HEAD_SUPPORT_MARGIN * (high - low)
        quantiles = statistics[:, p, :5]
        ok &= np.all((quantiles >= low - margin) & (quantiles <= high + margin), axis=1)
    # The network's mean and sd of (g_s/10, g_u/10, ln k) are the context's first six columns.
    scale = np.array([10.0, 10.0, 1.0])[:n_parameters]
    network_mean = context[:, :n_parameters] * scale
    network_sd = np.exp(context[:, 3 : 3 + n_parameters]) * scale
    ok &= np.all(np.abs(statistics[:, :, 2] - network_mean) <= HEAD_MAX_NETWORK_SDS * network_sd, axis=1)
    return ok


# ------------------------------------------------------------------------------------------------------- loading
def head_paths(folder: Path, model_name: str) -> tuple[Path, Path]:
    return folder / f"{model_name}_summary.pt", folder / f"{model_name}_summary.json"


def load_summary_head(model_name: str, weights_dir: str | None, posterior) -> SummaryHead | None:
    """The model's summary head when it was distilled from exactly this posterior (weights and calibration), else
    None (sampling is then used); a head that exists but does not match is refused with a logged warning."""
    return _load_head(model_name, weights_dir, posterior.weights_sha256, calibration_digest(posterior.card), posterior)


@lru_cache(maxsize=8)
def _load_head(model_name, weights_dir, posterior_sha256, digest, posterior) -> SummaryHead | None:
    import torch

    weights_path, card_path = head_paths(Path(weights_dir) if weights_dir else WEIGHTS_DIR, model_name)
    if not weights_path.exists() or not card_path.exists():
        return None
    card = json.loads(card_path.read_text())
    problems = []
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != card.get("weights_sha256"):
        problems.append(f"{weights_path.name} does not match the sha256 its card records")
    if card.get("posterior_weights_sha256") != posterior_sha256:
        problems.append(
            f"it was distilled from posterior weights {str(card.get('posterior_weights_sha256'))[:12]}, the loaded "
            f"posterior is {posterior_sha256[:12]}"
        )
    if card.get("calibration_sha256") != digest:
        problems.append("it was distilled under another calibration of the posterior")
    columns = head_columns(posterior)
    # Heads distilled before the burst-shape statistics record no columns: they read the 24 of that context.
    fitted_on = card.get("contexts", {flow: list(BASE_CONTEXT_NAMES) for flow in FLOWS})
    if fitted_on != column_names(columns):
        problems.append("it reads other context columns than this posterior's reported draws depend on")
    if problems:
        _logger.warning(
            "summary head %s refused (%s): posterior summaries are sampled instead; refit it with "
            "`python benchmarks/summary_head.py fit --model %s`",
            weights_path,
            "; ".join(problems),
            model_name,
        )
        return None
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    sampled = set(SAMPLED_FLOWS.get(model_name, ()))
    if posterior.card.get("rescaling"):  # the joint draws are then read from rescaled trains, which no head sees
        sampled.add("joint")
    return SummaryHead(state, card, head_scaling(posterior, columns), tuple(sorted(sampled)), columns)


# ------------------------------------------------------------------------------------------------------- fitting
def distillation_targets(posterior, context: np.ndarray, flow: str, samples: int, seed: int, batch: int = 256):
    """(n, p, 6) standardised statistics of ``samples`` calibrated draws of the flow per context row."""
    scaling = posterior.scaling[flow]
    out = np.empty((len(context), len(FLOWS[flow]), len(STATISTICS)))
    for start in range(0, len(context), batch):  # bounded memory: samples rows per context
        rows = slice(start, start + batch)
        out[rows] = sampled_statistics(posterior.sample(context[rows], samples, flow, seed, calibrated=True))
    out[..., :5] = (out[..., :5] - scaling["target_mean"][:, None]) / scaling["target_std"][:, None]
    out[..., 5] /= scaling["target_std"]
    return out


def fit_head(
    context: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    scaling: dict,
    seed: int = 0,
    hidden: tuple = (96, 96, 96),
    epochs: int = 300,
    patience: int = 20,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    time_budget_s: float = 600.0,
) -> tuple[dict, dict]:
    """Fit one flow's head on (context rows, standardised statistics from :func:`distillation_targets`).

    A tenth of the population targets (``groups``) is held out for validation; training stops after ``patience``
    epochs without a better validation loss (or at ``epochs``, or ``time_budget_s``) and keeps the best weights.
    Same data and seed, same head. Returns (state dict, metrics).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    validation = np.isin(groups, rng.choice(unique, size=max(1, len(unique) // 10), replace=False))
    standardised = (np.asarray(context, np.float32) - scaling["context_mean"]) / scaling["context_std"]
    xs = torch.from_numpy(standardised.astype(np.float32))
    ys = torch.from_numpy(targets.astype(np.float32))
    # The loss's unit per row and parameter: the target's own posterior sd. (Its 16-84 % half-width where smaller, to
    # weight ln k's sharp peak at the prior's point mass, made DA's heads worse: early stop at 155 epochs, g_s/g_u
    # errors 0.13-0.20 sd instead of 0.09-0.12.)
    scale = torch.clamp(ys[..., 5:6], min=SD_FLOOR)
    n_parameters = targets.shape[1]
    head = _build_head(xs.shape[1], n_parameters, hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=1e-5)
    train_rows = torch.from_numpy(np.flatnonzero(~validation))
    validation_rows = torch.from_numpy(np.flatnonzero(validation))
    steps = max(1, len(train_rows) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    generator = torch.Generator().manual_seed(seed)

    def loss_of(rows):
        error = (_statistics_from_raw(head(xs[rows]), n_parameters) - ys[rows]) / scale[rows]
        return error.square().mean(), error

    best, best_state, history, waited = math.inf, None, [], 0
    started = time.perf_counter()
    for _ in range(epochs):
        head.train()
        order = train_rows[torch.randperm(len(train_rows), generator=generator)]
        for start in range(0, steps * batch_size, batch_size):
            loss, _ = loss_of(order[start : start + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        head.eval()
        with torch.no_grad():
            loss, error = loss_of(validation_rows)
        history.append(float(loss))
        if float(loss) < best:
            best, waited = float(loss), 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
            best_error = error.abs().numpy()
        else:
            waited += 1
        if waited >= patience or time.perf_counter() - started > time_budget_s:
            break
    metrics = {
        "validation_loss": best,
        "epochs": len(history),
        "n_train": int((~validation).sum()),
        "n_validation": int(validation.sum()),
        # Median |head - sampled target| in posterior sds per parameter and statistic: includes the targets' own
        # sampling noise (~0.07 sd for the median with 200 draws).
        "validation_median_abs_error_sd": np.median(best_error, axis=0).round(4).tolist(),
        "seconds": time.perf_counter() - started,
    }
    return best_state, metrics


def fit_summary_head(
    posterior,
    examples: dict,
    out_dir,
    model_name: str,
    samples: int = 200,
    seed: int = 0,
    hidden: tuple = (96, 96, 96),
    time_budget_s: float = 600.0,
    recipe: dict | None = None,
    epochs: int = 300,
    patience: int = 20,
) -> dict:
    """Distil both flows of ``posterior`` into heads and write ``<model>_summary.pt/.json`` in ``out_dir``.

    ``examples``: contexts per flow and population groups (:func:`.posterior.augmented_examples` output). The card
    records the posterior it was distilled from (weights sha256, calibration digest), sizes, seconds and validation
    errors. ``epochs`` and ``time_budget_s``: per head (:func:`fit_head`; a stop by time budget is not
    deterministic). Returns the card.
    """
    import torch

    started = time.perf_counter()
    state, metrics = {}, {}
    columns = head_columns(posterior)
    scaling = head_scaling(posterior, columns)
    for index, flow in enumerate(FLOWS):
        flow_started = time.perf_counter()
        targets = distillation_targets(posterior, examples[flow], flow, samples, seed + index)
        target_seconds = time.perf_counter() - flow_started
        head_state, metrics[flow] = fit_head(
            read_context_columns(examples[flow], columns[flow]),
            targets,
            examples["groups"],
            scaling[flow],
            seed,
            hidden,
            epochs=epochs,
            patience=patience,
            time_budget_s=time_budget_s,
        )
        metrics[flow]["target_seconds"] = target_seconds
        state.update({f"{flow}.{k}": v for k, v in head_state.items()})
    card = {
        "model": model_name,
        "kind": "MLP heads distilled from the calibrated posterior flows' sampled marginal summaries",
        "flows": list(FLOWS),
        "statistics": list(STATISTICS),
        "quantiles": list(QUANTILES),
        "config": {"hidden": list(hidden), "activation": "SiLU", "sd_floor": SD_FLOOR},
        "posterior_weights_sha256": posterior.weights_sha256,
        "calibration_sha256": calibration_digest(posterior.card),
        "contexts": column_names(columns),
        "distillation": {
            "n_contexts": int(len(examples["groups"])),
            "samples_per_context": int(samples),
            "seed": seed,
            "patience": patience,
            "seconds": time.perf_counter() - started,
            "torch_threads": torch.get_num_threads(),
            **(recipe or {}),
        },
        "metrics": metrics,
    }
    return write_summary_head(out_dir, model_name, state, card)


def write_summary_head(out_dir, model_name: str, state: dict, card: dict) -> dict:
    """Write ``<model>_summary.pt`` and its card (with the file's sha256); a temporary file first, so a failed write
    never leaves a half-written head behind."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = head_paths(out_dir, model_name)
    temporary = weights_path.with_suffix(".tmp")
    torch.save({k: v.contiguous() for k, v in state.items()}, temporary)
    card = {**card, "weights_sha256": hashlib.sha256(temporary.read_bytes()).hexdigest()}
    temporary.replace(weights_path)
    card_path.write_text(json.dumps(card, indent=2, default=str))
    _load_head.cache_clear()
    return card
