"""The twin stage: DIC estimates + recorded trains + configuration -> populations, twin trains, fidelity.

:func:`~spikeinterface_dic.run_pipeline` and the SpikeInterface "twin_populations" extension both call
:func:`run_twin_stage`, so a unit gets the same twins and the same scores by either path. Every random step of a
unit derives from (seed, unit id) and the kernel's rows are independent, so the result does not depend on the other
units, on their order, on chunking or on threads.

Cost model: see :mod:`.twin_simulation` (simulation dominates) and :mod:`.twin_selection` (extra candidates, only
for units whose first population is not fully matching).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import RunConfig
from .twin_posterior import run_posterior_twins
from .twin_selection import select_matching_twins
from .twin_simulation import ROWS_PER_KERNEL_CALL, score_twins, simulate_twins, twin_time_scales, unit_population


def remove_refractory_violations(train, refractory_ms: float) -> np.ndarray:
    """Sorted ``train`` without the second spike of every ISI shorter than ``refractory_ms`` (the rule inference
    applies before reading a train)."""
    train = np.sort(np.asarray(train, dtype=np.float64))
    if train.size == 0:
        return train
    return train[np.concatenate([[True], np.diff(train) >= refractory_ms / 1000.0])]


def recorded_train(segments, refractory_ms: float) -> np.ndarray:
    """The train a unit's twins are compared with: its segment with most spikes (a bare array is one segment),
    refractory violations removed."""
    if isinstance(segments, np.ndarray) and segments.dtype != object:
        segments = [segments]
    cleaned = [remove_refractory_violations(train, refractory_ms) for train in segments]
    if not cleaned:
        return np.empty(0)
    return cleaned[int(np.argmax([train.size for train in cleaned]))]


@contextlib.contextmanager
def kernel_threads(n_jobs: int | None):
    """Run the numba simulation kernel on ``n_jobs`` threads (None: leave numba's setting; results do not depend on
    it: rows are independent)."""
    if n_jobs is None:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_jobs), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@dataclass
class TwinStageResult:
    """What the twin stage produced.

    Attributes
    ----------
    estimates : pandas.DataFrame
        The input estimates of the stage's units plus ``target_g_s``, ``target_g_u``, ``population_error`` and,
        when simulated, ``time_scale_network`` (k before adaptation; ``time_scale`` is the final k).
    populations : dict
        {unit_id: (population_size, n_channels) mS/cm2} for the units with a population (after twin selection).
    twin_trains : dict
        {unit_id: list of spike-time arrays (s)}; empty when not simulated.
    fidelity : pandas.DataFrame
        One row per simulated unit (columns: :data:`.schema.TWIN_COLUMNS`).
    twin_parameters : dict
        {unit_id: (population_size, 3) array}: each twin's (g_s, g_u, k) (:data:`.schema.MEMBER_COLUMNS`); with
        ``twin_sampling="point"`` every twin has its unit's target and time scale.
    timings : dict
        Seconds per step.
    """

    estimates: pd.DataFrame
    populations: dict
    twin_trains: dict = field(default_factory=dict)
    fidelity: pd.DataFrame = field(default_factory=pd.DataFrame)
    twin_parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def twin_time_scales(self) -> dict:
        """{unit_id: k of the twins' spike times (their median when each twin has its own)} for the units with a
        population."""
        return {u: float(np.median(self.twin_parameters[u][:, 2])) for u in self.populations}


# The time-scale columns the twin stage may rewrite (adaptation), with the network's k kept beside them.
FINAL_TIME_SCALE_COLUMNS = ("time_scale", "time_scale_std", "time_scale_low", "time_scale_high", "time_scale_network")


def _flag_adapted_time_scales(estimates: pd.DataFrame) -> None:
    """``in_distribution`` judges the final k: a unit whose adapted k left the modelled range is flagged."""
    from .inference.predict import K_RANGE

    low, high = K_RANGE[0] / 1.5, K_RANGE[1] * 1.5  # the tolerance infer_dics applies to the network's k
    for unit_id in estimates.index:
        k, network_k = estimates.loc[unit_id, "time_scale"], estimates.loc[unit_id, "time_scale_network"]
        if not np.isfinite(k) or k == network_k or low <= k <= high:
            continue
        reason = f"adapted time scale k = {k:.3g} is outside the modelled range [{K_RANGE[0]}, {K_RANGE[1]}]"
        previous = str(estimates.loc[unit_id, "ood_reason"] or "")
        estimates.loc[unit_id, "ood_reason"] = f"{previous}; {reason}" if previous else reason
        estimates.loc[unit_id, "in_distribution"] = False


def _progress(total: int, enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not enabled)


def run_twin_stage(
    estimates: pd.DataFrame,
    recorded_trains: dict,
    config: RunConfig,
    progress_bar: bool = False,
    n_jobs: int | None = None,
) -> TwinStageResult:
    """Populations, simulated twins, fidelity and twin selection of the units of ``estimates``.

    Parameters
    ----------
    estimates : pandas.DataFrame
        :func:`~spikeinterface_dic.infer_dics` rows (indexed by unit id) of the units to build twins for.
    recorded_trains : dict
        {unit_id: spike times (s)} the twins are compared with (see :func:`recorded_train`); needed when
        ``config.simulate``.
    config : RunConfig
    progress_bar : bool, default: False
        Bars over the population, simulation and selection steps.
    n_jobs : int | None, default: None
        Threads of the simulation kernel (None: numba's default).
    """
    import time

    timings = {}
    estimates = estimates.copy()  # the stage writes targets and adapted time scales
    unit_ids = list(estimates.index)
    started = time.perf_counter()
    populations, targets, errors = {}, {}, {}
    with _progress(len(unit_ids), progress_bar, "twin populations") as bar:
        for unit_id in unit_ids:
            gbar, g_s, g_u, error = unit_population(config, unit_id, estimates.loc[unit_id])
            targets[unit_id], errors[unit_id] = (g_s, g_u), error
            if gbar is not None:
                populations[unit_id] = gbar
            bar.update(1)
    estimates["target_g_s"] = [targets[u][0] for u in unit_ids]
    estimates["target_g_u"] = [targets[u][1] for u in unit_ids]
    estimates["population_error"] = [errors[u] for u in unit_ids]
    timings["populations_s"] = time.perf_counter() - started
    point_k = dict(zip(populations, twin_time_scales(estimates, list(populations)), strict=True))
    parameters = {u: _point_parameters(len(gbar), *targets[u], point_k[u]) for u, gbar in populations.items()}
    result = TwinStageResult(estimates, populations, twin_parameters=parameters, timings=timings)
    if not (config.simulate and populations):
        return result
    sampled = _posterior_units(config, estimates, recorded_trains, populations)
    if sampled:
        started = time.perf_counter()
        with kernel_threads(n_jobs), _progress(len(sampled), progress_bar, "posterior twins") as bar:
            posterior = run_posterior_twins(config, estimates, recorded_trains, sampled)
            bar.update(len(sampled))
        timings["posterior_twins_s"] = time.perf_counter() - started
        point_units = [u for u in populations if u not in set(sampled)]
        point = run_twin_stage_point(estimates, recorded_trains, config, populations, point_units, n_jobs, progress_bar)
        return _join(result, point, posterior, sampled, point_units)
    point = run_twin_stage_point(
        estimates, recorded_trains, config, populations, list(populations), n_jobs, progress_bar
    )
    return _join(result, point, None, [], list(populations))


def _point_parameters(size: int, g_s: float, g_u: float, k: float) -> np.ndarray:
    return np.tile([g_s, g_u, k], (size, 1))


def _posterior_units(config, estimates, recorded_trains, populations) -> list:
    """Units whose twins are drawn from their posterior: twin_sampling="posterior", a model with posterior flows,
    estimates that come from this package's inference (their 16/84 % quantiles are set) and a recorded train of at
    least 4 spikes."""
    from .twin_posterior import posterior_twins_available

    if not populations or not posterior_twins_available(config) or "g_s_q16" not in estimates:
        return []
    return [
        u for u in populations if np.isfinite(estimates.loc[u, "g_s_q16"]) and np.asarray(recorded_trains[u]).size >= 4
    ]


def _join(result: TwinStageResult, point, posterior, sampled: list, point_units: list) -> TwinStageResult:
    """The stage's result from the point-sampled units (``point``: TwinStageResult or None) and the
    posterior-sampled ones (``posterior``: run_posterior_twins' output)."""
    estimates = result.estimates
    estimates["time_scale_network"] = estimates["time_scale"]
    fidelity_parts = []
    if point is not None and point_units:
        for column in FINAL_TIME_SCALE_COLUMNS:
            estimates.loc[point_units, column] = point.estimates.loc[point_units, column].to_numpy()
        for unit_id in point_units:
            result.populations[unit_id] = point.populations[unit_id]
            result.twin_trains[unit_id] = point.twin_trains[unit_id]
            result.twin_parameters[unit_id] = _point_parameters(
                len(point.populations[unit_id]),
                estimates.loc[unit_id, "target_g_s"],
                estimates.loc[unit_id, "target_g_u"],
                float(twin_time_scales(point.estimates, [unit_id])[0]),
            )
        fidelity_parts.append(point.fidelity)
        result.timings.update(point.timings)
    if sampled:
        populations, twins, parameters, fidelity, final_k = posterior
        for unit_id in sampled:
            result.populations[unit_id] = populations[unit_id]
            result.twin_trains[unit_id] = twins[unit_id]
            result.twin_parameters[unit_id] = parameters[unit_id]
            estimates.loc[unit_id, ["target_g_s", "target_g_u"]] = np.median(parameters[unit_id][:, :2], axis=0)
            k = final_k[unit_id]
            if np.isfinite(k):  # the posterior's calibrated sd of ln k is kept (see adapt_time_scales)
                log_k_std = float(estimates.loc[unit_id, "time_scale_std"]) / float(
                    estimates.loc[unit_id, "time_scale"]
                )
                estimates.loc[unit_id, ["time_scale", "time_scale_std", "time_scale_low", "time_scale_high"]] = [
                    k,
                    k * log_k_std,
                    k * np.exp(-log_k_std),
                    k * np.exp(log_k_std),
                ]
        fidelity_parts.append(fidelity)
    _flag_adapted_time_scales(estimates)
    parts = [_with_sampling_columns(part) for part in fidelity_parts if len(part)]
    if parts:
        order = [u for u in result.populations if any(u in part.index for part in parts)]
        result.fidelity = pd.concat(parts).loc[order]
    return result


def _with_sampling_columns(fidelity: pd.DataFrame) -> pd.DataFrame:
    """The posterior sampling's columns, empty for point-sampled units (so that every unit has every column)."""
    from .schema import TWIN_COLUMNS

    sampling = ("n_simulated", "accepted_fraction", "selection_note") + tuple(
        c.name for c in TWIN_COLUMNS if c.name.startswith("pattern_")
    )
    fidelity = fidelity.copy()
    for column in TWIN_COLUMNS:
        if column.name in sampling and column.name not in fidelity:
            fidelity[column.name] = column.empty_value()
    return fidelity


def run_twin_stage_point(estimates, recorded_trains, config, populations, unit_ids, n_jobs, progress_bar):
    """The point-estimate twin stage of ``unit_ids``: every twin of a unit built for its target and simulated at its
    time scale, time-scale adaptation, then twin selection (:func:`.twin_selection.select_matching_twins`)."""
    import time

    timings = {}
    populations = {u: populations[u] for u in unit_ids}
    result = TwinStageResult(estimates.copy(), populations, timings=timings)
    if not populations:
        return result

    started = time.perf_counter()
    simulated = list(populations)
    twins = {}
    # Chunks of whole units of at most ROWS_PER_KERNEL_CALL rows, for the progress bar only: rows are independent
    # and their noise seeds come from (seed, unit id), so chunking does not change results.
    with kernel_threads(n_jobs), _progress(len(simulated), progress_bar, "simulating twins") as bar:
        chunk = []
        for index, unit_id in enumerate(simulated):
            chunk.append(unit_id)
            rows = sum(len(populations[u]) for u in chunk)
            if rows >= ROWS_PER_KERNEL_CALL or index == len(simulated) - 1:
                twins.update(simulate_twins(config, {u: populations[u] for u in chunk}, estimates))
                bar.update(len(chunk))
                chunk = []
    timings["simulation_s"] = time.perf_counter() - started
    references = {u: recorded_trains[u] for u in simulated}
    started = time.perf_counter()
    scored_estimates = estimates.loc[simulated].copy()
    twins, fidelity = score_twins(config, references, twins, scored_estimates)
    timings["fidelity_s"] = time.perf_counter() - started
    if config.twin_selection:
        started = time.perf_counter()
        with kernel_threads(n_jobs), _progress(1, progress_bar, "twin selection") as bar:
            populations, twins, fidelity = select_matching_twins(
                config, references, populations, twins, scored_estimates, fidelity
            )
            bar.update(1)
        timings["selection_s"] = time.perf_counter() - started
    result.estimates["time_scale_network"] = result.estimates["time_scale"]
    for column in FINAL_TIME_SCALE_COLUMNS:
        result.estimates.loc[simulated, column] = scored_estimates[column].to_numpy()
    result.populations, result.twin_trains, result.fidelity = populations, twins, fidelity
    return result


__all__ = [
    "FINAL_TIME_SCALE_COLUMNS",
    "TwinStageResult",
    "run_twin_stage",
    "recorded_train",
    "remove_refractory_violations",
    "kernel_threads",
]
