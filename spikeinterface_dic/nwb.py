"""Write DIC results into an existing NWB file, and read them back.

Layout (HDF5 NWB file; names are fixed, ``dic_`` is this package's prefix on the Units table):

``/units`` (the file's Units table; no row is added and no existing column is modified)
    One column per estimate, per unit: ``dic_g_s``, ``dic_g_u`` (leak-normalised DICs at threshold,
    dimensionless), ``dic_g_s_std``, ``dic_g_u_std``, ``dic_time_scale``, ``dic_time_scale_std``,
    ``dic_label``, ``dic_in_distribution``, ``dic_ood_reason``, ``dic_n_spikes``, ``dic_n_windows`` (and
    ``dic_<column>`` for any other estimates column), plus ``dic_model`` (model family; empty for units that
    were not analysed) and ``dic_fidelity`` (fraction of matching twins, NaN when not simulated). Units of the
    file that the result does not cover get NaN / "" / False / -1.
``/processing/dynamic_input_conductances`` (ProcessingModule)
    ``populations`` (DynamicTable, one row per twin): ``unit`` (DynamicTableRegion -> ``/units``),
    ``twin_index``, ``g_<channel>`` (maximal conductance, mS/cm2, one column per channel of the model), and when
    the twins were simulated ``twin_spike_times`` (ragged, s after the transient, with its index) and
    ``simulated``. Numeric columns are gzip-compressed (H5DataIO). Absent when no unit has a population.
    ``fidelity`` (DynamicTable, one row per simulated unit): ``unit`` plus the fidelity columns. Absent when
    empty.
    ``run_info`` (DynamicTable, key/value rows ``section``, ``key``, ``value``): model name, conductance names,
    the layout version, the run's ``parameters`` and ``provenance`` (package version, weights sha256, seed,
    date, ...) flattened to one row per leaf (nested keys joined with "/", values JSON-encoded), the writer's
    version and date, and the dtypes needed to rebuild the result exactly. Key/value rows rather than one
    JSON text because nwbinspector flags table cells holding a dictionary.

Safety: :func:`write_nwb` never writes into the original file. It copies it to a temporary file in the same
folder, adds the results there, validates the copy (``pynwb.validate``), checks that ``/units`` ids, spike times
and every pre-existing column are identical, then moves the copy onto the original with ``os.replace`` (atomic).
An exception leaves the original untouched and removes the copy; a killed process may leave a hidden
``.<name>.*.dic-tmp.nwb`` file next to the original, which is safe to delete. Rewriting results (``overwrite=True``)
deletes the old ``dic_*`` columns and module in the copy, then exports it with ``NWBHDF5IO.export`` to a second
temporary file (which drops the freed space), which gets the new results.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .result import PipelineResult
from .schema import MEMBER_NAMES, describe

MODULE_NAME = "dynamic_input_conductances"
COLUMN_PREFIX = "dic_"
LAYOUT_VERSION = "1"
_RESERVED = {"model", "fidelity"}  # dic_model / dic_fidelity are not estimates columns


# ------------------------------------------------------------------------------------------------------- writing
def write_nwb(result: PipelineResult, path, overwrite: bool = False) -> Path:
    """Add a pipeline result to an existing NWB file that has a Units table (layout: see the module docstring).

    Parameters
    ----------
    result : PipelineResult
        Its unit ids (compared as text) must all be ids of the file's ``/units`` table.
    path : str | Path
        The NWB (HDF5) file; it is replaced atomically, only once the new version is complete and valid.
    overwrite : bool, default: False
        When the file already holds DIC results: False raises ValueError; True replaces them all (never a mix).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NWB file not found: {path}; write_nwb adds results to an existing NWB file")
    _check_result(result)
    # One writer at a time: a second process enriching the same file waits for the first, then sees its results
    # (and refuses them unless overwrite), so no update is lost.
    with writer_lock(path):
        _write_locked(result, path, overwrite)
    return path


def writer_lock(path: Path, timeout_s: float = 600.0):
    """The inter-process lock held while ``path`` is rewritten.

    The lock file lives in the user's cache folder (named by the file's resolved path), not beside the data, so no
    file is left next to the user's recording; processes of this machine exclude each other (on a shared network
    file system, processes of different machines do not).
    """
    import hashlib

    from filelock import FileLock
    from platformdirs import user_cache_dir

    folder = Path(user_cache_dir("spikeinterface-dic")) / "nwb-locks"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return FileLock(str(folder / f"{name}.lock"), timeout=timeout_s)


def results_present(path) -> bool:
    """True when the NWB file already holds DIC results (dic_* columns or the processing module)."""
    return _preflight(Path(path))[1]


def _write_locked(result: PipelineResult, path: Path, overwrite: bool) -> None:
    file_units, has_results = _preflight(path)
    rows = _unit_rows(result, file_units, path)
    if has_results and not overwrite:
        raise ValueError(
            f"{path} already holds DIC results ({MODULE_NAME} / dic_* columns); pass overwrite=True (CLI: --overwrite) "
            "to replace them"
        )
    from pynwb import NWBHDF5IO

    with _temporary_sibling(path) as candidate:
        if has_results:
            with _temporary_sibling(path) as stripped:
                shutil.copy2(path, stripped)
                _delete_results(stripped)
                with NWBHDF5IO(str(stripped), "r") as source, NWBHDF5IO(str(candidate), "w") as target:
                    nwbfile = source.read()
                    _add_results(nwbfile, result, rows)
                    target.export(src_io=source, nwbfile=nwbfile, write_args={"link_data": False})
            shutil.copymode(path, candidate)
        else:
            shutil.copy2(path, candidate)
            with NWBHDF5IO(str(candidate), "a") as io:
                nwbfile = io.read()
                _add_results(nwbfile, result, rows)
                io.write(nwbfile)
        _validate_file(candidate, original=path)
        _check_original_data_kept(path, candidate)
        with open(candidate, "rb") as file:
            os.fsync(file.fileno())
        os.replace(candidate, path)


@contextmanager
def _temporary_sibling(path: Path):
    """A temporary file name next to ``path`` (same file system, so os.replace is atomic); removed on exit."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".dic-tmp.nwb")
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _check_result(result: PipelineResult) -> None:
    if not isinstance(result.model_name, str) or not result.model_name:
        raise ValueError(f"result.model_name must be a non-empty text such as 'stg'; got {result.model_name!r}")
    index = [str(u) for u in result.estimates.index]
    if len(set(index)) != len(index):
        raise ValueError("result.estimates has repeated unit ids")
    clashing = _RESERVED & set(result.estimates.columns)
    if clashing:
        raise ValueError(f"result.estimates has columns {sorted(clashing)}, whose dic_ names are reserved")
    known = set(index)
    n_channels = len(result.conductance_names)
    for unit_id, gbar in result.populations.items():
        if str(unit_id) not in known:
            raise ValueError(f"population of unit {unit_id!r} has no row in result.estimates")
        if np.ndim(gbar) != 2 or np.shape(gbar)[1] != n_channels:
            raise ValueError(f"population of unit {unit_id!r} has shape {np.shape(gbar)}; expected (P, {n_channels})")
    populations = {str(u): len(g) for u, g in result.populations.items()}
    for unit_id, trains in result.twin_spike_trains.items():
        if populations.get(str(unit_id)) != len(trains):
            raise ValueError(
                f"unit {unit_id!r} has {len(trains)} twin spike trains but a population of "
                f"{populations.get(str(unit_id), 0)}; they must match one to one"
            )
    extra = [u for u in result.fidelity.index if str(u) not in known]
    if extra:
        raise ValueError(f"result.fidelity has units {extra} that are not in result.estimates")


def _preflight(path: Path) -> tuple[tuple[list, list], bool]:
    """(Units ids, unit names or []) of the file and whether it already holds results (h5py: fast, read-only)."""
    import h5py

    with h5py.File(path, "r") as file:
        if "units" not in file or "id" not in file["units"]:
            raise ValueError(f"{path} has no Units table (/units); write the sorted units first")
        ids = [value.item() for value in file["units/id"][:]]
        colnames = [_text(name) for name in file["units"].attrs.get("colnames", [])]
        # Results keyed by unit names (the readers' ids when the file names its units) are placed by name.
        names = [_text(name) for name in file["units/unit_name"][:]] if "unit_name" in colnames else []
        has_results = f"processing/{MODULE_NAME}" in file or any(n.startswith(COLUMN_PREFIX) for n in colnames)
    if not ids:
        raise ValueError(f"{path} has an empty Units table; there are no units to attach results to")
    return (ids, names), has_results


def _unit_rows(result: PipelineResult, file_units: tuple, path: Path) -> dict:
    """{str(unit_id): row of /units} for the result's units (matched by unit name, else by id); ValueError naming
    the ids the file lacks."""
    file_ids, names = file_units
    row_of = {str(unit_id): row for row, unit_id in enumerate(file_ids)}
    by_name = {name: row for row, name in enumerate(names)} if names and len(set(names)) == len(names) else {}
    if by_name and all(str(u) in by_name for u in result.estimates.index):
        row_of = by_name
    missing = [u for u in result.estimates.index if str(u) not in row_of]
    if missing:
        shown = ", ".join(map(str, file_ids[:10])) + (", ..." if len(file_ids) > 10 else "")
        raise ValueError(
            f"unit ids {missing} of the result are not in the Units table of {path} (ids there: "
            f"{shown}); run the pipeline on the units of this file"
        )
    return {str(u): row_of[str(u)] for u in result.estimates.index}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _delete_results(path: Path) -> None:
    """Remove every dic_* column of /units and the results module (on a temporary copy only)."""
    import h5py

    with h5py.File(path, "r+") as file:
        if f"processing/{MODULE_NAME}" in file:
            del file[f"processing/{MODULE_NAME}"]
        units = file["units"]
        colnames = [_text(name) for name in units.attrs.get("colnames", [])]
        for name in list(units):
            if name.startswith(COLUMN_PREFIX):
                del units[name]
        kept = [name for name in colnames if not name.startswith(COLUMN_PREFIX)]
        units.attrs["colnames"] = np.array(kept, dtype=h5py.string_dtype("utf-8"))


def _compressed(array: np.ndarray):
    from hdmf.backends.hdf5 import H5DataIO

    if array.size == 0:
        return array
    return H5DataIO(array, compression="gzip", compression_opts=4, shuffle=True, chunks=True)


def _column_values(series: pd.Series, rows: list, n_rows: int) -> tuple[object, str]:
    """Values of one per-unit column placed at ``rows`` of a table of ``n_rows``, with the fill for the others."""
    dtype = series.dtype
    if pd.api.types.is_object_dtype(dtype) and len(series) and all(isinstance(v, (bool, np.bool_)) for v in series):
        dtype = np.dtype(bool)
    if pd.api.types.is_bool_dtype(dtype):
        values = np.zeros(n_rows, dtype=bool)
        values[rows] = series.to_numpy(dtype=bool)
        return values, "bool"
    if pd.api.types.is_integer_dtype(dtype):
        values = np.full(n_rows, -1, dtype=np.int64)
        values[rows] = series.to_numpy(dtype=np.int64)
        return values, "int64"
    if pd.api.types.is_float_dtype(dtype):
        values = np.full(n_rows, np.nan)
        values[rows] = series.to_numpy(dtype=np.float64)
        return values, "float64"
    values = [""] * n_rows
    for row, value in zip(rows, series, strict=True):
        values[row] = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return values, "str"


def _add_results(nwbfile, result: PipelineResult, rows: dict) -> None:
    """Add the dic_* columns and the results module to an NWBFile opened for writing (in memory)."""
    from hdmf.common import DynamicTable, DynamicTableRegion, VectorData, VectorIndex

    units = nwbfile.units
    n_units = len(units.id)
    unit_rows = [rows[str(u)] for u in result.estimates.index]
    dtypes = {}
    for column in result.estimates.columns:
        values, dtypes[column] = _column_values(result.estimates[column], unit_rows, n_units)
        units.add_column(name=COLUMN_PREFIX + column, description=describe(column), data=values)
    model = [""] * n_units
    for row in unit_rows:
        model[row] = result.model_name
    units.add_column(
        name="dic_model",
        description="Conductance-based model family of the estimates and twins "
        "('stg' or 'da'; empty for units not analysed).",
        data=model,
    )
    fidelity = result.fidelity
    matching = np.full(n_units, np.nan)
    if "fraction_matching" in fidelity.columns:
        for unit_id, value in fidelity["fraction_matching"].items():
            matching[rows[str(unit_id)]] = value
    units.add_column(
        name="dic_fidelity",
        description=describe("fraction_matching") + " NaN when the twins were not simulated.",
        data=matching,
    )

    module = nwbfile.create_processing_module(
        name=MODULE_NAME,
        description=(
            "Dynamic input conductances inferred from the spike trains of /units, their degenerate conductance-based "
            "twin populations and the twins' simulated spike trains (spikeinterface_dic)."
        ),
    )
    population = result.populations_dataframe()
    if len(population):
        population_rows = np.array([rows[str(u)] for u in population["unit_id"]], dtype=np.int64)
        columns = [
            DynamicTableRegion(
                name="unit",
                data=_compressed(population_rows),
                table=units,
                description="Row of /units whose spike train this twin was generated for.",
            ),
            VectorData(
                name="twin_index",
                data=_compressed(population["twin_index"].to_numpy(np.int32)),
                description="Index of the twin within its unit's population (count from 0).",
            ),
        ]
        for name in result.conductance_names:
            columns.append(
                VectorData(
                    name=f"g_{name}",
                    data=_compressed(population[f"g_{name}"].to_numpy(float)),
                    description=f"Maximal conductance of the {name} channel (mS/cm^2).",
                )
            )
        for name in MEMBER_NAMES:
            if name in population:
                columns.append(
                    VectorData(
                        name=name, data=_compressed(population[name].to_numpy(float)), description=describe(name)
                    )
                )
        if result.twin_spike_trains:
            trains = {str(u): list(t) for u, t in result.twin_spike_trains.items()}
            flat, lengths, simulated = [], [], []
            for unit_id, gbar in result.populations.items():
                unit_trains = trains.get(str(unit_id))
                simulated += [unit_trains is not None] * len(gbar)
                for train in unit_trains or [np.empty(0)] * len(gbar):
                    flat.append(np.asarray(train, dtype=np.float64).ravel())
                    lengths.append(flat[-1].size)
            offsets = np.cumsum(lengths, dtype=np.uint64)
            offsets = offsets.astype(np.uint32) if offsets[-1] < 2**32 else offsets
            times = VectorData(
                name="twin_spike_times",
                data=_compressed(np.concatenate(flat)),
                description="Simulated spike times of the twin (s, measured from the end of the transient).",
            )
            columns += [
                times,
                VectorIndex(name="twin_spike_times_index", data=_compressed(offsets), target=times),
                VectorData(
                    name="simulated",
                    data=np.array(simulated, dtype=bool),
                    description="True when the twin was simulated (boolean).",
                ),
            ]
        module.add(
            DynamicTable(
                name="populations",
                id=np.arange(len(population)),
                columns=columns,
                description="One row per twin: degenerate conductance-based model neuron whose "
                "dynamic input conductances match its unit's estimate.",
            )
        )
    fidelity_dtypes = {}
    if len(fidelity):
        fidelity_rows = [rows[str(u)] for u in fidelity.index]
        columns = [
            DynamicTableRegion(
                name="unit",
                data=np.array(fidelity_rows, dtype=np.int64),
                table=units,
                description="Row of /units whose twins were simulated.",
            )
        ]
        for column in fidelity.columns:
            values, fidelity_dtypes[column] = _column_values(
                fidelity[column], list(range(len(fidelity))), len(fidelity)
            )
            columns.append(VectorData(name=column, data=values, description=describe(column)))
        module.add(
            DynamicTable(
                name="fidelity",
                id=np.arange(len(fidelity)),
                columns=columns,
                description="How well each unit's simulated twins reproduce its firing pattern.",
            )
        )

    from .version import __version__

    info = {
        "result": {
            "model_name": result.model_name,
            "conductance_names": list(result.conductance_names),
            "layout_version": LAYOUT_VERSION,
            "estimates_index_name": result.estimates.index.name,
            "units_rows": unit_rows,
            # The result's own unit ids (file ids or unit names), so reading back gives the ids that were written.
            "unit_ids": [_json_default(u) if not isinstance(u, (str, int)) else u for u in result.estimates.index],
        },
        "writer": {"package_version": __version__, "date": datetime.now(timezone.utc).isoformat()},
        "parameters": result.parameters,
        "provenance": result.provenance,
        "estimates_dtypes": dtypes,
        "fidelity_dtypes": fidelity_dtypes,
    }
    entries = [entry for section, mapping in info.items() for entry in _flatten(section, mapping)]
    module.add(
        DynamicTable(
            name="run_info",
            id=np.arange(len(entries)),
            columns=[
                VectorData(
                    name="section",
                    data=[e[0] for e in entries],
                    description="Group of the entry: result, writer, "
                    "parameters, provenance, estimates_dtypes or fidelity_dtypes (text).",
                ),
                VectorData(
                    name="key",
                    data=[e[1] for e in entries],
                    description="Name of the entry; nested keys joined with '/' (text).",
                ),
                VectorData(
                    name="value",
                    data=[e[2] for e in entries],
                    description="JSON-encoded value of the entry "
                    "(units as in its key or in the spikeinterface_dic documentation).",
                ),
            ],
            description="Provenance and parameters of the spikeinterface_dic run (key/value rows).",
        )
    )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _flatten(section: str, mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _flatten(section, value, f"{prefix}{key}/")
        else:
            yield section, f"{prefix}{key}", json.dumps(value, default=_json_default)


def _unflatten(entries) -> dict:
    sections: dict = {}
    for section, key, value in entries:
        node = sections.setdefault(section, {})
        *parents, leaf = key.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = json.loads(value)
    return sections


def _validate_file(path: Path, original: Path) -> None:
    """Raise ValueError when pynwb's schema validation of ``path`` finds errors that ``original`` does not have."""
    import pynwb

    def validation_errors(file_path: Path) -> list:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [str(error) for error in pynwb.validate(path=str(file_path))]

    errors = validation_errors(path)
    if errors:  # a file that was already invalid is not our doing: only new errors count
        known = set(validation_errors(original))
        errors = [error for error in errors if error not in known]
    if errors:
        raise ValueError(
            f"the NWB file with DIC results does not validate (original left unchanged): {'; '.join(errors[:5])}"
        )


def _check_original_data_kept(original: Path, candidate: Path) -> None:
    """Every pre-existing /units dataset is identical; every other dataset keeps its shape and dtype."""
    import h5py

    def datasets(file):
        found = {}
        file.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
        return {
            name: obj for name, obj in found.items() if not _is_ours(name) and not name.startswith("specifications")
        }

    with h5py.File(original, "r") as before, h5py.File(candidate, "r") as after:
        old, new = datasets(before), datasets(after)
        if set(old) != set(new):
            raise RuntimeError(f"writing DIC results changed the file's datasets: {sorted(set(old) ^ set(new))[:10]}")
        for name, dataset in old.items():
            if dataset.shape != new[name].shape or dataset.dtype != new[name].dtype:
                raise RuntimeError(f"writing DIC results changed the shape or type of /{name}")
            if name.startswith("units/") and not np.array_equal(dataset[()], new[name][()]):
                raise RuntimeError(f"writing DIC results changed the values of /{name}")


def _is_ours(name: str) -> bool:
    return name.startswith(f"processing/{MODULE_NAME}") or name.startswith(f"units/{COLUMN_PREFIX}")


# ------------------------------------------------------------------------------------------------------- reading
def read_nwb_results(path) -> PipelineResult:
    """Read the DIC results that :func:`write_nwb` stored in an NWB file.

    Unit ids are those of the result that was written (unit names or ``/units`` ids; files written before this was
    recorded give the ``id`` values); only the units the result covered are returned.

    Raises
    ------
    ValueError
        When the file holds no DIC results.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NWB file not found: {path}")
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        if MODULE_NAME not in nwbfile.processing or nwbfile.units is None:
            raise ValueError(f"{path} holds no DIC results (no processing module {MODULE_NAME!r})")
        module = nwbfile.processing[MODULE_NAME]
        run = module["run_info"]
        info = _unflatten(zip(*(map(_text, run[name].data[:]) for name in ("section", "key", "value")), strict=True))
        units = nwbfile.units
        ids = [value.item() for value in np.asarray(units.id.data[:])]
        analysed = [row for row, v in enumerate(units["dic_model"].data[:]) if _text(v) != ""]
        order = info["result"].get("units_rows", analysed)  # the result's unit order
        if sorted(order) != analysed:
            raise ValueError(f"{path}: the dic_model column and run_info disagree on which units were analysed")
        for row, unit_id in zip(order, info["result"].get("unit_ids", []), strict=False):
            ids[row] = unit_id
        estimates = _read_columns(
            {name: units[COLUMN_PREFIX + name].data[:] for name in info["estimates_dtypes"]},
            info["estimates_dtypes"],
            order,
        )
        estimates.index = pd.Index([ids[row] for row in order], name=info["result"].get("estimates_index_name"))
        conductance_names = tuple(info["result"]["conductance_names"])
        populations, twins, parameters = {}, {}, {}
        if "populations" in module.data_interfaces:
            populations, twins, parameters = _read_populations(module["populations"], ids, conductance_names)
        fidelity = pd.DataFrame()
        if "fidelity" in module.data_interfaces:
            table = module["fidelity"]
            dtypes = info.get("fidelity_dtypes", {})
            fidelity = _read_columns({name: table[name].data[:] for name in dtypes}, dtypes, slice(None))
            fidelity.index = pd.Index([ids[row] for row in table["unit"].data[:]])
    return PipelineResult(
        model_name=info["result"]["model_name"],
        conductance_names=conductance_names,
        estimates=estimates,
        populations=populations,
        twin_spike_trains=twins,
        fidelity=fidelity,
        twin_parameters=parameters,
        parameters=info.get("parameters", {}),
        provenance=info.get("provenance", {}),
    )


def _read_columns(data: dict, dtypes: dict, rows) -> pd.DataFrame:
    columns = {}
    for name, dtype in dtypes.items():
        values = np.asarray(data[name])[rows]
        if dtype == "str":
            columns[name] = pd.Series([_text(v) for v in values])  # pandas' default text dtype, as when built
        else:
            columns[name] = pd.Series(values.astype(dtype))
    return pd.DataFrame(columns)


def _read_populations(table, ids: list, conductance_names: tuple) -> tuple[dict, dict, dict]:
    unit_rows = np.asarray(table["unit"].data[:], dtype=np.int64)
    gbar = np.column_stack([np.asarray(table[f"g_{name}"].data[:], dtype=np.float64) for name in conductance_names])
    members = None  # each twin's (g_s, g_u, k); files written before lack them
    if all(name in table.colnames for name in MEMBER_NAMES):
        members = np.column_stack([np.asarray(table[name].data[:], dtype=np.float64) for name in MEMBER_NAMES])
    has_twins = "twin_spike_times" in table.colnames
    if has_twins:
        times = np.asarray(table["twin_spike_times"].target.data[:], dtype=np.float64)
        offsets = np.asarray(table["twin_spike_times_index"].data[:], dtype=np.int64)
        trains = np.split(times, offsets[:-1])
        simulated = np.asarray(table["simulated"].data[:], dtype=bool)
    populations, twins, parameters = {}, {}, {}
    order = list(dict.fromkeys(unit_rows.tolist()))
    for row in order:
        rows = np.flatnonzero(unit_rows == row)
        unit_id = ids[row]
        populations[unit_id] = gbar[rows]
        if members is not None:
            parameters[unit_id] = members[rows]
        if has_twins and simulated[rows].all():
            twins[unit_id] = [trains[m] for m in rows]
    return populations, twins, parameters
