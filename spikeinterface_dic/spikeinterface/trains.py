"""Spike trains of a SpikeInterface sorting, and DIC estimates of units recorded in several segments.

Multi-segment sortings: times restart in every segment and the gap between segments is unknown, so an ISI that
crosses a segment boundary would be invented. Each segment is therefore estimated on its own (all segments of all
units in ONE batched pass of the network) and the segment estimates of a unit are combined by inverse-variance
weighting, the spread between segments added to the variance (as :func:`~spikeinterface_dic.infer_dics` combines
windows of one long train). No ISI ever crosses a segment boundary.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..inference.predict import NO_ESTIMATE
from ..schema import ESTIMATE_NAMES
from ..train_checks import clean_spike_train


def unit_spike_trains(sorting, unit_ids=None, issues: list | None = None) -> dict:
    """{unit_id: [times in s of segment 0, segment 1, ...]} (float64, one array per segment, possibly empty).

    Each segment's train goes through the readers' bad-data policy
    (:func:`~spikeinterface_dic.train_checks.clean_spike_train`: NaN/inf dropped, sorted, duplicated times removed;
    negative times, which a segment with a negative t_start has, kept). What it changed is appended to ``issues``
    (when given) as ``"segment 0: unit 3: 2 duplicated spike times removed"`` and issued as one warning. Times come
    from the sorting's sampling frequency, so no time-unit check is made here.

    Parameters
    ----------
    sorting : spikeinterface BaseSorting
    unit_ids : list, default: None
        Units to read (all when None).
    issues : list, default: None
        A list to extend with the issues (e.g. to store them with an extension's data).
    """
    unit_ids = sorting.unit_ids if unit_ids is None else unit_ids
    segments = range(sorting.get_num_segments())
    found, trains = [], {}
    for unit_id in unit_ids:
        trains[unit_id] = []
        for segment in segments:
            times, changes = clean_spike_train(
                sorting.get_unit_spike_train(unit_id, segment_index=segment, return_times=True), unit_id
            )
            trains[unit_id].append(times)
            found.extend(f"segment {segment}: {change}" for change in changes)
    if found:
        shown = "; ".join(found[:5]) + (f"; ... ({len(found) - 5} more)" if len(found) > 5 else "")
        warnings.warn(f"sorting spike trains: {len(found)} problem(s): {shown}", UserWarning, stacklevel=2)
        if issues is not None:
            issues.extend(found)
    return trains


def infer_dics_segments(
    trains: dict,
    model="stg",
    refractory_ms: float = 1.0,
    device: str = "cpu",
    time_scale: float | None = None,
    weights_dir=None,
    time_scale_range: tuple | None = None,
    span_source: str | None = None,
) -> pd.DataFrame:
    """DIC estimates of units whose spikes come in several segments.

    Parameters
    ----------
    trains : dict
        {unit_id: list of 1-D arrays}, spike times in seconds, one array per segment.
    model : "stg" | "da", default: "stg"
    refractory_ms : float, default: 1.0
        ISIs shorter than this are refractory violations; see :func:`spikeinterface_dic.infer_dics`.
    device : str, default: "cpu"
    weights_dir : str | None, default: None
        Network weights made by ``spikeinterface-dic train`` (None: the shipped ones).
    time_scale : float, default: None
        A known time scale k for every unit (see :func:`spikeinterface_dic.infer_dics`); None estimates it.
    time_scale_range, span_source :
        As :func:`spikeinterface_dic.infer_dics` takes them.

    Returns
    -------
    pandas.DataFrame
        As :func:`spikeinterface_dic.infer_dics`, one row per unit (index ``unit_id``). With one segment the row is
        exactly ``infer_dics``'s; with several, see the module docstring. Counts (n_spikes, n_windows,
        n_refractory_violations) are summed over segments, ``novelty`` is the largest, ``label`` that of the segment
        with most spikes, ``in_distribution`` requires every estimated segment to be in distribution and
        ``ood_reason`` names the segments.
    """
    from ..inference.predict import infer_dics

    unit_ids = list(trains)
    pieces, owners = {}, []
    for position, unit_id in enumerate(unit_ids):
        for segment in trains[unit_id]:
            pieces[len(owners)] = np.asarray(segment, dtype=np.float64)
            owners.append(position)
    frame = infer_dics(
        pieces,
        model=model,
        device=device,
        refractory_ms=refractory_ms,
        time_scale=time_scale,
        weights_dir=weights_dir,
        time_scale_range=time_scale_range,
        span_source=span_source,
    )
    if len(owners) == len(unit_ids):  # one segment: infer_dics's rows as they are
        return frame.set_axis(pd.Index(unit_ids, name="unit_id"), axis=0)
    owners = np.asarray(owners, dtype=np.int64)
    rows = [
        combine_segment_estimates(frame.iloc[np.flatnonzero(owners == position)].reset_index(drop=True))
        for position in range(len(unit_ids))
    ]
    out = pd.DataFrame(rows, columns=list(ESTIMATE_NAMES), index=pd.Index(unit_ids, name="unit_id"))
    out["in_distribution"] = out["in_distribution"].astype(bool)
    return out


def _inverse_variance(means, stds) -> tuple[float, float]:
    weights = 1.0 / np.square(stds)
    mean = float((weights * means).sum() / weights.sum())
    return mean, float(np.sqrt(1.0 / weights.sum() + np.var(means)))


def combine_segment_estimates(segments: pd.DataFrame) -> dict:
    """One unit's row from the ``infer_dics`` rows of its segments (row i = segment i)."""
    if len(segments) == 1:
        return {column: segments.iloc[0][column] for column in ESTIMATE_NAMES}
    counts = {name: int(segments[name].sum()) for name in ("n_spikes", "n_windows", "n_refractory_violations")}
    estimated = segments[np.isfinite(segments["g_s"].to_numpy(float))]
    if estimated.empty:
        most = int(segments["n_spikes"].max())
        return dict(
            NO_ESTIMATE,
            label=segments["label"].iloc[int(segments["n_spikes"].to_numpy().argmax())],
            **counts,
            ood_reason=f"at most {most} spikes in each of {len(segments)} segments: at least 3 in one "
            "segment are needed to estimate DICs (ISIs across segment boundaries are not used)",
        )
    row = dict(counts)
    for name in ("g_s", "g_u"):
        row[name], row[f"{name}_std"] = _inverse_variance(
            estimated[name].to_numpy(float), estimated[f"{name}_std"].to_numpy(float)
        )
    time_scale = estimated["time_scale"].to_numpy(float)
    # time_scale_std is k * sd(log k): combine in log k, as the network predicts it.
    time_scale_std = estimated["time_scale_std"].to_numpy(float)
    if np.all(time_scale_std == 0):  # a known time scale (infer_dics(time_scale=k)): the same k in every segment
        log_k, log_k_std = float(np.log(time_scale).mean()), 0.0
    else:
        log_k, log_k_std = _inverse_variance(np.log(time_scale), time_scale_std / time_scale)
    row.update(
        time_scale=math.exp(log_k),
        time_scale_std=math.exp(log_k) * log_k_std,
        time_scale_low=math.exp(log_k - log_k_std),
        time_scale_high=math.exp(log_k + log_k_std),
    )
    row["label"] = estimated["label"].iloc[int(estimated["n_spikes"].to_numpy().argmax())]
    row["in_distribution"] = bool(estimated["in_distribution"].all())
    row["ood_reason"] = "; ".join(
        f"segment {segment}: {reason}"
        for segment, reason in estimated["ood_reason"].items()
        if isinstance(reason, str) and reason
    )
    # The network's bursting probability, weighted by the spikes each segment contributes.
    row["p_bursting"] = float(np.average(estimated["p_bursting"].to_numpy(float), weights=estimated["n_spikes"]))
    row["novelty"] = (
        float(np.nanmax(estimated["novelty"].to_numpy(float)))
        if np.isfinite(estimated["novelty"].to_numpy(float)).any()
        else np.nan
    )
    return row
