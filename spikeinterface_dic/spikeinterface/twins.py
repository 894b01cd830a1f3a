"""Twin populations of sorted units as plain ndarrays: generation, simulation, fidelity, selection, joining.

Layout of the data (n units, R = total population members, S = total simulated spikes, C channels):

==========================  ==============  ===================================================================
key                         shape, dtype    meaning
==========================  ==============  ===================================================================
population_offsets          (n + 1,) int64  members of unit i are rows population_offsets[i]:[i + 1]
population_gbar             (R, C) float64  maximal conductances (mS/cm2), columns = conductance_names
population_parameters       (R, 3) float64  each twin's (g_s, g_u, k): schema.MEMBER_COLUMNS (absent in data
                                            computed before it existed)
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

import numpy as np

from ..config import RunConfig
from ..schema import TWIN_COLUMNS, TWIN_NAMES
from ..twin_stage import FINAL_TIME_SCALE_COLUMNS, recorded_train, run_twin_stage
from .ragged import concatenate_rows, pack_rows, row_positions, take_rows
from .trains import unit_spike_trains

# Per-unit arrays of the extension's data (the ragged population and twin arrays are handled apart).
# The final time scale (after adaptation) and the network's are stored too, so every front end reports one k.
UNIT_KEYS = ("target_g_s", "target_g_u", "twin_time_scale", "population_error", *FINAL_TIME_SCALE_COLUMNS, *TWIN_NAMES)


def compute_twin_data(
    sorting, unit_ids, estimates, config: RunConfig, n_jobs: int | None = None, progress_bar: bool = False
) -> dict:
    """Data dict (see module docstring) of the twin populations of ``unit_ids`` of ``sorting``.

    ``estimates`` is the DIC table (indexed by unit id) the populations are generated from; the twins are compared
    with each unit's recorded train (:func:`spikeinterface_dic.twin_stage.recorded_train`): the same twin stage as
    :func:`spikeinterface_dic.run_pipeline`.
    """
    model = config.model_declaration
    unit_ids = list(unit_ids)
    with_estimate = [u for u in unit_ids if np.isfinite(estimates.loc[u, "g_s"])] if config.simulate else []
    trains = unit_spike_trains(sorting, with_estimate)
    recorded = {u: recorded_train(trains[u], config.refractory_ms) for u in with_estimate}
    stage = run_twin_stage(estimates.loc[unit_ids], recorded, config, progress_bar=progress_bar, n_jobs=n_jobs)
    time_scales = stage.twin_time_scales()
    empty = np.empty((0, model.n_channels))
    data = {
        "target_g_s": stage.estimates["target_g_s"].to_numpy(np.float64),
        "target_g_u": stage.estimates["target_g_u"].to_numpy(np.float64),
        "twin_time_scale": np.array([time_scales.get(u, np.nan) for u in unit_ids], dtype=np.float64),
        "population_error": np.array(stage.estimates["population_error"].tolist(), dtype=str),
    }
    for column in FINAL_TIME_SCALE_COLUMNS:
        values = stage.estimates[column] if column in stage.estimates else stage.estimates["time_scale"]
        data[column] = values.to_numpy(np.float64)
    for column in TWIN_COLUMNS:
        simulated = column.name in stage.fidelity.columns  # the selection columns exist only with twin_selection
        values = [
            stage.fidelity.loc[u, column.name] if simulated and u in stage.twin_trains else column.empty_value()
            for u in unit_ids
        ]
        if column.name == "n_twins":
            values = [len(stage.twin_trains.get(u, ())) for u in unit_ids]
        data[column.name] = column.as_array(values)
    data["population_gbar"], data["population_offsets"] = pack_rows(
        [stage.populations.get(u, empty) for u in unit_ids], row_shape=(model.n_channels,)
    )
    data["population_parameters"], _ = pack_rows(
        [stage.twin_parameters.get(u, np.empty((0, 3))) for u in unit_ids], row_shape=(3,)
    )
    twin_rows = [
        t for u in unit_ids for t in stage.twin_trains.get(u, [np.empty(0)] * len(stage.populations.get(u, ())))
    ]
    data["twin_spike_times"], data["twin_spike_offsets"] = pack_rows(twin_rows)
    data["conductance_names"] = np.array(model.conductance_names, dtype=str)
    return data


def take_twin_units(data: dict, unit_indices) -> dict:
    """The data of the units at ``unit_indices`` (in that order)."""
    unit_indices = np.asarray(unit_indices, dtype=np.int64).reshape(-1)
    out = {key: np.asarray(data[key])[unit_indices] for key in UNIT_KEYS}
    rows, out["population_offsets"] = row_positions(data["population_offsets"], unit_indices)
    out["population_gbar"] = np.asarray(data["population_gbar"])[rows]
    if "population_parameters" in data:
        out["population_parameters"] = np.asarray(data["population_parameters"])[rows]
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
    if all("population_parameters" in part for part in parts):
        out["population_parameters"], _ = concatenate_rows(
            (part["population_parameters"], part["population_offsets"]) for part in parts
        )
    out["twin_spike_times"], out["twin_spike_offsets"] = concatenate_rows(
        (part["twin_spike_times"], part["twin_spike_offsets"]) for part in parts
    )
    out["conductance_names"] = np.asarray(parts[0]["conductance_names"])
    return out


def population_sizes(data: dict) -> np.ndarray:
    return np.diff(np.asarray(data["population_offsets"], dtype=np.int64))


__all__ = ["compute_twin_data", "take_twin_units", "concatenate_twin_units", "population_sizes", "UNIT_KEYS"]
