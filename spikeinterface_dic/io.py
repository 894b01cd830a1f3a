"""Spike-train readers (NWB units, neo, CSV) and the CSV writer of pipeline results.

Every reader returns a :class:`SpikeTrains`: a ``dict`` ``{unit_id: float64 array of spike times in seconds}`` that
also carries what the file said about each unit (start and duration of the observation, names) and the rows it
could not read. The unit of time is fixed by each format:

- NWB (``.nwb``, or any HDF5 file with an ``nwb_version`` attribute): seconds, by the NWB schema. Every Units table
  is read (``/units`` and those inside processing modules); where a unit has ``obs_intervals``, only its spikes
  inside them are kept and its duration is their total length.
- neo (any file ``neo.io.get_io`` recognises): each ``neo.SpikeTrain`` carries its unit; times are rescaled to
  seconds with ``quantities`` (no rounding to samples).
- CSV, Spike2Pop format: columns ``ID`` (or ``id``) and ``spiking_times`` holding ``"[t1, t2, ...]"`` in
  **milliseconds** (pass ``time_unit`` for another unit).
- CSV, long format: one row per spike, columns ``unit_id`` and ``spike_time_s`` (or ``spike_time_ms`` /
  ``spike_time_us``: the unit is in the column name).

Every reader applies one bad-data policy to every train (:func:`~spikeinterface_dic.train_checks.clean_spike_train`:
NaN/inf dropped, unsorted times sorted, duplicated times removed, negative times kept), each change listed in
``problems``, and refuses a file whose times are almost surely in another unit than the one read
(:func:`~spikeinterface_dic.train_checks.check_time_unit`: seconds where milliseconds are expected, or the reverse).

Pickle-based neo files (``.pkl``) execute code when loaded: read only files you trust.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .train_checks import check_time_unit, clean_spike_train

TIME_UNIT_TO_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_UNIT_COLUMNS = ("ID", "id", "unit_id", "unit")
_LONG_TIME_COLUMNS = {"spike_time_s": "s", "spike_time_ms": "ms", "spike_time_us": "us"}
_NUMBER_SEPARATOR = re.compile(r"[,\s]+")


class SpikeTrains(dict):
    """Spike trains read from a file: ``{unit_id: float64 array of spike times in seconds}``.

    A plain ``dict`` (so it can be passed wherever a mapping of trains is accepted) with extra attributes.

    Attributes
    ----------
    source : str
        Path of the file that was read.
    file_format : str
        "nwb" | "neo" | "csv-spike2pop" | "csv-long".
    file_time_unit : str
        Unit of the times in the file ("s", "ms" or "us"); the values in this mapping are always seconds.
    t_start_s : dict
        {unit_id: start of the observation (s)}, for the units where the file says it.
    durations_s : dict
        {unit_id: observed duration (s)}, for the units where the file says it (NWB ``obs_intervals``, neo
        ``t_stop - t_start``).
    unit_names : dict
        {unit_id: name} when the file names its units (NWB ``unit_name`` column, neo ``SpikeTrain.name``).
    origins : dict
        {unit_id: where the train is in the file} for NWB ("units", "processing/ecephys/units") and neo
        ("block 0, segment 1, train 3").
    problems : list of str
        Rows or trains that were skipped, each with its line number or location ("line 7: ..."), and what the
        bad-data policy changed in a train ("line 3: unit 'a': 79 duplicated spike times removed"; see
        :mod:`spikeinterface_dic.train_checks`).
    """

    def __init__(
        self,
        trains=(),
        *,
        source: str = "",
        file_format: str = "",
        file_time_unit: str = "s",
        t_start_s: dict | None = None,
        durations_s: dict | None = None,
        unit_names: dict | None = None,
        origins: dict | None = None,
        problems: list | None = None,
    ):
        super().__init__(trains)
        self.source = str(source)
        self.file_format = file_format
        self.file_time_unit = file_time_unit
        self.t_start_s = dict(t_start_s or {})
        self.durations_s = dict(durations_s or {})
        self.unit_names = dict(unit_names or {})
        self.origins = dict(origins or {})
        self.problems = list(problems or [])

    def __repr__(self) -> str:
        n_spikes = sum(len(train) for train in self.values())
        return (
            f"SpikeTrains({len(self)} units, {n_spikes} spikes, format={self.file_format!r}, "
            f"source={self.source!r}, problems={len(self.problems)})"
        )


def read_spike_trains(path, unit_column: str | None = None, time_unit: str | None = None) -> SpikeTrains:
    """Read spike trains from an NWB, neo-readable or CSV file, in seconds.

    Parameters
    ----------
    path : str | Path
        ``.nwb`` (every Units table in the file), ``.csv`` (Spike2Pop or long format) or any file neo reads.
    unit_column : str | None, default: None
        Column (CSV, NWB) or ``SpikeTrain`` annotation (neo) holding the unit ids. None: CSV takes the first of
        "ID", "id", "unit_id", "unit"; NWB takes the Units table ``id``; neo takes the "unit_id" annotation, then
        the train's name, then its position.
    time_unit : "s" | "ms" | "us" | None, default: None
        Unit of the times in a CSV file. None: milliseconds for the Spike2Pop format; the unit in the column name
        for the long format. NWB (seconds by schema) and neo (units carried by the file) refuse any other unit.

    Returns
    -------
    SpikeTrains
        ``{unit_id: float64 array (s)}`` plus ``t_start_s``, ``durations_s``, ``unit_names`` and ``problems``.

    Examples
    --------
    >>> trains = read_spike_trains("tests/data/spike2pop_stg_set.csv")  # doctest: +SKIP
    >>> float(trains[1][0])  # doctest: +SKIP
    3.0570500000002076
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"spike-train file not found: {path}")
    if time_unit is not None and time_unit not in TIME_UNIT_TO_S:
        raise ValueError(f"time_unit must be one of {sorted(TIME_UNIT_TO_S)} or None; got {time_unit!r}")
    if path.suffix.lower() == ".csv":
        return read_csv_spike_trains(path, unit_column=unit_column, time_unit=time_unit)
    if _is_nwb(path):
        if time_unit not in (None, "s"):
            raise ValueError(
                f"{path} is an NWB file: its spike times are in seconds by schema; time_unit={time_unit!r} cannot apply"
            )
        return read_nwb_spike_trains(path, unit_column=unit_column)
    if time_unit is not None:
        raise ValueError(f"time_unit applies to CSV files only; the neo file {path} carries its own time units")
    return read_neo_spike_trains(path, unit_column=unit_column)


def _is_nwb(path: Path) -> bool:
    if path.suffix.lower() == ".nwb":
        return True
    if not path.is_file():
        return False
    import h5py

    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as file:
        return "nwb_version" in file.attrs


# ---------------------------------------------------------------------------------------------------------- NWB
def read_nwb_spike_trains(path, unit_column: str | None = None) -> SpikeTrains:
    """Read the spike trains of every Units table of an NWB file, in seconds.

    Keys are the units' names (the ``unit_name`` column, when every unit has a distinct one), else the Units ``id``
    values, or the values of ``unit_column``. When several Units tables share an id,
    every key becomes ``"<table path>/<id>"`` (for example ``"units/3"`` and ``"processing/ecephys/units/3"``)
    so that no train replaces another. A unit with ``obs_intervals`` keeps only its spikes inside them
    (boundaries included); its ``t_start_s`` is the first interval start and its ``durations_s`` the total
    length of the (merged) intervals. A unit with no ``obs_intervals`` keeps all its spikes, duration unknown.

    Raises
    ------
    ValueError
        When the file has no Units table, or only empty ones.
    """
    from pynwb import NWBHDF5IO
    from pynwb.misc import Units

    path = Path(path)
    with NWBHDF5IO(str(path), "r") as reader:
        nwbfile = reader.read()
        tables = [
            (_nwb_location(reader, table), table) for table in nwbfile.objects.values() if isinstance(table, Units)
        ]
        tables.sort(key=lambda item: (item[0] != "units", item[0]))
        if not tables:
            raise ValueError(f"{path} has no Units table: no spike trains to read")
        read = [(location, _read_units_table(table, unit_column, path, location)) for location, table in tables]
    read = [(location, rows) for location, rows in read if rows]
    if not read:
        raise ValueError(f"{path}: its Units table(s) ({', '.join(loc for loc, _ in tables)}) are empty")
    all_ids = [row["id"] for _, rows in read for row in rows]
    prefixed = len(set(map(str, all_ids))) != len(all_ids)
    result = SpikeTrains(source=str(path), file_format="nwb", file_time_unit="s")
    for location, rows in read:
        for row in rows:
            key = f"{location}/{row['id']}" if prefixed else row["id"]
            result[key], issues = clean_spike_train(row["times"], key, str(path))
            result.problems.extend(f"{location}: {issue}" for issue in issues)
            result.origins[key] = location
            if "t_start" in row:
                result.t_start_s[key], result.durations_s[key] = row["t_start"], row["duration"]
            if "name" in row:
                result.unit_names[key] = row["name"]
    result.problems.extend(
        check_time_unit(
            result, str(path), "s", "convert its spike_times from {unit} to seconds, as the NWB schema requires"
        )
    )
    _warn_problems(result, stacklevel=3)
    return result


def _warn_problems(trains: SpikeTrains, stacklevel: int) -> None:
    """One warning listing (the first five of) a file's problems, so that none goes unseen."""
    problems = trains.problems
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        warnings.warn(
            f"{trains.source}: {len(problems)} problem(s) (see .problems): {shown}", UserWarning, stacklevel=stacklevel
        )


def _nwb_location(reader, container) -> str:
    """Path of a container in the file without the leading "root/" ("units", "processing/ecephys/units")."""
    path = reader.manager.get_builder(container).path
    return path[len("root/") :] if path.startswith("root/") else path


def _as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def units_table_ids(table) -> list:
    """The unit ids of an NWB Units table: the curator's unit names when every unit has a distinct one, else ``id``.

    Names are the units' identity (SpikeInterface's NWB sorting uses them as unit ids too), so every output and
    every per-unit seed follows the names, whatever path a unit takes.
    """
    if "unit_name" in table.colnames:
        names = [_as_text(v) for v in table["unit_name"].data[:]]
        if all(names) and len(set(names)) == len(names):
            return names
    return [value.item() for value in np.asarray(table.id.data[:])]


def _read_units_table(table, unit_column, path, location) -> list:
    """One dict per unit: id, times (s, inside obs_intervals), t_start and duration when known, name."""
    n_units = len(table.id)
    if n_units == 0:
        return []
    if "spike_times" not in table.colnames:
        raise ValueError(f"{path}: Units table {location!r} has no spike_times column")
    names = [_as_text(v) for v in table["unit_name"].data[:]] if "unit_name" in table.colnames else None
    if unit_column is None:
        ids = units_table_ids(table)
    elif unit_column == "id":
        ids = [value.item() for value in np.asarray(table.id.data[:])]
    elif unit_column in table.colnames:
        ids = [
            _as_text(value) if isinstance(value, (bytes, str)) else np.asarray(value).item()
            for value in table[unit_column].data[:]
        ]
    else:
        raise ValueError(f"{path}: Units table {location!r} has no column {unit_column!r}; columns: {table.colnames}")
    if len(set(map(str, ids))) != len(ids):
        raise ValueError(
            f"{path}: the values of {unit_column or 'id'} in Units table {location!r} are not unique; "
            "pass a unit_column that identifies each unit"
        )
    times = np.split(
        np.asarray(table.spike_times.data[:], dtype=np.float64),
        np.asarray(table.spike_times_index.data[:], dtype=np.int64)[:-1],
    )
    intervals = [None] * n_units
    if "obs_intervals" in table.colnames:
        flat = np.asarray(table.obs_intervals.data[:], dtype=np.float64).reshape(-1, 2)
        intervals = np.split(flat, np.asarray(table.obs_intervals_index.data[:], dtype=np.int64)[:-1])
    rows = []
    for i in range(n_units):
        row = {"id": ids[i], "times": times[i]}
        if intervals[i] is not None and len(intervals[i]):
            merged = _merge_intervals(intervals[i])
            inside = np.zeros(len(times[i]), dtype=bool)
            for start, stop in merged:
                inside |= (times[i] >= start) & (times[i] <= stop)
            row["times"] = times[i][inside]
            row["t_start"] = float(merged[0, 0])
            row["duration"] = float(np.sum(merged[:, 1] - merged[:, 0]))
        if names is not None:
            row["name"] = names[i]
        rows.append(row)
    return rows


def _merge_intervals(intervals: np.ndarray) -> np.ndarray:
    intervals = intervals[np.argsort(intervals[:, 0], kind="stable")]
    merged = [list(intervals[0])]
    for start, stop in intervals[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return np.asarray(merged, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------- CSV
def read_csv_spike_trains(path, unit_column: str | None = None, time_unit: str | None = None) -> SpikeTrains:
    """Read a CSV in the Spike2Pop format (one row per unit) or the long format (one row per spike).

    Malformed rows (wrong number of fields, unreadable times, empty or repeated unit id) are skipped; rows whose
    train needed the bad-data policy (non-finite, unsorted or duplicated times) are kept, cleaned. Each is listed
    with its line number in ``problems`` and a warning is issued. See :func:`read_spike_trains` for the parameters.

    Raises
    ------
    ValueError
        When no row can be read, or when the times are almost surely in another unit than the one read (for
        example seconds in a Spike2Pop file, which is read in milliseconds): the message names the unit to pass.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # one Spike2Pop field holds a whole train
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty; expected a header line")
            header = [name.strip() for name in header]
            id_column = _pick_unit_column(header, unit_column, path)
            if "spiking_times" in header:
                trains, problems, file_unit = _read_spike2pop_rows(reader, header, id_column, time_unit)
                file_format = "csv-spike2pop"
            else:
                trains, problems, file_unit = _read_long_rows(reader, header, id_column, time_unit, path)
                file_format = "csv-long"
    finally:
        csv.field_size_limit(limit)
    result = SpikeTrains(
        _integer_ids_if_possible(trains),
        source=str(path),
        file_format=file_format,
        file_time_unit=file_unit,
        problems=problems,
    )
    if not trains:
        _warn_problems(result, stacklevel=3)
        raise ValueError(
            f"{path} holds no readable spike train" + (f" ({len(problems)} malformed rows)" if problems else "")
        )
    how_to_say = (
        "pass time_unit='{unit}' (CLI: --time-unit {unit})"
        if file_format == "csv-spike2pop"
        else "name the time column spike_time_{unit} (the unit is in its name)"
    )
    result.problems.extend(check_time_unit(result, str(path), file_unit, how_to_say, stated=time_unit is not None))
    _warn_problems(result, stacklevel=3)
    return result


def _pick_unit_column(header: list, unit_column: str | None, path: Path) -> str:
    if unit_column is not None:
        if unit_column not in header:
            raise ValueError(f"{path} has no column {unit_column!r}; columns are {header}")
        return unit_column
    for name in _UNIT_COLUMNS:
        if name in header:
            return name
    raise ValueError(
        f"{path} has no unit-id column; expected one of {list(_UNIT_COLUMNS)} (or pass unit_column), "
        f"got columns {header}"
    )


def _parse_times(text: str) -> np.ndarray:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"spiking_times must look like '[t1, t2, ...]'; got {text[:40]!r}")
    inner = text[1:-1].strip()
    return np.array([float(v) for v in _NUMBER_SEPARATOR.split(inner)] if inner else [], dtype=np.float64)


def _rows_with_unit_ids(reader, header, id_index, problems):
    """(line number, unit id, fields) of every non-empty CSV row with the right field count and a unit id; the other
    rows are reported in ``problems`` with their line numbers."""
    for row in reader:
        if not row or all(not field.strip() for field in row):
            continue
        line = reader.line_num
        if len(row) != len(header):
            problems.append(f"line {line}: row skipped: {len(row)} fields, expected {len(header)}")
            continue
        unit_id = row[id_index].strip()
        if not unit_id:
            problems.append(f"line {line}: row skipped: empty unit id")
            continue
        yield line, unit_id, row


def _read_spike2pop_rows(reader, header, id_column, time_unit):
    unit = time_unit or "ms"
    factor = TIME_UNIT_TO_S[unit]
    id_index, times_index = header.index(id_column), header.index("spiking_times")
    trains, problems = {}, []
    for line, unit_id, row in _rows_with_unit_ids(reader, header, id_index, problems):
        if unit_id in trains:
            problems.append(f"line {line}: unit id {unit_id!r} repeated (first row kept)")
            continue
        try:
            times = _parse_times(row[times_index])
        except ValueError as error:
            problems.append(f"line {line}: row skipped: unit {unit_id!r}: {error}")
            continue
        trains[unit_id], issues = clean_spike_train(times * factor, unit_id)
        problems.extend(f"line {line}: {issue}" for issue in issues)
    return trains, problems, unit


def _read_long_rows(reader, header, id_column, time_unit, path):
    time_columns = [name for name in header if name in _LONG_TIME_COLUMNS or name == "spike_time"]
    if len(time_columns) != 1:
        raise ValueError(
            f"{path}: expected a 'spiking_times' column (Spike2Pop format) or exactly one of "
            f"{list(_LONG_TIME_COLUMNS)} (one row per spike); got columns {header}"
        )
    time_column = time_columns[0]
    unit = _LONG_TIME_COLUMNS.get(time_column)
    if unit is None and time_unit is None:
        raise ValueError(f"{path}: column 'spike_time' has no unit; pass time_unit or name the column spike_time_s")
    if unit is not None and time_unit is not None and time_unit != unit:
        raise ValueError(f"{path}: column {time_column!r} is in {unit}, which contradicts time_unit={time_unit!r}")
    unit = unit or time_unit
    id_index, time_index = header.index(id_column), header.index(time_column)
    collected, problems = {}, []
    for line, unit_id, row in _rows_with_unit_ids(reader, header, id_index, problems):
        try:
            value = float(row[time_index])
        except ValueError:
            problems.append(f"line {line}: row skipped: spike time {row[time_index]!r} is not a number")
            continue
        collected.setdefault(unit_id, []).append(value)  # NaN / inf: counted per unit by clean_spike_train
    factor = TIME_UNIT_TO_S[unit]
    trains = {}
    for key, values in collected.items():
        # One row per spike: the rows of a unit have no order by format, so sorting them is no issue.
        trains[key], issues = clean_spike_train(np.sort(np.asarray(values, dtype=np.float64)) * factor, key)
        problems.extend(issues)
    return trains, problems, unit


def _integer_ids_if_possible(trains: dict) -> dict:
    """CSV ids are text; they become ints when every one is a canonical integer ("7", not "007" or "7.0")."""
    keys = list(trains)
    if all(re.fullmatch(r"-?(0|[1-9][0-9]*)", key) for key in keys):
        return {int(key): value for key, value in trains.items()}
    return trains


# ---------------------------------------------------------------------------------------------------------- neo
def read_neo_spike_trains(path, unit_column: str | None = None) -> SpikeTrains:
    """Read every ``neo.SpikeTrain`` of a file that ``neo.io.get_io`` recognises, in seconds.

    Keys: the annotation ``unit_column`` (default "unit_id"), else the train's name, else its position in its
    segment. With several blocks or segments the key is ``"b{block}/s{segment}/{key}"``. Times are rescaled
    exactly with ``quantities`` (no conversion to samples); ``t_start_s`` and ``durations_s`` come from each
    train's ``t_start`` and ``t_stop``.
    """
    import neo
    import quantities as pq

    path = Path(path)
    try:
        reader = neo.io.get_io(str(path))
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot read {path}: not NWB, not CSV and not a format neo recognises ({error}); "
            "supported: .nwb, .csv (Spike2Pop or unit_id,spike_time_s) and neo's formats"
        ) from None
    try:
        blocks = reader.read(lazy=False)
    finally:
        close = getattr(reader, "close", None)
        if callable(close):
            close()
    annotation = unit_column or "unit_id"
    located = [
        (b, s, k, train)
        for b, block in enumerate(blocks)
        for s, segment in enumerate(block.segments)
        for k, train in enumerate(segment.spiketrains)
    ]
    if not located:
        raise ValueError(f"{path} holds no neo SpikeTrain")
    several = len({(b, s) for b, s, _, _ in located}) > 1
    result = SpikeTrains(source=str(path), file_format="neo", file_time_unit="s")
    for b, s, k, train in located:
        label = train.annotations.get(annotation, train.name if train.name not in (None, "") else k)
        label = label.item() if isinstance(label, np.generic) else label
        key = f"b{b}/s{s}/{label}" if several else label
        result.origins[key] = f"block {b}, segment {s}, train {k}"
        if key in result:
            result.problems.append(f"block {b}, segment {s}, train {k}: unit id {key!r} repeated (first kept)")
            continue
        result[key], issues = clean_spike_train(
            np.asarray(train.times.rescale(pq.s).magnitude, dtype=np.float64).ravel(), key, str(path)
        )
        result.problems.extend(f"block {b}, segment {s}, train {k}: {issue}" for issue in issues)
        t_start = float(train.t_start.rescale(pq.s).magnitude)
        result.t_start_s[key] = t_start
        result.durations_s[key] = float(train.t_stop.rescale(pq.s).magnitude) - t_start
        if train.name:
            result.unit_names[key] = str(train.name)
    result.problems.extend(check_time_unit(result, str(path), "s", "set the units of its SpikeTrains to {unit}"))
    _warn_problems(result, stacklevel=3)
    return result


# --------------------------------------------------------------------------------------------------- CSV writer
def write_csv(result, path_prefix) -> tuple[Path, Path, Path]:
    """Write a :class:`~spikeinterface_dic.result.PipelineResult` as CSV files with their data dictionary.

    ``<prefix>_units.csv``: one row per unit (``unit_id``, the estimates columns, then the fidelity columns, empty
    where a unit was not simulated). ``<prefix>_populations.csv``: one row per twin (``unit_id``, ``twin_index``,
    ``g_<channel>`` in mS/cm2). ``<prefix>_columns.csv``: the data dictionary of both (file, column, dtype, unit,
    description, from :mod:`spikeinterface_dic.schema`). Each file is written to a temporary file in the same folder
    and moved into place, so an interrupted write never leaves a truncated CSV; files get the permissions the umask
    gives new files.

    Returns
    -------
    (Path, Path, Path)
        The units, populations and data-dictionary file paths.
    """
    from .schema import data_dictionary

    prefix = Path(path_prefix)
    units_path = prefix.with_name(prefix.name + "_units.csv")
    populations_path = prefix.with_name(prefix.name + "_populations.csv")
    columns_path = prefix.with_name(prefix.name + "_columns.csv")
    units = result.estimates.copy()
    if result.fidelity is not None and len(result.fidelity.columns):
        clashing = sorted(set(units.columns) & set(result.fidelity.columns))
        if clashing:
            raise ValueError(f"estimates and fidelity share the columns {clashing}; cannot merge them into one table")
        units = units.join(result.fidelity, how="left")
    units.index.name = "unit_id"
    populations = result.populations_dataframe()
    dictionary = pd.concat(
        [
            data_dictionary(["unit_id", *units.columns]).assign(file=units_path.name),
            data_dictionary(list(populations.columns)).assign(file=populations_path.name),
        ],
        ignore_index=True,
    )[["file", "column", "dtype", "unit", "description"]]
    write_frame_atomically(units.reset_index(), units_path)
    write_frame_atomically(populations, populations_path)
    write_frame_atomically(dictionary, columns_path)
    return units_path, populations_path, columns_path


def write_frame_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV to ``path`` through a temporary file in the same folder and an atomic rename; the file
    gets the permissions of a newly created file under the process umask (mkstemp alone would give 0600)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as file:
            frame.to_csv(file, index=False)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
