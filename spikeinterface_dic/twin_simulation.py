"""The twins' building blocks: per-unit seeds, populations, simulation at each unit's time scale, fidelity and
time-scale adaptation. :mod:`.twin_selection` and :mod:`.twin_stage` compose them.

Cost model: populations cost ~2-8 ms per 1,000 twins; the simulation dominates: sum over kernel calls of
rows x steps, with steps = (transient + recording) / dt in model time. Twins of a unit with time scale k are simulated
in the model's own time and their spike times multiplied by k (exact, see :mod:`.simulate`), so a unit needs a
window of duration / k in model time; units whose windows are within 25 % of each other share one kernel call, so a
fast unit does not lengthen every row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .features import isi_distance, pattern_matches, spike_train_features


def unit_child_seed(seed: int, unit_id) -> int:
    """Seed of one unit's random steps: a function of (seed, unit id) only, so results do not depend on batching,
    unit order, the number of workers or Dask."""
    digest = hashlib.sha256(str(unit_id).encode()).digest()
    return int(np.random.SeedSequence([int(seed), int.from_bytes(digest[:8], "little")]).generate_state(1)[0])


def population_targets(model, estimate) -> tuple[float, float]:
    """(g_s, g_u) a unit's population is generated for: its estimate clipped to the region the model's network was
    trained on, where the model declares one (``extra["training_g_s"]``, ``["training_g_u"]``), and g_u >= 0.5, the
    lowest target the generator reaches."""
    g_s_range = model.extra.get("training_g_s", (-np.inf, np.inf))
    g_u_range = model.extra.get("training_g_u", (-np.inf, np.inf))
    return (
        float(np.clip(estimate["g_s"], *g_s_range)),
        float(np.clip(estimate["g_u"], max(g_u_range[0], 0.5), g_u_range[1])),
    )


def unit_population(config, unit_id, estimate, size: int | None = None, selection_round: int = 0):
    """One unit's population: (gbar or None, target g_s, target g_u, error message or "").

    ``size`` defaults to ``config.population_size``; ``selection_round`` > 0 draws twin-selection candidates for the
    same target with a seed of their own.
    """
    from .population import generate_population

    model = config.model_declaration
    if not np.isfinite(estimate["g_s"]):
        return None, np.nan, np.nan, f"no DIC estimate: {estimate.get('ood_reason', '')}"
    if estimate.get("label") == "irregular":
        # A deterministic model neuron fires periodically; it cannot stand for a noise-driven train, and scoring
        # such twins would report a fidelity that means nothing.
        return None, np.nan, np.nan, "irregular firing: a deterministic twin cannot reproduce a noise-driven train"
    g_s, g_u = population_targets(model, estimate)
    seed = unit_child_seed(config.seed, unit_id)
    if selection_round:
        seed = int(np.random.SeedSequence([seed, selection_round]).generate_state(1)[0])
    try:
        population = generate_population(model, g_s=g_s, g_u=g_u, n=int(size or config.population_size), seed=seed)
    except ValueError as error:
        # The CLI and the app use the model's declared compensation channels; other channels need the Python API.
        return None, g_s, g_u, f"{error} (other compensation channels: generate_population(..., channels=...))"
    return population.gbar, g_s, g_u, ""


def score_twins(config, recorded_trains, twin_trains, estimates):
    """Fidelity of simulated twins against the recorded trains, after time-scale adaptation of the units whose k was
    estimated (when ``config.adapt_time_scale``; a known k is kept as given).

    Adds ``time_scale_network`` to ``estimates`` and rewrites the time scales it adapts (see run_pipeline).
    Returns (twin trains, possibly rescaled; fidelity DataFrame).
    """
    estimates["time_scale_network"] = estimates["time_scale"]
    fidelity = fidelity_table(config, recorded_trains, twin_trains)
    adaptable = [u for u in twin_trains if np.isnan(config.known_time_scale(u))] if config.adapt_time_scale else []
    fidelity["fraction_matching_network_time_scale"] = fidelity["fraction_matching"]
    if adaptable:
        adapted = adapt_time_scales(
            recorded_trains, {u: twin_trains[u] for u in adaptable}, estimates, config.time_scale_range
        )
        twin_trains = {**twin_trains, **adapted}
        rescored = fidelity_table(config, recorded_trains, adapted)
        for column in rescored.columns:
            fidelity.loc[adaptable, column] = rescored.loc[adaptable, column].to_numpy()
    return twin_trains, fidelity


# Model time simulated past the longest window: a spike is counted on its downstroke, so without a margin a spike
# starting at the end of a unit's window would be kept or lost depending on the other units in the batch.
SPIKE_MARGIN_MS = 50.0


# Time scales the twins are simulated at (k outside is clipped): beyond them the model-time windows get absurd.
SIMULATED_TIME_SCALES = (0.05, 50.0)


def twin_time_scales(estimates, unit_ids) -> np.ndarray:
    """k of each unit's twins: its estimate, NaN read as 1, clipped to SIMULATED_TIME_SCALES."""
    time_scales = np.array([float(estimates.loc[u, "time_scale"]) for u in unit_ids])
    return np.clip(np.nan_to_num(time_scales, nan=1.0), *SIMULATED_TIME_SCALES)


def simulate_twins(config, populations, estimates, selection_round: int = 0) -> dict:
    """Simulate every unit's twins at its time scale, units with similar windows in one kernel call.

    ``selection_round`` > 0 simulates the candidates of :func:`.twin_selection.select_matching_twins` with noise
    seeds of their own.
    """
    unit_ids = list(populations)
    time_scales = twin_time_scales(estimates, unit_ids)
    row_seeds = [
        np.random.SeedSequence(
            unit_child_seed(config.seed, u)
            if selection_round == 0
            else [unit_child_seed(config.seed, u), selection_round]
        ).generate_state(len(populations[u]), dtype=np.uint64)
        for u in unit_ids
    ]
    trains = simulate_rows(
        config,
        np.concatenate([populations[u] for u in unit_ids]),
        np.repeat(time_scales, [len(populations[u]) for u in unit_ids]),
        np.concatenate(row_seeds),
    )
    out, start = {}, 0
    for unit_id in unit_ids:
        out[unit_id] = trains[start : start + len(populations[unit_id])]
        start += len(populations[unit_id])
    return out


def simulate_rows(config, gbar: np.ndarray, time_scales: np.ndarray, seeds: np.ndarray) -> list[np.ndarray]:
    """Spike trains (s, real time) of twins with conductances ``gbar`` (rows), each at its own time scale k and with
    its own noise seed; the recorded window is ``config.duration_s`` of real time (None: the model's default window
    in its own time).

    Each row is integrated in the model's own time over its window / k and its spike times multiplied by k (exact,
    see :mod:`.simulate`). Rows needing similar windows share a kernel call: every row of a call is integrated over
    the call's longest window, so one fast row (small k, long model-time window) would otherwise set the cost of all
    rows; calls are also cut at ROWS_PER_KERNEL_CALL rows, which bounds the kernel's spike buffers. Results do not
    depend on the grouping: rows are independent, and each keeps only the spikes of its own window.
    """
    from .simulate import simulate as run_simulation

    model = config.model_declaration
    time_scales = np.clip(np.nan_to_num(np.asarray(time_scales, dtype=float), nan=1.0), *SIMULATED_TIME_SCALES)
    transient_ms = model.default_transient_ms
    if config.duration_s is None:
        record_ms = np.full(len(gbar), model.default_duration_ms - transient_ms)
    else:
        record_ms = 1000.0 * config.duration_s / time_scales  # model time needed by each row
    out: list = [None] * len(gbar)
    for rows in _row_chunks(_window_groups(record_ms), [1] * len(gbar)):
        trains = run_simulation(
            model,
            gbar[rows],
            duration_s=(transient_ms + record_ms[rows].max() + SPIKE_MARGIN_MS) / 1000.0,
            transient_s=transient_ms / 1000.0,
            noise_std=config.noise_std_uA_cm2,
            seed=np.asarray(seeds, dtype=np.uint64)[rows],
        )
        for row, train in zip(rows, trains, strict=True):
            out[row] = train[train < record_ms[row] / 1000.0] * time_scales[row]
    return out


# Largest ratio of the longest to the shortest recording window (model time) of units that share a kernel call.
WINDOW_GROUP_RATIO = 1.25


# Rows per kernel call: the spike buffer is rows x (window x max_rate_hz) doubles (4,096 rows of a 3 s window at
# 1 kHz: ~100 MB).
ROWS_PER_KERNEL_CALL = 4096


def _row_chunks(groups: list[np.ndarray], sizes: list[int]) -> list[np.ndarray]:
    """Split each group of unit indices into consecutive chunks of at most ROWS_PER_KERNEL_CALL rows (a unit larger
    than that gets a chunk of its own)."""
    chunks = []
    for group in groups:
        current, rows = [], 0
        for j in group:
            if current and rows + sizes[j] > ROWS_PER_KERNEL_CALL:
                chunks.append(np.array(current))
                current, rows = [], 0
            current.append(j)
            rows += sizes[j]
        if current:
            chunks.append(np.array(current))
    return chunks


def _window_groups(record_ms: np.ndarray) -> list[np.ndarray]:
    """Indices of units grouped by recording window: within a group, longest <= WINDOW_GROUP_RATIO x shortest.

    Results do not depend on the grouping: rows are independent, and each unit keeps only spikes in its own window.
    """
    order = np.argsort(record_ms, kind="stable")
    groups, current = [], []
    for j in order:
        if current and record_ms[j] > WINDOW_GROUP_RATIO * record_ms[current[0]]:
            groups.append(np.array(current))
            current = []
        current.append(j)
    if current:
        groups.append(np.array(current))
    return groups


def adapt_time_scales(spike_trains, twin_trains, estimates, k_range: tuple | None = None) -> dict:
    """Rescale each unit's k so that its twins' median main frequency equals the recorded one (see run_pipeline);
    never out of the user's ``k_range``."""
    adapted = {}
    recorded = spike_train_features({u: np.asarray(spike_trains[u], dtype=float) for u in twin_trains})
    for unit_id, twins in twin_trains.items():
        adapted[unit_id] = twins
        reference = recorded.loc[unit_id]
        features = spike_train_features(twins)
        same = features["label"].to_numpy() == reference["label"]
        twin_frequency = features["main_frequency_hz"].to_numpy()[same]
        twin_frequency = twin_frequency[np.isfinite(twin_frequency)]
        if same.mean() < 0.5 or not np.isfinite(reference["main_frequency_hz"]) or twin_frequency.size == 0:
            continue
        ratio = float(np.median(twin_frequency) / reference["main_frequency_hz"])
        k = float(estimates.loc[unit_id, "time_scale"]) * ratio
        if k_range is not None and not k_range[0] <= k <= k_range[1]:
            continue  # what the user knows of k wins over the twins' frequency
        # The calibrated uncertainty of ln k (the network's, or the library's) is kept: the twins' spread of
        # frequencies is far narrower (about 0.04 in ln k) and says how alike the twins are, not how well the train
        # fixes k (it made condition comparisons report p = 1e-160).
        log_k_std = float(estimates.loc[unit_id, "time_scale_std"]) / float(estimates.loc[unit_id, "time_scale"])
        estimates.loc[unit_id, ["time_scale", "time_scale_std", "time_scale_low", "time_scale_high"]] = [
            k,
            k * log_k_std,
            k * np.exp(-log_k_std),
            k * np.exp(log_k_std),
        ]
        window = max((t[-1] if t.size else 0.0) for t in twins) if twins else 0.0
        adapted[unit_id] = [t * ratio for t in twins] if ratio <= 1 else [t[t * ratio <= window] * ratio for t in twins]
    return adapted


def fidelity_table(config, spike_trains, twin_trains) -> pd.DataFrame:
    """Per-unit fidelity of twins against the recorded trains (columns: see :data:`.schema.TWIN_COLUMNS`)."""
    rows = {}
    recorded = spike_train_features({u: np.asarray(spike_trains[u], dtype=float) for u in twin_trains})
    for unit_id, twins in twin_trains.items():
        reference = recorded.loc[unit_id]
        twin_features = spike_train_features(twins)
        note = ""
        try:
            matches = pattern_matches(reference, twin_features, **config.pattern_tolerances())
            fraction = float(np.mean(matches))
        except ValueError:
            fraction = float("nan")
            note = (
                f"the recorded train ({reference['label']}, {int(reference['n_spikes'])} spikes) has no main "
                "frequency to match (e.g. a single burst)"
            )
        distances = [isi_distance(spike_trains[unit_id], twin) for twin in twins]
        rows[unit_id] = {
            "fraction_matching": fraction,
            "n_twins": len(twins),
            "twin_label_fraction": float(np.mean(twin_features["label"].to_numpy() == reference["label"])),
            "median_isi_distance": float(np.nanmedian(distances)) if np.isfinite(distances).any() else np.nan,
            "fidelity_note": note,
            "main_frequency_hz": float(reference["main_frequency_hz"]),
            "twin_main_frequency_hz": float(np.nanmedian(twin_features["main_frequency_hz"]))
            if np.isfinite(twin_features["main_frequency_hz"]).any()
            else np.nan,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "unit_id"
    return frame
