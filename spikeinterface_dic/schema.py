"""One schema for every per-unit column: name, dtype, unit and description.

The estimates table (:func:`spikeinterface_dic.infer_dics`), the twin/fidelity table, the SpikeInterface extensions'
stored arrays, CSV files (and their data dictionary) and NWB Units columns all read their columns from here, so a
new column is one entry in :data:`ESTIMATE_COLUMNS` or :data:`TWIN_COLUMNS`.

dtypes are storage types: "float64", "int64", "bool" or "str" (text; "" for none). Units follow UCUM-like short
forms; "1" means dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    """A per-unit output column."""

    name: str
    dtype: str  # "float64" | "int64" | "bool" | "str"
    unit: str  # "1" = dimensionless; "" for text and booleans
    description: str

    def empty_value(self):
        """The value of a unit without this quantity (NaN, 0, False or "")."""
        return {"float64": np.nan, "int64": 0, "bool": False, "str": ""}[self.dtype]

    def as_array(self, values) -> np.ndarray:
        """``values`` as a plain ndarray of this column's dtype (None / NaN text become "")."""
        values = list(values)
        if self.dtype == "str":
            return np.array(["" if _is_missing(v) else str(v) for v in values], dtype=str)
        if self.dtype == "bool":
            return np.array([bool(v) if not _is_missing(v) else False for v in values], dtype=bool)
        if self.dtype == "int64":
            return np.array([0 if _is_missing(v) else int(v) for v in values], dtype=np.int64)
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


_DIC = "leak-normalised (g / g_leak) dynamic input conductance"

ESTIMATE_COLUMNS: tuple[Column, ...] = (
    Column(
        "g_s",
        "float64",
        "1",
        f"Slow {_DIC} at the threshold voltage, inferred from the spike train; positive = restorative.",
    ),
    Column("g_u", "float64", "1", f"Ultraslow {_DIC} at the threshold voltage, inferred from the spike train."),
    Column("g_s_std", "float64", "1", "Standard deviation of the inferred g_s."),
    Column("g_u_std", "float64", "1", "Standard deviation of the inferred g_u."),
    Column("g_s_q16", "float64", "1", "16 % quantile of g_s's posterior (NaN without posterior flows)."),
    Column("g_s_q84", "float64", "1", "84 % quantile of g_s's posterior (NaN without posterior flows)."),
    Column("g_u_q16", "float64", "1", "16 % quantile of g_u's posterior (NaN without posterior flows)."),
    Column("g_u_q84", "float64", "1", "84 % quantile of g_u's posterior (NaN without posterior flows)."),
    Column(
        "time_scale",
        "float64",
        "1",
        "Time scale k of the unit relative to the model (factor multiplying every "
        "time constant and the capacitance); after adaptation to the recorded frequency when twins were "
        "simulated with adapt_time_scale.",
    ),
    Column("time_scale_std", "float64", "1", "Standard deviation of k."),
    Column("time_scale_low", "float64", "1", "Lower end of k's 1-sd interval (exp(ln k - sd of ln k))."),
    Column("time_scale_high", "float64", "1", "Upper end of k's 1-sd interval (exp(ln k + sd of ln k))."),
    Column(
        "label",
        "str",
        "",
        "Firing pattern of the spike train from the rule-based features: 'silent' (< 3 spikes), 'spiking' (tonic), "
        "'bursting' (repeated bursts in a bimodal ISI distribution) or 'irregular' (neither; never in distribution).",
    ),
    Column(
        "in_distribution",
        "bool",
        "",
        "True when the train lies inside the inference network's training "
        "distribution (pattern, frequency, time scale).",
    ),
    Column(
        "ood_reason", "str", "", "Why the unit is out of distribution or has no estimate (empty when in distribution)."
    ),
    Column("n_spikes", "int64", "count", "Spikes used for the estimate (after removing refractory violations)."),
    Column("n_windows", "int64", "count", "Windows of at most 128 ISIs whose estimates were combined."),
    Column(
        "n_refractory_violations",
        "int64",
        "count",
        "ISIs shorter than the refractory period whose second spike was dropped.",
    ),
    Column(
        "novelty",
        "float64",
        "1",
        "Distance of the train's ISI shape to the nearest model trains (higher = "
        "less like any model train); above the reference threshold the unit is out of distribution.",
    ),
    Column(
        "p_bursting",
        "float64",
        "1",
        "The inference network's own probability that the train is bursting "
        "(0..1); label comes from the rule-based features.",
    ),
)

# Columns the "dynamic_input_conductances" analyzer extension adds: the sorting-quality gate
# (spikeinterface_dic.spikeinterface.quality_gate; thresholds measured in docs/probe_ground_truth.md).
SORTING_QUALITY_COLUMNS: tuple[Column, ...] = (
    Column(
        "sorting_quality_ok",
        "bool",
        "",
        "True when the unit's SpikeInterface quality metrics (amplitude_cutoff, rp_contamination, presence_ratio) "
        "pass the thresholds under which sorting errors leave the DICs reliable; False when a threshold fails or "
        "the metrics were not computed (see sorting_quality_reason). The unit is kept either way.",
    ),
    Column(
        "sorting_quality_reason",
        "str",
        "",
        "Why sorting_quality_ok is False: the failed thresholds with the unit's values, or 'not checked: ...' with "
        "the extension to compute (empty when ok).",
    ),
)

# Columns the pipeline adds to the estimates after inference.
PIPELINE_ESTIMATE_COLUMNS: tuple[Column, ...] = (
    Column(
        "time_scale_network",
        "float64",
        "1",
        "Time scale k as inferred from the train, before it was adapted to the twins' main frequency.",
    ),
    Column("population_error", "str", "", "Why the unit has no twin population (empty when it has one)."),
    Column(
        "target_g_s",
        "float64",
        "1",
        "g_s the twin population was generated for: the estimate clipped to the "
        "region the network was trained on (NaN without population).",
    ),
    Column(
        "target_g_u",
        "float64",
        "1",
        "g_u the twin population was generated for: the estimate clipped to the "
        "region the network was trained on and that the generator reaches (NaN without population).",
    ),
)

TWIN_COLUMNS: tuple[Column, ...] = (
    Column(
        "fraction_matching",
        "float64",
        "1",
        "Fraction of the unit's twins whose simulated firing pattern "
        "reproduces the unit's (same label, main frequency and spikes per burst within tolerance), after twin "
        "selection (0..1).",
    ),
    Column(
        "fraction_matching_network_time_scale",
        "float64",
        "1",
        "fraction_matching at the network's time "
        "scale, before the time scale was adapted to the recorded main frequency (0..1).",
    ),
    Column(
        "twin_label_fraction",
        "float64",
        "1",
        "Fraction of twins with the same firing-pattern label as the unit (0..1).",
    ),
    Column(
        "median_isi_distance",
        "float64",
        "1",
        "Median over twins of the Kolmogorov-Smirnov distance between "
        "the twin's and the unit's inter-spike-interval distributions (0..1).",
    ),
    Column("fidelity_note", "str", "", "Why fraction_matching is NaN for a simulated unit (empty otherwise)."),
    Column(
        "main_frequency_hz",
        "float64",
        "Hz",
        "Main firing frequency of the recorded unit: spiking frequency, or burst frequency for bursting units.",
    ),
    Column("twin_main_frequency_hz", "float64", "Hz", "Median over twins of their main firing frequency."),
    Column(
        "fraction_matching_before_selection",
        "float64",
        "1",
        "fraction_matching of the first degenerate "
        "population, before non-matching twins were replaced by matching members drawn for the same DICs "
        "(0..1).",
    ),
    Column("n_candidates", "int64", "count", "Extra population members simulated as candidates for twin selection."),
    Column(
        "candidate_acceptance",
        "float64",
        "1",
        "Fraction of the candidates that reproduced the unit's pattern (0..1; NaN when none were simulated).",
    ),
    Column("n_twins", "int64", "count", "Simulated twins of the unit."),
    Column(
        "n_simulated",
        "int64",
        "count",
        "Twins drawn from the unit's posterior and simulated, refinement candidates included (posterior twin "
        "sampling; 0 otherwise).",
    ),
    Column(
        "accepted_fraction",
        "float64",
        "1",
        "Fraction of the n_simulated twins that reproduced the unit's pattern (posterior twin sampling; NaN "
        "otherwise).",
    ),
    Column(
        "pattern_g_s",
        "float64",
        "1",
        "g_s given the unit's firing pattern: weighted median over the posterior-drawn twins that reproduced it "
        "(NaN when none did or with point twin sampling); compare with g_s, the network's posterior median.",
    ),
    Column("pattern_g_s_std", "float64", "1", "Weighted standard deviation of pattern_g_s over the matching twins."),
    Column("pattern_g_u", "float64", "1", "g_u given the unit's firing pattern (as pattern_g_s)."),
    Column("pattern_g_u_std", "float64", "1", "Weighted standard deviation of pattern_g_u over the matching twins."),
    Column("pattern_time_scale", "float64", "1", "Time scale k given the unit's firing pattern (as pattern_g_s)."),
    Column(
        "pattern_time_scale_std",
        "float64",
        "1",
        "Weighted standard deviation of k over the matching twins (k x sd of ln k): how alike the matching twins "
        "are, narrower than what the train fixes (time_scale_std keeps the posterior's).",
    ),
    Column(
        "selection_note",
        "str",
        "",
        "What the twin sampling had to do besides drawing from the posterior (e.g. twins clipped to the "
        "generator's region); empty otherwise.",
    ),
)

# Per-twin columns of the populations table besides the conductances (``g_<channel>``).
MEMBER_COLUMNS: tuple[Column, ...] = (
    Column("member_g_s", "float64", "1", "g_s this twin was generated for (its DIC at threshold)."),
    Column("member_g_u", "float64", "1", "g_u this twin was generated for (its DIC at threshold)."),
    Column(
        "member_time_scale",
        "float64",
        "1",
        "Time scale k this twin was simulated at (its own, drawn from the unit's posterior; the unit's with point "
        "twin sampling).",
    ),
)
MEMBER_NAMES = tuple(c.name for c in MEMBER_COLUMNS)

# Columns that spikeinterface_dic.analysis adds to the estimates.
ANALYSIS_COLUMNS: tuple[Column, ...] = (
    Column(
        "class",
        "int64",
        "",
        "Putative cell class of the unit from spikeinterface_dic.analysis.classify_units "
        "(Gaussian mixture on g_s, g_u and ln k with the estimates' variances deconvolved, number of classes by "
        "BIC; classes numbered by increasing g_s; -1 = not classified).",
    ),
    Column(
        "class_probability",
        "float64",
        "1",
        "Posterior probability of the unit's assigned class (0..1; NaN when not classified).",
    ),
    Column(
        "twin_time_scale",
        "float64",
        "1",
        "Time scale k of the twins' spike times: the final k, after adaptation, or the median of the twins' own k "
        "(member_time_scale) when drawn from the posterior.",
    ),
)

ALL_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        *ESTIMATE_COLUMNS,
        *SORTING_QUALITY_COLUMNS,
        *PIPELINE_ESTIMATE_COLUMNS,
        *TWIN_COLUMNS,
        *ANALYSIS_COLUMNS,
        *MEMBER_COLUMNS,
    )
}


# Keys of the per-unit and per-twin tables.
KEY_COLUMNS: dict[str, Column] = {
    "unit_id": Column("unit_id", "str", "", "Identity of the unit (sorting unit id, NWB unit name or id, CSV id)."),
    "twin_index": Column("twin_index", "int64", "", "Index of the twin within its unit's population (from 0)."),
}


def describe(name: str) -> str:
    """A column's description with its unit, as NWB column descriptions and data dictionaries show it."""
    column = ALL_COLUMNS.get(name)
    if column is None:
        return f"Column {name!r} of the spikeinterface_dic results (not in the schema)."
    unit = {"1": "dimensionless", "": column.dtype if column.dtype != "str" else "text"}.get(column.unit, column.unit)
    return f"{column.description} Unit: {unit}."


def column_names(columns) -> tuple[str, ...]:
    return tuple(c.name for c in columns)


def coerce_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every known column cast to its schema dtype (unknown columns kept as they are)."""
    frame = frame.copy()
    for name in frame.columns:
        column = ALL_COLUMNS.get(name)
        if column is not None:
            values = column.as_array(frame[name].tolist())
            frame[name] = values.astype(object) if column.dtype == "str" else values
    return frame


def column_of(name: str) -> Column | None:
    """The schema column of ``name``: a schema column, a table key, or a conductance column ``g_<channel>``."""
    if name in ALL_COLUMNS:
        return ALL_COLUMNS[name]
    if name in KEY_COLUMNS:
        return KEY_COLUMNS[name]
    if name.startswith("g_"):
        return Column(name, "float64", "mS/cm2", f"Maximal conductance of the {name[2:]} channel of the twin.")
    return None


def data_dictionary(names) -> pd.DataFrame:
    """Column, dtype, unit and description of the given column names (CSV data dictionaries); a name outside the
    schema is listed with an empty description rather than left out."""
    rows = []
    for name in names:
        column = column_of(name) or Column(name, "", "", "")
        rows.append({"column": name, "dtype": column.dtype, "unit": column.unit, "description": column.description})
    return pd.DataFrame(rows, columns=["column", "dtype", "unit", "description"])


# Keys of the per-unit and per-twin tables.
KEY_COLUMNS: dict[str, Column] = {
    "unit_id": Column("unit_id", "str", "", "Identity of the unit (sorting unit id, NWB unit name or id, CSV id)."),
    "twin_index": Column("twin_index", "int64", "", "Index of the twin within its unit's population (from 0)."),
}


__all__ = [
    "Column",
    "ESTIMATE_COLUMNS",
    "PIPELINE_ESTIMATE_COLUMNS",
    "SORTING_QUALITY_COLUMNS",
    "TWIN_COLUMNS",
    "MEMBER_COLUMNS",
    "MEMBER_NAMES",
    "ALL_COLUMNS",
    "ANALYSIS_COLUMNS",
    "describe",
    "column_names",
    "ESTIMATE_NAMES",
    "TWIN_NAMES",
    "coerce_frame",
    "column_of",
    "KEY_COLUMNS",
    "column_of",
    "KEY_COLUMNS",
    "data_dictionary",
]

ESTIMATE_NAMES = column_names(ESTIMATE_COLUMNS)
TWIN_NAMES = column_names(TWIN_COLUMNS)
