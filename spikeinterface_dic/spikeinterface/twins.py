"""Twin populations of sorted units as plain ndarrays: generation, simulation, fidelity, selection, joining.

Layout of the data (n units, R = total population members, S = total simulated spikes, C channels):

==========================  ==============  ===================================================================
key                         shape, dtype    meaning
==========================  ==============  ===================================================================
population_offsets          (n + 1,) int64  members of unit i are rows population_offsets[i]:[i + 1]
population_gbar             (R, C) float64  maximal conductances (mS/cm2), columns = conductance_names
conductance_names           (C,) unicode    model.conductance_names
twin_spike_offsets          (R + 1,) int64  spikes of member r are twin_spike_times[offsets[r]:offsets[r + 1]]
twin_spike_times            (S,) float64    simulated spike times (s after the transient); empty if not simulated
target_g_s, target_g_u      (n,) float64    DICs the population was generated for (estimate clipped to the
                                            training region, as in run_pipeline); NaN without population
twin_time_scale             (n,) float64    time scale k of the twins' spike times (after adaptation, if any)
population_error            (n,) unicode    why a unit has no population ("" when it has one)
fraction_matching, ...      (n,) float64    fidelity (see run_pipeline); NaN when not simulated
n_twins                     (n,) int64      simulated twins
==========================  ==============  ===================================================================

The steps are run_pipeline's (same population targets and seeds, same simulation, time-scale adaptation and
fidelity), applied to the estimates of the "dynamic_input_conductances" extension. Every random step of a unit
derives from (seed, unit id) only, and rows of the simulation kernel are independent, so the result does not depend
on n_jobs, on how units are chunked, on the other units, or on merges and splits of other units.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from ..pipeline import ROWS_PER_KERNEL_CALL, score_twins, simulate_twins, unit_population
from ..twin_selection import select_matching_twins
from .ragged import concatenate_rows, pack_rows, row_positions, take_rows
from .trains import reference_train, unit_spike_trains

FIDELITY_COLUMNS = (
    "fraction_matching",
    "fraction_matching_network_time_scale",
    "twin_label_fraction",
    "median_isi_distance",
    "main_frequency_hz",
    "twin_main_frequency_hz",
    "fraction_matching_before_selection",
    "n_candidates",
    "candidate_acceptance",
)
UNIT_KEYS = ("target_g_s", "target_g_u", "twin_time_scale", "population_error", *FIDELITY_COLUMNS, "n_twins")


@contextlib.contextmanager
def kernel_threads(n_jobs: int):
    """Run the numba simulation kernel on ``n_jobs`` threads (results do not depend on it: rows are independent)."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_jobs), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _population(model, unit_id, estimate, population_size: int, seed: int) -> dict:
    """One unit's population, generated exactly as in run_pipeline (same targets, same seed)."""
    gbar, target_g_s, target_g_u, error = unit_population(model, unit_id, estimate, population_size, seed)
    return dict(
        target_g_s=target_g_s,
        target_g_u=target_g_u,
        population_error=error,
        gbar=np.empty((0, model.n_channels)) if gbar is None else gbar,
    )


def _simulate(
    model,
    populations,
    estimates,
    references,
    duration_s,
    noise_std,
    seed,
    frequency_tolerance,
    spikes_per_burst_tolerance,
    adapt_time_scale,
    twin_selection,
    n_jobs,
    progress_bar,
):
    """Populations (after twin selection), twins, fidelity table and time scales of the units in ``populations``
    (the steps of run_pipeline)."""
    from tqdm.auto import tqdm

    unit_ids = list(populations)
    estimates = estimates.loc[unit_ids].copy()  # score_twins rewrites the time scales it adapts
    twins = {}
    # Rows are independent and their noise seeds come from (seed, unit id): chunking does not change results.
    chunk = max(1, ROWS_PER_KERNEL_CALL // max(len(next(iter(populations.values()))), 1))
    with kernel_threads(n_jobs), tqdm(total=len(unit_ids), desc="twin populations", disable=not progress_bar) as bar:
        for start in range(0, len(unit_ids), chunk):
            group = {u: populations[u] for u in unit_ids[start : start + chunk]}
            twins.update(simulate_twins(model, group, estimates, duration_s, noise_std, seed))
            bar.update(len(group))
    twins, fidelity = score_twins(
        references, twins, estimates, frequency_tolerance, spikes_per_burst_tolerance, adapt_time_scale
    )
    if twin_selection:
        with kernel_threads(n_jobs):
            populations, twins, fidelity = select_matching_twins(
                model,
                references,
                populations,
                twins,
                estimates,
                fidelity,
                duration_s,
                noise_std,
                seed,
                frequency_tolerance,
                spikes_per_burst_tolerance,
            )
    time_scales = np.clip(np.nan_to_num(estimates["time_scale"].to_numpy(float), nan=1.0), 0.05, 50.0)
    return populations, twins, fidelity, dict(zip(unit_ids, time_scales, strict=True))


def compute_twin_data(
    sorting,
    unit_ids,
    estimates: pd.DataFrame,
    model,
    refractory_ms: float,
    population_size: int,
    simulate: bool,
    duration_s,
    noise_std: float,
    seed: int,
    frequency_tolerance: float,
    spikes_per_burst_tolerance: float,
    adapt_time_scale: bool = True,
    twin_selection: bool = True,
    n_jobs: int = 1,
    progress_bar: bool = False,
) -> dict:
    """Data dict (see module docstring) of the twin populations of ``unit_ids`` of ``sorting``.

    ``estimates`` is the DIC table (indexed by unit id) the populations are generated from; the twins are compared
    with each unit's reference train (:func:`.trains.reference_train`).
    """
    from ..models import get_model

    model = get_model(model)
    unit_ids = list(unit_ids)
    records = {u: _population(model, u, estimates.loc[u], int(population_size), seed) for u in unit_ids}
    populations = {u: r["gbar"] for u, r in records.items() if len(r["gbar"])}
    twins, fidelity, time_scales = {}, pd.DataFrame(), {}
    if simulate and populations:
        trains = unit_spike_trains(sorting, list(populations))
        references = {u: reference_train(trains[u], refractory_ms) for u in populations}
        populations, twins, fidelity, time_scales = _simulate(
            model,
            populations,
            estimates,
            references,
            duration_s,
            noise_std,
            seed,
            frequency_tolerance,
            spikes_per_burst_tolerance,
            adapt_time_scale,
            twin_selection,
            n_jobs,
            progress_bar,
        )
        for unit_id, gbar in populations.items():
            records[unit_id]["gbar"] = gbar
    elif populations:
        clipped = np.clip(
            np.nan_to_num(estimates.loc[list(populations), "time_scale"].to_numpy(float), nan=1.0), 0.05, 50.0
        )
        time_scales = dict(zip(populations, clipped, strict=True))
    data = {
        "target_g_s": np.array([records[u]["target_g_s"] for u in unit_ids], dtype=np.float64),
        "target_g_u": np.array([records[u]["target_g_u"] for u in unit_ids], dtype=np.float64),
        "twin_time_scale": np.array([time_scales.get(u, np.nan) for u in unit_ids], dtype=np.float64),
        "population_error": np.array([records[u]["population_error"] for u in unit_ids], dtype=str),
        "n_twins": np.array([len(twins.get(u, ())) for u in unit_ids], dtype=np.int64),
    }
    for column in FIDELITY_COLUMNS:
        present = column in fidelity.columns  # the selection columns exist only with twin_selection
        data[column] = np.array(
            [fidelity.loc[u, column] if u in twins and present else np.nan for u in unit_ids], dtype=float
        )
    data["population_gbar"], data["population_offsets"] = pack_rows(
        [records[u]["gbar"] for u in unit_ids], row_shape=(model.n_channels,)
    )
    twin_rows = [t for u in unit_ids for t in twins.get(u, [np.empty(0)] * len(records[u]["gbar"]))]
    data["twin_spike_times"], data["twin_spike_offsets"] = pack_rows(twin_rows)
    data["conductance_names"] = np.array(model.conductance_names, dtype=str)
    return data


def take_twin_units(data: dict, unit_indices) -> dict:
    """The data of the units at ``unit_indices`` (in that order)."""
    unit_indices = np.asarray(unit_indices, dtype=np.int64).reshape(-1)
    out = {key: np.asarray(data[key])[unit_indices] for key in UNIT_KEYS}
    rows, out["population_offsets"] = row_positions(data["population_offsets"], unit_indices)
    out["population_gbar"] = np.asarray(data["population_gbar"])[rows]
    out["twin_spike_times"], out["twin_spike_offsets"] = take_rows(
        data["twin_spike_times"], data["twin_spike_offsets"], rows
    )
    out["conductance_names"] = np.asarray(data["conductance_names"])
    return out


def concatenate_twin_units(parts) -> dict:
    """Join the data of disjoint groups of units (units of the first part first)."""
    parts = list(parts)
    out = {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in UNIT_KEYS}
    out["population_gbar"], out["population_offsets"] = concatenate_rows(
        (part["population_gbar"], part["population_offsets"]) for part in parts
    )
    out["twin_spike_times"], out["twin_spike_offsets"] = concatenate_rows(
        (part["twin_spike_times"], part["twin_spike_offsets"]) for part in parts
    )
    out["conductance_names"] = np.asarray(parts[0]["conductance_names"])
    return out


def population_sizes(data: dict) -> np.ndarray:
    return np.diff(np.asarray(data["population_offsets"], dtype=np.int64))


__all__ = ["compute_twin_data", "take_twin_units", "concatenate_twin_units", "kernel_threads", "population_sizes"]
