"""One bad-data policy for every spike-train reader, and a check that the times are in the unit they claim.

:func:`clean_spike_train` is applied the same way by every reader (CSV Spike2Pop and long, NWB, neo, SpikeInterface
sortings), so a train is never silently altered and never refused for one bad value:

================  =========================================================================================
what              what happens (each leaves an issue: "unit 'a': ...")
================  =========================================================================================
NaN / inf         dropped, counted
not increasing    sorted
duplicates        exact repeats of a spike time removed, counted (a doubled export or a merged unit)
negative times    kept: NWB times are relative to the session's reference time, neo and SpikeInterface
                  to their t_start, CSV exports often to a stimulus; only ISIs are used, so nothing is lost
================  =========================================================================================

:func:`check_time_unit` stops a file whose times are almost surely in another unit than the one read (seconds
written where milliseconds are expected, or the reverse) with a one-line ValueError that says which unit was
probably meant and how to say so; a single odd unit in a file that otherwise looks right only gets an issue.
"""

from __future__ import annotations

import numpy as np

# Below this an ISI is shorter than any neuron's refractory period (the rule of infer_dics' refractory_ms).
REFRACTORY_S = 1e-3
# A median ISI above this (no spike for minutes, half of the time) is not a train to infer conductances from; with
# times that big, milliseconds read as seconds is the likely story.
LONGEST_PLAUSIBLE_MEDIAN_ISI_S = 100.0
# Milliseconds read as seconds make every ISI at least 1 s (no neuron fires twice within 1 ms); a real train of this
# many ISIs that never has two spikes within a second is a very sparse unit, possible but rare in a whole file.
MIN_ISIS_FOR_NEVER_CLOSE = 20
# Unit names and their factor to seconds, largest first (the order the suggestion looks through).
_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
_PLAUSIBLE_MEDIAN_ISI_S = (2e-3, 10.0)  # 500 Hz .. 0.1 Hz: where a suggested unit should bring the median ISI


def clean_spike_train(times, unit_name, source: str = "") -> tuple[np.ndarray, list[str]]:
    """Sorted, finite, duplicate-free spike times of one unit, and what was done to get them.

    Parameters
    ----------
    times : array_like
        Spike times of one unit (any unit of time; the input is not modified).
    unit_name : object
        The unit's id, used in the issues.
    source : str, default: ""
        Where the train comes from (a file), used in the error when ``times`` is not 1-D.

    Returns
    -------
    (times, issues) : (numpy.ndarray, list of str)
        float64 times and one sentence per change, e.g. ``"unit 'a': 79 duplicated spike times removed"``.
    """
    values = np.asarray(times, dtype=np.float64)
    unit_name = unit_name.item() if isinstance(unit_name, np.generic) else unit_name  # 3, not np.int64(3)
    if values.ndim != 1:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}unit {unit_name!r}: spike times must be a 1-D array; got shape {values.shape}")
    issues = []
    finite = np.isfinite(values)
    if not finite.all():
        issues.append(f"unit {unit_name!r}: {int((~finite).sum())} non-finite spike times (NaN or inf) dropped")
        values = values[finite]
    decreases = int(np.count_nonzero(np.diff(values) < 0))
    if decreases:
        issues.append(f"unit {unit_name!r}: spike times not in increasing order ({decreases} decreases); sorted")
        values = np.sort(values, kind="stable")
    repeated = np.concatenate(([False], np.diff(values) == 0)) if values.size else np.zeros(0, dtype=bool)
    if repeated.any():
        issues.append(f"unit {unit_name!r}: {int(repeated.sum())} duplicated spike times removed")
        values = values[~repeated]
    return values, issues


def _median_isi_s(train: np.ndarray) -> float:
    return float(np.median(np.diff(train))) if train.size >= 3 else np.nan


def _suggested_unit(median_isi_s: float, read_as: str) -> str | None:
    """The unit that brings a median ISI read as ``read_as`` into the plausible range, None if none does."""
    value_in_file = median_isi_s / dict(_UNITS)[read_as]
    for name, factor in _UNITS:
        if name != read_as and _PLAUSIBLE_MEDIAN_ISI_S[0] <= value_in_file * factor <= _PLAUSIBLE_MEDIAN_ISI_S[1]:
            return name
    return None


def _unit_problem(train: np.ndarray) -> tuple[str, int, int] | None:
    """("short" | "long", ISIs on the wrong side, ISIs) when a train's ISIs are implausible in seconds."""
    if train.size < 3:
        return None
    isi = np.diff(train)
    short = int(np.count_nonzero(isi < REFRACTORY_S))
    if short > isi.size / 2:
        return "short", short, isi.size
    never_close = isi.size >= MIN_ISIS_FOR_NEVER_CLOSE and isi.min() >= 1.0
    if np.median(isi) > LONGEST_PLAUSIBLE_MEDIAN_ISI_S or never_close:
        return "long", int(np.count_nonzero(isi >= 1.0)), isi.size
    return None


def check_time_unit(
    trains: dict, source: str, read_as: str, how_to_say: str = "pass time_unit='{unit}'", stated: bool = False
) -> list[str]:
    """Stop when a file's times are almost surely in another unit than ``read_as``; flag single odd units.

    Rules (on the trains converted to seconds):

    - most ISIs (more than half) below 1 ms, shorter than any refractory period: the times are in a larger unit
      than ``read_as`` (seconds written where milliseconds are expected);
    - a median ISI above 100 s, or at least 20 ISIs none shorter than 1 s: the times are in a smaller unit
      (milliseconds written where seconds are expected make every ISI at least 1 s).

    When the trains with at least 3 spikes mostly (more than half of them) break the same rule, the file is refused,
    unless the caller ``stated`` the unit explicitly; when only some do (or the unit was stated), each gets an
    issue (a very sparse or merged unit is possible; the file as a whole is not wrong).

    Parameters
    ----------
    trains : dict
        {unit_id: spike times in seconds}, already cleaned (:func:`clean_spike_train`).
    source : str
        The file, named in the error.
    read_as : "s" | "ms" | "us"
        The unit the times were read in.
    how_to_say : str, default: "pass time_unit='{unit}'"
        How the caller tells the reader another unit; ``{unit}`` is replaced by the suggested unit.
    stated : bool, default: False
        True when the user gave the unit explicitly (``time_unit=``): a file-wide mismatch is then an issue per
        unit, not an error (the user's word beats the heuristic).

    Returns
    -------
    issues : list of str
        One sentence per odd unit of a file that is otherwise fine.

    Raises
    ------
    ValueError
        One line naming the file, the unit read, the probable unit and how to pass it.
    """
    problems = {unit_id: _unit_problem(np.asarray(train)) for unit_id, train in trains.items()}
    judged = [unit_id for unit_id, train in trains.items() if len(train) >= 3]
    issues = []
    for kind in ("short", "long"):
        odd = [unit_id for unit_id in judged if problems[unit_id] and problems[unit_id][0] == kind]
        if not odd:
            continue
        wrong, total = (sum(problems[u][i] for u in odd) for i in (1, 2))
        median_isi = float(np.median([_median_isi_s(np.asarray(trains[u])) for u in odd]))
        suggested = _suggested_unit(median_isi, read_as)
        meant = "larger" if kind == "short" else "smaller"
        guess = suggested or f"a {meant} unit"
        if kind == "short":
            evidence = f"most ISIs ({wrong} of {total}) are below 1 ms, shorter than any refractory period"
        else:
            evidence = (
                f"the median ISI is {median_isi:.3g} s and {wrong} of {total} ISIs are 1 s or longer (no two spikes "
                "within a second)"
            )
        if len(odd) > len(judged) / 2 and not stated:
            fix = how_to_say.format(unit=suggested) if suggested else f"give the times in {_name(read_as)}"
            raise ValueError(
                f"{source}: spike times read as {_name(read_as)} look like {_name(suggested) or guess}, "
                f"not {_name(read_as)}: {evidence}; if so, {fix}"
            )
        for unit_id in odd:
            issues.append(
                f"unit {unit_id!r}: {'most ISIs below 1 ms' if kind == 'short' else 'no two spikes within 1 s'} "
                f"when read as {_name(read_as)}: a {'merged or noisy' if kind == 'short' else 'very sparse'} unit, "
                f"or times in {guess}"
            )
    return issues


def _name(unit: str | None) -> str:
    return {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}.get(unit, unit or "")
