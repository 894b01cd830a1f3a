"""The composed job: spike trains -> DICs and time scale -> twin populations -> simulated twins -> fidelity.

Every front end (SpikeInterface extensions, NWB, CLI, web app, Dask) calls :func:`run_pipeline`.

Cost model: inference is one batched forward pass (see :mod:`.inference.predict`); populations cost ~2-8 ms per
1,000 twins; the simulation dominates: sum over kernel calls of rows x steps, with steps = (transient + recording) / dt
in model time. Twins of a unit with time scale k are simulated in the model's own time and their spike times
multiplied by k (exact, see :mod:`.simulate`), so a unit needs a window of duration / k in model time; units whose
windows are within 25 % of each other share one kernel call, so a fast unit does not lengthen every row. Twin
selection adds, per unit with non-matching twins, about 1.5 x (missing twins) / (acceptance) candidate rows.
"""

from __future__ import annotations

import datetime
import hashlib
import time

import numpy as np
import pandas as pd

from . import __version__
from .features import isi_distance, pattern_matches, spike_train_features
from .models import get_model
from .result import PipelineResult


def unit_child_seed(seed: int, unit_id) -> int:
    """Seed of one unit's random steps: a function of (seed, unit id) only, so results do not depend on batching,
    unit order, the number of workers or Dask."""
    digest = hashlib.sha256(str(unit_id).encode()).digest()
    return int(np.random.SeedSequence([int(seed), int.from_bytes(digest[:8], "little")]).generate_state(1)[0])


def _progress(iterable, enabled: bool, description: str, total=None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, total=total, disable=not enabled)


def run_pipeline(
    spike_trains,
    model="stg",
    population_size: int = 100,
    simulate: bool = True,
    seed: int = 0,
    duration_s: float | None = None,
    noise_std: float = 0.0,
    device: str = "cpu",
    frequency_tolerance: float = 0.10,
    spikes_per_burst_tolerance: float = 1.0,
    adapt_time_scale: bool = True,
    twin_selection: bool = True,
    progress_bar: bool = False,
    client=None,
    estimates: pd.DataFrame | None = None,
    time_scale=None,
) -> PipelineResult:
    """Run the whole method on a batch of units.

    Parameters
    ----------
    spike_trains : dict | list of array_like
        Spike times in seconds ({unit_id: times} keeps the unit ids; a list gets ids 0..n-1).
    model : "stg" | "da", default: "stg"
    population_size : int, default: 100
        Twins per unit.
    simulate : bool, default: True
        Simulate the twins and score their fidelity against the recorded trains.
    seed : int, default: 0
        Every random step derives from it (per-unit child seeds from the unit id), so results do not depend on
        batching or workers.
    duration_s : float, default: None
        Recorded window of each twin in seconds of real time; None uses the model's default window (3 s for STG,
        9 s for DA) in the model's own time, i.e. 3 k s for a unit with time scale k.
    noise_std : float, default: 0.0
        Noisy current injected into the twins (uA/cm2).
    adapt_time_scale : bool, default: True
        After simulating the twins at the network's time scale k, rescale k by (median twin main frequency /
        recorded main frequency) when most twins fire in the recorded pattern. Time scaling is exact, so this only
        rescales the twins' spike times (no new simulation). It fits one number per unit to the recorded main
        frequency: ``fidelity`` then also reports ``fraction_matching_network_time_scale`` (before adaptation), and
        ``estimates`` keeps ``time_scale_network``; ``time_scale_std`` becomes the spread implied by the twins.
    twin_selection : bool, default: True
        Replace twins that do not fire in the unit's pattern by matching members drawn for the same DICs
        (:func:`.twin_selection.select_matching_twins`); ``fidelity`` keeps ``fraction_matching_before_selection``
        (what a plain degenerate population gives) and the candidates' acceptance. False returns the first population.
    client : dask.distributed.Client, default: None
        Spread units over a Dask cluster (see :mod:`.distributed`); same results as without.
    estimates : pandas.DataFrame, default: None
        :func:`infer_dics` output covering these units, to skip the inference. :mod:`.distributed` infers the whole
        batch once and passes each chunk its rows, because the network's float32 outputs vary in the 7th digit with
        the batch they are computed in, and chaotic twins amplify that.
    time_scale : None | float | sequence | dict, default: None
        Known time scales, passed to :func:`infer_dics` (set ``adapt_time_scale=False`` to keep them as given).
    """
    if client is not None:
        from .distributed import run_pipeline_dask

        return run_pipeline_dask(
            spike_trains,
            client=client,
            model=model,
            population_size=population_size,
            simulate=simulate,
            seed=seed,
            duration_s=duration_s,
            noise_std=noise_std,
            frequency_tolerance=frequency_tolerance,
            spikes_per_burst_tolerance=spikes_per_burst_tolerance,
            adapt_time_scale=adapt_time_scale,
            twin_selection=twin_selection,
            time_scale=time_scale,
        )
    from .inference.predict import infer_dics, load_predictor

    model = get_model(model)
    if int(population_size) < 1:
        raise ValueError(f"population_size must be >= 1; got {population_size}")
    if not isinstance(spike_trains, dict):
        spike_trains = dict(enumerate(spike_trains))
    timings = {}
    started = time.perf_counter()
    if estimates is None:
        estimates = infer_dics(spike_trains, model=model, device=device, time_scale=time_scale)
    else:
        estimates = estimates.loc[list(spike_trains)].copy()
    timings["inference_s"] = time.perf_counter() - started

    started = time.perf_counter()
    populations, population_errors = {}, {}
    unit_ids = list(estimates.index)
    for unit_id in _progress(unit_ids, progress_bar, "populations"):
        if not np.isfinite(estimates.loc[unit_id, "g_s"]):
            continue
        gbar, _, _, error = unit_population(model, unit_id, estimates.loc[unit_id], population_size, seed)
        if gbar is None:
            population_errors[unit_id] = error
        else:
            populations[unit_id] = gbar
    estimates["population_error"] = [population_errors.get(u, "") for u in unit_ids]
    timings["populations_s"] = time.perf_counter() - started

    twin_trains, fidelity = {}, pd.DataFrame()
    if simulate and populations:
        started = time.perf_counter()
        twin_trains = simulate_twins(model, populations, estimates, duration_s, noise_std, seed)
        timings["simulation_s"] = time.perf_counter() - started
        started = time.perf_counter()
        twin_trains, fidelity = score_twins(
            spike_trains, twin_trains, estimates, frequency_tolerance, spikes_per_burst_tolerance, adapt_time_scale
        )
        timings["fidelity_s"] = time.perf_counter() - started
        if twin_selection:
            from .twin_selection import select_matching_twins

            started = time.perf_counter()
            populations, twin_trains, fidelity = select_matching_twins(
                model,
                spike_trains,
                populations,
                twin_trains,
                estimates,
                fidelity,
                duration_s,
                noise_std,
                seed,
                frequency_tolerance,
                spikes_per_burst_tolerance,
            )
            timings["selection_s"] = time.perf_counter() - started

    predictor = load_predictor(model.name)
    parameters = {
        "model": model.name,
        "population_size": int(population_size),
        "simulate": bool(simulate),
        "seed": int(seed),
        "duration_s": duration_s,
        "noise_std": float(noise_std),
        "frequency_tolerance": frequency_tolerance,
        "spikes_per_burst_tolerance": spikes_per_burst_tolerance,
        "dt_ms": model.default_dt_ms,
        "adapt_time_scale": bool(adapt_time_scale),
        "twin_selection": bool(twin_selection),
    }
    provenance = {
        "package": "spikeinterface-dic",
        "version": __version__,
        "weights_sha256": predictor.weights_sha256,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timings": timings,
    }
    return PipelineResult(
        model_name=model.name,
        conductance_names=tuple(model.conductance_names),
        estimates=estimates,
        populations=populations,
        twin_spike_trains=twin_trains,
        fidelity=fidelity,
        parameters=parameters,
        provenance=provenance,
    )


def population_targets(model, estimate) -> tuple[float, float]:
    """(g_s, g_u) a unit's population is generated for: its estimate clipped to the region the network was trained
    on (and the generator reaches; g_u >= 0.5)."""
    g_s_range, g_u_range = model.extra["training_g_s"], model.extra["training_g_u"]
    return (
        float(np.clip(estimate["g_s"], *g_s_range)),
        float(np.clip(estimate["g_u"], max(g_u_range[0], 0.5), g_u_range[1])),
    )


def unit_population(model, unit_id, estimate, population_size: int, seed: int):
    """One unit's twin population: (gbar or None, target g_s, target g_u, error message or "")."""
    from .population import generate_population

    model = get_model(model)
    if not np.isfinite(estimate["g_s"]):
        return None, np.nan, np.nan, f"no DIC estimate: {estimate.get('ood_reason', '')}"
    g_s, g_u = population_targets(model, estimate)
    try:
        population = generate_population(
            model, g_s=g_s, g_u=g_u, n=int(population_size), seed=unit_child_seed(seed, unit_id)
        )
    except ValueError as error:
        return None, g_s, g_u, str(error)
    return population.gbar, g_s, g_u, ""


def score_twins(
    spike_trains,
    twin_trains,
    estimates,
    frequency_tolerance: float = 0.10,
    spikes_per_burst_tolerance: float = 1.0,
    adapt_time_scale: bool = True,
):
    """Fidelity of simulated twins against the recorded trains, after optional time-scale adaptation.

    Adds ``time_scale_network`` to ``estimates`` and rewrites the time scales it adapts (see run_pipeline).
    Returns (twin trains, possibly rescaled; fidelity DataFrame).
    """
    estimates["time_scale_network"] = estimates["time_scale"]
    unadapted = None
    if adapt_time_scale:
        unadapted = _fidelity(spike_trains, twin_trains, frequency_tolerance, spikes_per_burst_tolerance)
        twin_trains = _adapt_time_scales(spike_trains, twin_trains, estimates)
    fidelity = _fidelity(spike_trains, twin_trains, frequency_tolerance, spikes_per_burst_tolerance)
    fidelity["fraction_matching_network_time_scale"] = (
        unadapted["fraction_matching"] if unadapted is not None else fidelity["fraction_matching"]
    )
    return twin_trains, fidelity


# Model time simulated past the longest window: a spike is counted on its downstroke, so without a margin a spike
# starting at the end of a unit's window would be kept or lost depending on the other units in the batch.
SPIKE_MARGIN_MS = 50.0


def simulate_twins(
    model, populations, estimates, duration_s=None, noise_std: float = 0.0, seed: int = 0, selection_round: int = 0
) -> dict:
    """Simulate every unit's twins at its time scale, units with similar windows in one kernel call (run_pipeline).

    ``selection_round`` > 0 simulates the candidates of :func:`.twin_selection.select_matching_twins` with noise
    seeds of their own.
    """
    from .simulate import simulate as run_simulation

    model = get_model(model)
    unit_ids = list(populations)
    time_scales = np.array([float(estimates.loc[u, "time_scale"]) for u in unit_ids])
    time_scales = np.clip(np.nan_to_num(time_scales, nan=1.0), 0.05, 50.0)
    transient_ms = model.default_transient_ms
    if duration_s is None:
        record_ms = np.full(len(unit_ids), model.default_duration_ms - transient_ms)
    else:
        record_ms = 1000.0 * float(duration_s) / time_scales  # model time needed by each unit
    row_seeds = {
        u: np.random.SeedSequence(
            unit_child_seed(seed, u) if selection_round == 0 else [unit_child_seed(seed, u), selection_round]
        ).generate_state(len(populations[u]), dtype=np.uint64)
        for u in unit_ids
    }
    out = {}
    # Units needing similar windows share a kernel call: every row of a call is integrated over the call's longest
    # window, so one fast unit (small k, long model-time window) would otherwise set the cost of all rows. Calls are
    # also cut at ROWS_PER_KERNEL_CALL rows (whole units), which bounds the kernel's spike buffers.
    for group in _row_chunks(_window_groups(record_ms), [len(populations[u]) for u in unit_ids]):
        ids = [unit_ids[j] for j in group]
        trains = run_simulation(
            model,
            np.concatenate([populations[u] for u in ids]),
            duration_s=(transient_ms + record_ms[group].max() + SPIKE_MARGIN_MS) / 1000.0,
            transient_s=transient_ms / 1000.0,
            noise_std=noise_std,
            seed=np.concatenate([row_seeds[u] for u in ids]),
        )
        start = 0
        for j, unit_id in zip(group, ids, strict=True):
            size = len(populations[unit_id])
            out[unit_id] = [t[t < record_ms[j] / 1000.0] * time_scales[j] for t in trains[start : start + size]]
            start += size
    return {u: out[u] for u in unit_ids}


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


def _adapt_time_scales(spike_trains, twin_trains, estimates) -> dict:
    """Rescale each unit's k so that its twins' median main frequency equals the recorded one (see run_pipeline)."""
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
        spread = float(np.std(np.log(twin_frequency))) if twin_frequency.size > 1 else np.nan
        estimates.loc[unit_id, ["time_scale", "time_scale_std", "time_scale_low", "time_scale_high"]] = [
            k,
            k * spread,
            k * np.exp(-spread),
            k * np.exp(spread),
        ]
        window = max((t[-1] if t.size else 0.0) for t in twins) if twins else 0.0
        adapted[unit_id] = [t * ratio for t in twins] if ratio <= 1 else [t[t * ratio <= window] * ratio for t in twins]
    return adapted


def _fidelity(spike_trains, twin_trains, frequency_tolerance, spikes_per_burst_tolerance) -> pd.DataFrame:
    rows = {}
    recorded = spike_train_features({u: np.asarray(spike_trains[u], dtype=float) for u in twin_trains})
    for unit_id, twins in twin_trains.items():
        reference = recorded.loc[unit_id]
        twin_features = spike_train_features(twins)
        try:
            matches = pattern_matches(reference, twin_features, frequency_tolerance, spikes_per_burst_tolerance)
            fraction = float(np.mean(matches))
        except ValueError:
            fraction = float("nan")  # the recorded train has no main frequency (e.g. a single burst)
        distances = [isi_distance(spike_trains[unit_id], twin) for twin in twins]
        rows[unit_id] = {
            "fraction_matching": fraction,
            "n_twins": len(twins),
            "twin_label_fraction": float(np.mean(twin_features["label"].to_numpy() == reference["label"])),
            "median_isi_distance": float(np.nanmedian(distances)) if np.isfinite(distances).any() else np.nan,
            "main_frequency_hz": float(reference["main_frequency_hz"]),
            "twin_main_frequency_hz": float(np.nanmedian(twin_features["main_frequency_hz"]))
            if np.isfinite(twin_features["main_frequency_hz"]).any()
            else np.nan,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "unit_id"
    return frame
