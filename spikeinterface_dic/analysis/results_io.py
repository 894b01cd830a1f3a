"""Read pipeline results back from the files ``spikeinterface-dic run`` writes, and write comparisons as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_BOOLEAN_TEXT = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}


def _csv_paths(path: Path) -> tuple[Path, Path]:
    name = path.name
    if name.endswith("_units.csv"):
        prefix = name[: -len("_units.csv")]
    elif name.endswith(".csv"):
        prefix = name[: -len(".csv")]
    else:
        prefix = name
    return path.with_name(prefix + "_units.csv"), path.with_name(prefix + "_populations.csv")


def _model_of(conductance_names: tuple) -> str:
    from ..models import get_model

    for name in ("stg", "da"):
        if tuple(get_model(name).conductance_names) == conductance_names:
            return name
    return ""


def read_result(path):
    """A :class:`~spikeinterface_dic.PipelineResult` from an NWB file with DIC results or from ``run``'s CSV output.

    Parameters
    ----------
    path : str | Path
        ``X.nwb`` (results written by :func:`spikeinterface_dic.write_nwb`), ``X_units.csv``, or ``X.csv`` / ``X``
        standing for the pair ``X_units.csv`` + ``X_populations.csv`` (the populations file is optional). From CSV,
        the fidelity columns stay in ``estimates`` and twin spike trains are not available.
    """
    from ..nwb import read_nwb_results
    from ..result import PipelineResult
    from ..schema import MEMBER_NAMES, coerce_frame, column_of

    path = Path(path)
    if path.suffix.lower() == ".nwb":
        return read_nwb_results(path)
    units_path, populations_path = _csv_paths(path)
    if not units_path.is_file():
        raise FileNotFoundError(
            f"no results at {path}: expected an NWB file with DIC results or {units_path.name} (written by "
            "`spikeinterface-dic run --out X.csv`)"
        )
    estimates = pd.read_csv(units_path, index_col="unit_id", keep_default_na=True)
    for column in estimates.columns:  # CSV has no types: booleans come back as text, empty text as NaN
        if column_of(column) is not None and column_of(column).dtype == "bool" and estimates[column].dtype != bool:
            estimates[column] = estimates[column].astype(str).map(_BOOLEAN_TEXT).fillna(False)
    estimates = coerce_frame(estimates)
    populations, parameters, conductance_names = {}, {}, ()
    if populations_path.is_file():
        table = pd.read_csv(populations_path)
        channels = [c for c in table.columns if c.startswith("g_")]
        conductance_names = tuple(c[2:] for c in channels)
        members = all(name in table.columns for name in MEMBER_NAMES)  # files written before lack them
        for unit_id, rows in table.groupby("unit_id", sort=False):
            rows = rows.sort_values("twin_index")
            populations[unit_id] = rows[channels].to_numpy(np.float64)
            if members:
                parameters[unit_id] = rows[list(MEMBER_NAMES)].to_numpy(np.float64)
    return PipelineResult(
        model_name=_model_of(conductance_names),
        conductance_names=conductance_names,
        estimates=estimates,
        populations=populations,
        twin_parameters=parameters,
        parameters={"source": str(units_path)},
    )


def write_comparison(comparison, path_prefix) -> tuple[Path, Path]:
    """Write a :class:`ConditionComparison` as ``<prefix>_units.csv`` and ``<prefix>_channels.csv`` (atomically)."""
    from ..io import write_frame_atomically

    prefix = Path(path_prefix)
    if prefix.suffix.lower() == ".csv":
        prefix = prefix.with_suffix("")
    units_path = prefix.with_name(prefix.name + "_units.csv")
    channels_path = prefix.with_name(prefix.name + "_channels.csv")
    units = comparison.units.copy()
    units.index.name = "unit_id"
    write_frame_atomically(units.reset_index(), units_path)
    write_frame_atomically(comparison.channels, channels_path)
    return units_path, channels_path
