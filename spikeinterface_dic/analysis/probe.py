"""DIC estimates of every unit placed along the probe (x and depth of each unit)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import estimates_from, is_sorting_analyzer, match_ids

ALONG_PROBE_COLUMNS = (
    "x_um",
    "depth_um",
    "has_location",
    "g_s",
    "g_s_std",
    "g_u",
    "g_u_std",
    "time_scale",
    "time_scale_std",
    "log_time_scale",
    "log_time_scale_std",
    "label",
    "in_distribution",
    "ood_reason",
    "n_spikes",
)
_X_COLUMNS = ("x_um", "x", "rel_x")
_Y_COLUMNS = ("depth_um", "y_um", "y", "rel_y")


def _locations_from_analyzer(sorting_analyzer, compute_missing: bool, location_method: str) -> dict:
    if not sorting_analyzer.has_extension("unit_locations"):
        if not compute_missing:
            raise ValueError(
                "the analyzer has no 'unit_locations' extension; compute it (analyzer.compute(['random_spikes', "
                "'templates', 'unit_locations'])), pass compute_missing_locations=True, or give unit_locations="
            )
        if not sorting_analyzer.has_recording():
            raise ValueError(
                "unit locations need the traces, but the analyzer has no recording; give unit_locations= "
                "(e.g. from the NWB electrodes table)"
            )
        needed = [name for name in ("random_spikes", "templates") if not sorting_analyzer.has_extension(name)]
        if needed:
            sorting_analyzer.compute(needed)
        sorting_analyzer.compute("unit_locations", method=location_method)
    positions = np.asarray(sorting_analyzer.get_extension("unit_locations").get_data(), dtype=float)
    return {unit_id: positions[index] for index, unit_id in enumerate(sorting_analyzer.unit_ids)}


def _locations_from_frame(frame: pd.DataFrame) -> dict:
    if "unit_id" in frame.columns:
        frame = frame.set_index("unit_id")
    x_column = next((c for c in _X_COLUMNS if c in frame.columns), None)
    y_column = next((c for c in _Y_COLUMNS if c in frame.columns), None)
    if x_column is None or y_column is None:
        raise ValueError(
            f"unit_locations DataFrame needs an x column (one of {_X_COLUMNS}) and a y / depth column (one of "
            f"{_Y_COLUMNS}) in um, indexed by unit id; got columns {list(frame.columns)}"
        )
    return {u: np.array([frame.loc[u, x_column], frame.loc[u, y_column]], dtype=float) for u in frame.index}


def _explicit_locations(unit_locations, unit_ids: list) -> dict:
    if isinstance(unit_locations, pd.DataFrame):
        return _locations_from_frame(unit_locations)
    if isinstance(unit_locations, dict):
        return {u: np.asarray(p, dtype=float).reshape(-1) for u, p in unit_locations.items()}
    positions = np.asarray(unit_locations, dtype=float)
    if positions.ndim != 2 or positions.shape[0] != len(unit_ids) or positions.shape[1] < 2:
        raise ValueError(
            f"unit_locations as an array must have shape ({len(unit_ids)}, 2 or 3) (x, y[, z] in um, one row per "
            f"unit in the estimates' order); got shape {positions.shape}"
        )
    return dict(zip(unit_ids, positions, strict=True))


def dics_along_probe(
    sorting_analyzer_or_result,
    unit_locations=None,
    compute_missing_locations: bool = False,
    location_method: str = "center_of_mass",
) -> pd.DataFrame:
    """DIC estimates of every unit with its position on the probe.

    Parameters
    ----------
    sorting_analyzer_or_result : SortingAnalyzer | PipelineResult | pandas.DataFrame
        An analyzer with the "dynamic_input_conductances" extension, a pipeline result, or an estimates table.
    unit_locations : dict | array_like | pandas.DataFrame | None, default: None
        Unit positions in um, probe coordinates: {unit_id: (x, y[, z])}, an (n_units, 2 | 3) array in the
        estimates' unit order, or a DataFrame indexed by unit id (or with a ``unit_id`` column) with x / y columns
        (``x_um``/``depth_um``, ``x``/``y`` or NWB's ``rel_x``/``rel_y``, e.g. each unit's main electrode taken from
        the NWB electrodes table). None uses the analyzer's "unit_locations" extension.
    compute_missing_locations : bool, default: False
        When the analyzer has no "unit_locations" (and ``unit_locations`` is None), compute it, with
        "random_spikes" and "templates" if they are missing. This reads the traces once (seconds for a short
        recording); off by default so that the analyzer is never changed behind the caller's back.
    location_method : "center_of_mass" | "monopolar_triangulation" | "grid_convolution", default: "center_of_mass"
        Method used when the locations are computed here.

    Returns
    -------
    pandas.DataFrame
        One row per unit of the estimates (index ``unit_id``; units without a location are kept, with NaN
        positions and ``has_location`` False): x_um, depth_um (the probe's y coordinate, um), has_location, g_s,
        g_s_std, g_u, g_u_std, time_scale, time_scale_std, log_time_scale, log_time_scale_std (sd of ln k), label,
        in_distribution, ood_reason, n_spikes.

    Examples
    --------
    >>> analyzer.compute(["random_spikes", "templates", "unit_locations"])  # doctest: +SKIP
    >>> analyzer.compute("dynamic_input_conductances", model="stg")  # doctest: +SKIP
    >>> table = dics_along_probe(analyzer)  # doctest: +SKIP
    """
    estimates = estimates_from(sorting_analyzer_or_result)
    unit_ids = list(estimates.index)
    if unit_locations is not None:
        locations = _explicit_locations(unit_locations, unit_ids)
    elif is_sorting_analyzer(sorting_analyzer_or_result):
        locations = _locations_from_analyzer(sorting_analyzer_or_result, compute_missing_locations, location_method)
    else:
        raise ValueError(
            "a PipelineResult or an estimates table carries no unit positions: give unit_locations= (a dict, an "
            "array, or a DataFrame with x / y columns such as the NWB electrodes' rel_x / rel_y)"
        )
    matched = match_ids(unit_ids, locations)
    x = np.full(len(unit_ids), np.nan)
    y = np.full(len(unit_ids), np.nan)
    for row, unit_id in enumerate(unit_ids):
        if unit_id in matched:
            position = np.asarray(locations[matched[unit_id]], dtype=float).reshape(-1)
            if position.size < 2:
                raise ValueError(f"unit {unit_id!r}: a location needs at least (x, y) in um; got {position}")
            x[row], y[row] = position[0], position[1]
    out = estimates.copy()
    out["x_um"] = x
    out["depth_um"] = y
    out["has_location"] = np.isfinite(x) & np.isfinite(y)
    for column, fill in (("ood_reason", ""), ("n_spikes", -1)):
        if column not in out.columns:
            out[column] = fill
    ordered = list(ALONG_PROBE_COLUMNS) + [c for c in out.columns if c not in ALONG_PROBE_COLUMNS]
    return out[ordered]
