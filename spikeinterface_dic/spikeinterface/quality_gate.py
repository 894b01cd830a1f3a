"""Sorting-quality gate: flag units whose sorting errors make their DICs unreliable (never drop them).

DICs are read off the ISI pattern, so the two sorting errors that move them are missed spikes (the late, small
spikes of bursts fall under the detection threshold: the intra-burst pattern and spikes per burst change) and
contamination (foreign spikes fill the inter-burst silences). SpikeInterface's quality metrics estimate both per
unit, from the recording, without ground truth:

- ``amplitude_cutoff`` (metric "amplitude_cutoff", needs "spike_amplitudes" or "amplitude_scalings"): the estimated
  fraction of the unit's spikes lost below the detection threshold;
- ``rp_contamination`` (metric "rp_violation"): the estimated fraction of the unit's spikes that belong to other
  neurons, from refractory-period violations;
- ``presence_ratio`` (metric "presence_ratio"): the fraction of the recording in which the unit fires (a unit that
  drifts out of the probe loses whole stretches of its train).

The thresholds below come from the ground-truth study (benchmarks/probe_ground_truth.py, docs/probe_ground_truth.md):
there, each model neuron's true 60 s train was degraded by a known fraction of missed spikes (the lowest-amplitude
ones first, as a sorter loses them) or of Poisson contamination, and the DIC error was compared with the error of the
intact train. The threshold is the smallest level at which a quarter of the study's neurons have a DIC error of
twice their intact-train error or more (errors floored at :data:`DIC_ERROR_FLOOR`). See the docs for the measured
curves and the precision / recall of the flag on the units of a real spike sorter (tridesclous2). Known limit,
measured there: ``amplitude_cutoff`` does not see the late burst spikes a sorter misses (it assumes a symmetric
amplitude distribution), so the flag catches contamination and missing metrics, not missed burst spikes; its absence
is no guarantee.

The gate never computes metrics itself (that needs the traces and can take minutes): when the analyzer has no
"quality_metrics" extension, the unit is "not checked" and the reason says what to compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# Measured in docs/probe_ground_truth.md ("Thresholds"): the missed-spike fraction (lowest amplitudes first) and the
# Poisson contamination fraction at which a quarter of the study's 11 model neurons (k known) have their DIC error
# doubled. Contamination hurts far more than missed spikes: foreign spikes fill the silences between bursts.
MAX_AMPLITUDE_CUTOFF = 0.15
MAX_RP_CONTAMINATION = 0.02
# Not measured as a DIC-error threshold (the study's units are present throughout): the usual curation default,
# so that a unit absent for more than a tenth of the recording is not silently trusted.
MIN_PRESENCE_RATIO = 0.9
# Absolute floor of "DIC error" (Euclidean distance in the leak-normalised (g_s, g_u) plane) below which an error is
# not called doubled: the network's own error on intact 60 s trains is of this order (docs/probe_ground_truth.md).
DIC_ERROR_FLOOR = 0.5

QUALITY_METRICS_EXTENSION = "quality_metrics"
# The SpikeInterface metric names the gate reads, and the columns they produce.
GATE_METRIC_NAMES = ("amplitude_cutoff", "rp_violation", "presence_ratio")
_METRIC_OF_COLUMN = {"amplitude_cutoff": "amplitude_cutoff", "rp_contamination": "rp_violation"}
COMPUTE_HINT = (
    "compute the 'quality_metrics' extension first (it needs 'spike_amplitudes': "
    "analyzer.compute(['random_spikes', 'templates', 'spike_amplitudes']); "
    "analyzer.compute('quality_metrics', metric_names=['amplitude_cutoff', 'rp_violation', 'presence_ratio']))"
)


@dataclass(frozen=True)
class SortingQualityThresholds:
    """Limits on SpikeInterface quality metrics beyond which a unit's DICs are flagged (None: not checked)."""

    max_amplitude_cutoff: float | None = MAX_AMPLITUDE_CUTOFF
    max_rp_contamination: float | None = MAX_RP_CONTAMINATION
    min_presence_ratio: float | None = MIN_PRESENCE_RATIO

    @classmethod
    def from_dict(cls, values: dict | None) -> SortingQualityThresholds:
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown sorting quality thresholds {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**{k: None if v is None else float(v) for k, v in values.items()})

    def to_dict(self) -> dict:
        return asdict(self)


# Why SpikeInterface returns NaN for a metric (the reason text says it, so the user knows what to change).
_NAN_HINTS = {
    "amplitude_cutoff": "too few spikes for its amplitude histogram: SpikeInterface needs num_histogram_bins x "
    "amplitudes_bins_min_ratio spikes (500 by default; lower them in metric_params)",
    "presence_ratio": "recording shorter than its bin_duration_s (60 s by default; lower it in metric_params)",
}


def _checks(thresholds: SortingQualityThresholds):
    """(column, limit, is_upper_limit, words) of every active check."""
    checks = [
        ("amplitude_cutoff", thresholds.max_amplitude_cutoff, True, "estimated missed spikes (amplitude_cutoff)"),
        ("rp_contamination", thresholds.max_rp_contamination, True, "estimated contamination (rp_contamination)"),
        ("presence_ratio", thresholds.min_presence_ratio, False, "presence_ratio"),
    ]
    return [check for check in checks if check[1] is not None]


def quality_metrics_of(sorting_analyzer) -> pd.DataFrame | None:
    """The analyzer's computed quality metrics (DataFrame indexed by unit id), or None when not computed."""
    if sorting_analyzer is None or not sorting_analyzer.has_extension(QUALITY_METRICS_EXTENSION):
        return None
    extension = sorting_analyzer.get_extension(QUALITY_METRICS_EXTENSION)
    return None if extension is None else extension.get_data()


def sorting_quality_flags(metrics: pd.DataFrame | None, unit_ids, thresholds=None) -> tuple[np.ndarray, list[str]]:
    """``(ok, reasons)`` of every unit: ok is True only when every threshold was checked and passed.

    Parameters
    ----------
    metrics : DataFrame | None
        Quality metrics indexed by unit id (SpikeInterface's ``quality_metrics`` extension data); None when the
        analyzer has none: every unit is "not checked" and the reason says what to compute.
    unit_ids : sequence
    thresholds : SortingQualityThresholds | dict | None
        None: the measured defaults.

    Returns
    -------
    ok : bool array
        False for units over a threshold and for units that could not be checked (a missing metric or a NaN).
    reasons : list of str
        "" when ok; otherwise every failed or missing check, in words.
    """
    if not isinstance(thresholds, SortingQualityThresholds):
        thresholds = SortingQualityThresholds.from_dict(thresholds)
    unit_ids = list(unit_ids)
    checks = _checks(thresholds)
    if metrics is None:
        return np.zeros(len(unit_ids), dtype=bool), [f"not checked: {COMPUTE_HINT}"] * len(unit_ids)
    missing_metrics = sorted(
        {_METRIC_OF_COLUMN.get(column, column) for column, *_ in checks if column not in metrics.columns}
    )
    ok = np.ones(len(unit_ids), dtype=bool)
    reasons = []
    for index, unit_id in enumerate(unit_ids):
        problems = []
        if missing_metrics:
            problems.append(
                f"not checked: the quality metrics lack {missing_metrics}; compute them with "
                f"analyzer.compute('quality_metrics', metric_names={list(GATE_METRIC_NAMES)})"
            )
        row = metrics.loc[unit_id] if unit_id in metrics.index else None
        for column, limit, upper, words in checks:
            if column not in metrics.columns:
                continue
            value = np.nan if row is None else float(row[column])
            if not np.isfinite(value):
                hint = _NAN_HINTS.get(column)
                problems.append(f"{words} could not be computed" + (f" ({hint})" if hint else ""))
            elif (value > limit) if upper else (value < limit):
                relation = "above" if upper else "below"
                problems.append(f"{words} {value:.2f} {relation} {limit:g}")
        ok[index] = not problems
        reasons.append("; ".join(problems))
    return ok, reasons


def sorting_quality_of(sorting_analyzer, unit_ids, thresholds=None) -> tuple[np.ndarray, list[str]]:
    """:func:`sorting_quality_flags` on the analyzer's ``quality_metrics`` extension (None when not computed)."""
    return sorting_quality_flags(quality_metrics_of(sorting_analyzer), unit_ids, thresholds)


__all__ = [
    "COMPUTE_HINT",
    "DIC_ERROR_FLOOR",
    "GATE_METRIC_NAMES",
    "MAX_AMPLITUDE_CUTOFF",
    "MAX_RP_CONTAMINATION",
    "MIN_PRESENCE_RATIO",
    "SortingQualityThresholds",
    "quality_metrics_of",
    "sorting_quality_flags",
    "sorting_quality_of",
]
