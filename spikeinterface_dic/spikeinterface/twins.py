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
twin_time_scale             (n,) float64    time scale k applied to the twins' spike times
population_error            (n,) unicode    why a unit has no population ("" when it has one)
fraction_matching, ...      (n,) float64    fidelity (see run_pipeline); NaN when not simulated
n_twins                     (n,) int64      simulated twins
==========================  ==============  ===================================================================

Every random step of a unit derives from (seed, unit id) only (``unit_child_seed``; the noise of its twins from
(seed, "noise/<unit id>")), and each unit is simulated in its own kernel call, whose rows are independent: the
result does not depend on n_jobs, on the other units, on their order, or on merges/splits of other units.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from ..pipeline import _fidelity, _simulate_twins, unit_child_seed
from .ragged import concatenate_rows, pack_rows, row_positions, take_rows
from .trains import reference_train, unit_spike_trains

FIDELITY_COLUMNS = ("fraction_matching", "twin_label_fraction", "median_isi_distance", "main_frequency_hz",
                    "twin_main_frequency_hz")
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


def _twin_unit(model, unit_id, estimate, reference, population_size, simulate, duration_s, noise_std, seed,
               frequency_tolerance, spikes_per_burst_tolerance) -> dict:
    from ..population import generate_population
    from ..simulate import simulate as run_simulation

    record = dict(target_g_s=np.nan, target_g_u=np.nan, twin_time_scale=np.nan, population_error="",
                  gbar=np.empty((0, model.n_channels)), twins=[], n_twins=0, **dict.fromkeys(FIDELITY_COLUMNS, np.nan))
    if not np.isfinite(estimate["g_s"]):
        record["population_error"] = f"no DIC estimate: {estimate['ood_reason']}"
        return record
    # Same targets as run_pipeline: clipped to the region the network was trained on (and the generator reaches).
    g_s_range, g_u_range = model.extra["training_g_s"], model.extra["training_g_u"]
    record["target_g_s"] = float(np.clip(estimate["g_s"], *g_s_range))
    record["target_g_u"] = float(np.clip(estimate["g_u"], max(g_u_range[0], 0.5), g_u_range[1]))
    try:
        record["gbar"] = generate_population(model, g_s=record["target_g_s"], g_u=record["target_g_u"],
                                             n=int(population_size), seed=unit_child_seed(seed, unit_id)).gbar
    except ValueError as error:
        record["population_error"] = str(error)
        return record
    time_scale = float(np.clip(np.nan_to_num(float(estimate["time_scale"]), nan=1.0), 0.05, 50.0))
    record["twin_time_scale"] = time_scale
    if not simulate:
        record["twins"] = [np.empty(0)] * len(record["gbar"])
        return record
    key = "unit"  # a plain label: unit ids may be numpy scalars that pandas would treat differently
    twins = _simulate_twins(model, {key: record["gbar"]}, pd.DataFrame({"time_scale": [time_scale]}, index=[key]),
                            duration_s, noise_std, unit_child_seed(seed, f"noise/{unit_id}"), run_simulation)[key]
    fidelity = _fidelity({key: reference}, {key: twins}, frequency_tolerance, spikes_per_burst_tolerance).loc[key]
    record.update(twins=twins, n_twins=len(twins), **{name: float(fidelity[name]) for name in FIDELITY_COLUMNS})
    return record


def compute_twin_data(sorting, unit_ids, estimates: pd.DataFrame, model, refractory_ms: float,
                      population_size: int, simulate: bool, duration_s, noise_std: float, seed: int,
                      frequency_tolerance: float, spikes_per_burst_tolerance: float, n_jobs: int = 1,
                      progress_bar: bool = False) -> dict:
    """Data dict (see module docstring) of the twin populations of ``unit_ids`` of ``sorting``.

    ``estimates`` is the DIC table (indexed by unit id) the populations are generated from.
    """
    from tqdm.auto import tqdm

    from ..models import get_model

    model = get_model(model)
    trains = unit_spike_trains(sorting, unit_ids)
    records = []
    with kernel_threads(n_jobs):
        for unit_id in tqdm(list(unit_ids), desc="twin populations", disable=not progress_bar):
            records.append(_twin_unit(model, unit_id, estimates.loc[unit_id],
                                      reference_train(trains[unit_id], refractory_ms), population_size, simulate,
                                      duration_s, noise_std, seed, frequency_tolerance, spikes_per_burst_tolerance))
    data = {}
    for key in UNIT_KEYS:
        values = [record[key] for record in records]
        data[key] = (np.array(values, dtype=str) if key == "population_error"
                     else np.array(values, dtype=np.int64 if key == "n_twins" else np.float64))
    data["population_gbar"], data["population_offsets"] = pack_rows([r["gbar"] for r in records],
                                                                    row_shape=(model.n_channels,))
    data["twin_spike_times"], data["twin_spike_offsets"] = pack_rows([t for r in records for t in r["twins"]])
    data["conductance_names"] = np.array(model.conductance_names, dtype=str)
    return data


def take_twin_units(data: dict, unit_indices) -> dict:
    """The data of the units at ``unit_indices`` (in that order)."""
    unit_indices = np.asarray(unit_indices, dtype=np.int64).reshape(-1)
    out = {key: np.asarray(data[key])[unit_indices] for key in UNIT_KEYS}
    rows, out["population_offsets"] = row_positions(data["population_offsets"], unit_indices)
    out["population_gbar"] = np.asarray(data["population_gbar"])[rows]
    out["twin_spike_times"], out["twin_spike_offsets"] = take_rows(data["twin_spike_times"],
                                                                   data["twin_spike_offsets"], rows)
    out["conductance_names"] = np.asarray(data["conductance_names"])
    return out


def concatenate_twin_units(parts) -> dict:
    """Join the data of disjoint groups of units (units of the first part first)."""
    parts = list(parts)
    out = {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in UNIT_KEYS}
    out["population_gbar"], out["population_offsets"] = concatenate_rows(
        (part["population_gbar"], part["population_offsets"]) for part in parts)
    out["twin_spike_times"], out["twin_spike_offsets"] = concatenate_rows(
        (part["twin_spike_times"], part["twin_spike_offsets"]) for part in parts)
    out["conductance_names"] = np.asarray(parts[0]["conductance_names"])
    return out


def population_sizes(data: dict) -> np.ndarray:
    return np.diff(np.asarray(data["population_offsets"], dtype=np.int64))


__all__ = ["compute_twin_data", "take_twin_units", "concatenate_twin_units", "kernel_threads", "population_sizes"]
