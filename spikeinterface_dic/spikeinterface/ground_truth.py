"""Ground-truth probe recordings whose neurons are the package's conductance-based models.

To validate a pipeline "probe recording -> spike sorter -> DICs", the neurons in the recording must have known DICs.
This module simulates STG / DA model neurons at chosen (g_s, g_u, k), and injects their spike trains into a
multi-channel probe recording with SpikeInterface's generators (``generate_templates``, ``NoiseGeneratorRecording``,
``InjectTemplatesRecording``), with two realistic amplitude effects that spike sorters struggle with:

- **burst attenuation**: within each burst the spike amplitude decays linearly from 100 % at the first spike to
  ``burst_attenuation`` (e.g. 0.6) at the last one, as in bursting neurons (Na+ inactivation). The late, small
  spikes of a burst are the ones a sorter misses or gives to another unit.
- **slow drift**: a sinusoidal amplitude modulation of +-``drift_fraction`` over ``drift_period_s``, with a
  per-unit phase.

Example::

    from spikeinterface_dic.spikeinterface.ground_truth import GroundTruthNeuron, simulate_neurons, build_recording

    neurons = [GroundTruthNeuron("stg", g_s=-6.0, g_u=5.0, time_scale=1.0, seed=1)]
    trains = simulate_neurons(neurons, duration_s=60.0)
    truth = build_recording(trains, duration_s=60.0, num_channels=32, seed=0)
    truth.recording, truth.sorting  # inject into a sorter, compare with spikeinterface.comparison

Everything is seeded: the same neurons and seed give the same recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Spike times closer than this are never injected for one unit (an absolute refractory period; the models' shortest
# intra-burst ISIs are ~8 ms, so this only guards user-provided trains).
MIN_INTERVAL_MS = 1.5


@dataclass(frozen=True)
class GroundTruthNeuron:
    """A model neuron of known DICs: ``model`` ("stg" | "da"), target (g_s, g_u), time scale k and seed."""

    model: str
    g_s: float
    g_u: float
    time_scale: float = 1.0
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.model}_gs{self.g_s:+g}_gu{self.g_u:g}_k{self.time_scale:g}_s{self.seed}"


def simulate_neurons(neurons, duration_s: float, noise_std: float = 0.0) -> list[np.ndarray]:
    """Spike times (s, from 0 to ``duration_s``) of each neuron: one member of a population at its DICs, simulated
    with the numba kernel after a transient of 3 s x k (discarded)."""
    from ..population import generate_population
    from ..simulate import simulate

    trains = []
    for neuron in neurons:
        population = generate_population(neuron.model, g_s=neuron.g_s, g_u=neuron.g_u, n=1, seed=neuron.seed)
        transient_s = 3.0 * neuron.time_scale
        train = simulate(
            neuron.model,
            population.gbar,
            duration_s=duration_s + transient_s,
            transient_s=transient_s,
            seed=neuron.seed,
            time_scale=neuron.time_scale,
            noise_std=noise_std,
        )[0]
        trains.append(np.asarray(train[(train >= 0) & (train < duration_s)], dtype=np.float64))
    return trains


def burst_split_ms(isi_ms) -> float:
    """ISI (ms) separating intra-burst from inter-burst intervals: Otsu's split of the log-ISIs (the same split as
    :func:`spikeinterface_dic.features.burst_structure`). NaN for fewer than 2 distinct ISIs."""
    log_isi = np.sort(np.log(np.maximum(np.asarray(isi_ms, dtype=np.float64), 1e-3)))
    if log_isi.size < 2 or log_isi[0] == log_isi[-1]:
        return np.nan
    n = log_isi.size
    below = np.arange(1, n)
    cumulative = np.cumsum(log_isi)
    mean_below = cumulative[:-1] / below
    mean_above = (cumulative[-1] - cumulative[:-1]) / (n - below)
    split = int(np.argmax(below * (n - below) * (mean_above - mean_below) ** 2)) + 1
    return float(np.exp(0.5 * (log_isi[split] + log_isi[split - 1])))


def burst_amplitude_factors(times_s, burst_attenuation: float = 0.6) -> np.ndarray:
    """Per-spike amplitude factor: linear decay from 1 at a burst's first spike to ``burst_attenuation`` at its last.

    Bursts are runs of >= 2 spikes cut at ISIs above the Otsu split; a train is treated as bursting only when
    the split separates clearly (the longer ISIs at least 3x the shorter ones), so tonic trains keep factor 1.
    """
    from ..features import burst_structure, is_repeated_bursting

    times_ms = np.asarray(times_s, dtype=np.float64) * 1e3
    factors = np.ones(times_ms.size)
    if times_ms.size < 3 or burst_attenuation == 1.0:
        return factors
    if not is_repeated_bursting(*burst_structure(times_ms)):
        return factors
    isi = np.diff(times_ms)
    split = burst_split_ms(isi)
    starts = np.concatenate(([0], np.flatnonzero(isi > split) + 1))
    ends = np.concatenate((starts[1:], [times_ms.size]))
    for start, end in zip(starts, ends, strict=True):
        if end - start >= 2:
            factors[start:end] = np.linspace(1.0, burst_attenuation, end - start)
    return factors


def drift_factors(times_s, drift_fraction: float = 0.1, drift_period_s: float = 60.0, phase: float = 0.0):
    """Slow amplitude drift: 1 + drift_fraction x sin(2 pi t / drift_period_s + phase)."""
    times_s = np.asarray(times_s, dtype=np.float64)
    return 1.0 + drift_fraction * np.sin(2.0 * np.pi * times_s / drift_period_s + phase)


@dataclass
class GroundTruthRecording:
    """A probe recording with injected model neurons, its ground-truth sorting and what was injected."""

    recording: object  # spikeinterface BaseRecording (noise + templates), with the probe attached
    sorting: object  # NumpySorting of the true spike trains (unit ids 0..n-1)
    templates: np.ndarray  # (n_units, n_samples, n_channels), uV, before the per-spike factors
    unit_locations: np.ndarray  # (n_units, 3) um
    amplitude_factors: list = field(default_factory=list)  # per unit, per spike (burst attenuation x drift)
    burst_factors: list = field(default_factory=list)  # per unit, per spike (burst attenuation only)
    noise_level_uv: float = 0.0


def make_probe(num_channels: int = 32, num_columns: int = 2, pitch_um: float = 20.0):
    """A single-shank probe of ``num_columns`` aligned columns, ``pitch_um`` apart (a 32-64 channel shank)."""
    from probeinterface import generate_multi_columns_probe

    if num_channels % num_columns:
        raise ValueError(f"num_channels ({num_channels}) must be a multiple of num_columns ({num_columns})")
    probe = generate_multi_columns_probe(
        num_columns=num_columns,
        num_contact_per_column=num_channels // num_columns,
        xpitch=pitch_um,
        ypitch=pitch_um,
        contact_shapes="circle",
        contact_shape_params={"radius": 6},
    )
    probe.set_device_channel_indices(np.arange(num_channels))
    return probe


def build_recording(
    spike_trains_s,
    duration_s: float,
    num_channels: int = 32,
    sampling_frequency: float = 25_000.0,
    noise_level_uv: float = 8.0,
    peak_amplitudes_uv=(60.0, 200.0),
    unit_peak_amplitudes_uv=None,
    burst_attenuation=0.6,
    drift_fraction: float = 0.1,
    drift_period_s: float = 60.0,
    unit_depths_um=None,
    seed: int = 0,
) -> GroundTruthRecording:
    """A probe recording with ``spike_trains_s`` injected (see the module docstring).

    Parameters
    ----------
    spike_trains_s : list of 1-D arrays
        Spike times in seconds of each unit (unit ids 0..n-1 in this order).
    duration_s : float
    num_channels : int, default: 32
        Channels of a 2-column shank with 20 um pitch.
    noise_level_uv : float, default: 8.0
        Standard deviation of the (Gaussian, on-the-fly) background noise per channel.
    peak_amplitudes_uv : (low, high), default: (60, 200)
        Range of the template peak amplitude on the unit's best channel (drawn per unit).
    unit_peak_amplitudes_uv : array | None
        One peak amplitude per unit instead of drawing them.
    burst_attenuation : float | array, default: 0.6
        Amplitude factor at a burst's last spike (1: no attenuation); one value or one per unit.
    drift_fraction, drift_period_s : float
        Slow sinusoidal amplitude drift (+-fraction over the period), random phase per unit.
    unit_depths_um : array | None
        Depth (y) of each unit along the shank; None spreads them evenly. Close depths make units overlap.
    seed : int
    """
    from spikeinterface.core import NumpySorting
    from spikeinterface.generation import InjectTemplatesRecording, NoiseGeneratorRecording, generate_templates

    rng = np.random.default_rng(seed)
    trains = [np.sort(np.asarray(t, dtype=np.float64)) for t in spike_trains_s]
    n_units = len(trains)
    for unit, train in enumerate(trains):
        if train.size and (train[0] < 0 or train[-1] >= duration_s):
            raise ValueError(f"unit {unit}: spike times must lie in [0, {duration_s}) s")
        if train.size > 1 and np.diff(train).min() * 1e3 < MIN_INTERVAL_MS:
            raise ValueError(f"unit {unit}: two spikes closer than {MIN_INTERVAL_MS} ms (not a single neuron)")
    probe = make_probe(num_channels)
    channel_locations = probe.contact_positions
    height = channel_locations[:, 1].max()
    if unit_depths_um is None:
        unit_depths_um = np.linspace(0.1, 0.9, n_units) * height
    unit_locations = np.column_stack(
        [
            rng.uniform(channel_locations[:, 0].min() - 5, channel_locations[:, 0].max() + 5, n_units),
            np.asarray(unit_depths_um, dtype=np.float64),
            rng.uniform(10.0, 30.0, n_units),  # distance from the shank plane
        ]
    )
    ms_before, ms_after = 1.0, 2.5
    templates = generate_templates(
        channel_locations, unit_locations, sampling_frequency, ms_before, ms_after, seed=seed, dtype="float32"
    )
    if unit_peak_amplitudes_uv is None:
        peaks = rng.uniform(peak_amplitudes_uv[0], peak_amplitudes_uv[1], n_units)
    else:
        peaks = np.broadcast_to(np.asarray(unit_peak_amplitudes_uv, dtype=np.float64), (n_units,))
    templates *= (peaks / np.abs(templates).max(axis=(1, 2)))[:, None, None].astype("float32")

    attenuation = np.broadcast_to(np.asarray(burst_attenuation, dtype=np.float64), (n_units,))
    phases = rng.uniform(0.0, 2.0 * np.pi, n_units)
    burst_factors = [burst_amplitude_factors(t, a) for t, a in zip(trains, attenuation, strict=True)]
    factors = [
        b * drift_factors(t, drift_fraction, drift_period_s, p)
        for t, b, p in zip(trains, burst_factors, phases, strict=True)
    ]

    samples = [np.round(t * sampling_frequency).astype(np.int64) for t in trains]
    sorting = NumpySorting.from_unit_dict(
        [{unit: samples[unit] for unit in range(n_units)}], sampling_frequency=sampling_frequency
    )
    # InjectTemplatesRecording takes one factor per spike of sorting.to_spike_vector() (ordered by sample, then
    # unit): each unit's spikes keep their time order in it, so its factors are written in place.
    spike_vector = sorting.to_spike_vector()
    amplitude_factor = np.ones(spike_vector.size, dtype=np.float32)
    for unit in range(n_units):
        amplitude_factor[spike_vector["unit_index"] == unit] = factors[unit]
    num_samples = int(round(duration_s * sampling_frequency))
    noise = NoiseGeneratorRecording(
        num_channels=num_channels,
        sampling_frequency=sampling_frequency,
        durations=[num_samples / sampling_frequency],
        noise_levels=float(noise_level_uv),
        dtype="float32",
        seed=seed,
        strategy="on_the_fly",
    )
    recording = InjectTemplatesRecording(
        sorting,
        templates,
        nbefore=int(round(ms_before * sampling_frequency / 1e3)),
        amplitude_factor=amplitude_factor,
        parent_recording=noise,
        num_samples=[num_samples],
    )
    recording.set_probe(probe)
    sorting.set_property("gt_unit_locations", unit_locations)
    return GroundTruthRecording(
        recording=recording,
        sorting=sorting,
        templates=templates,
        unit_locations=unit_locations,
        amplitude_factors=factors,
        burst_factors=burst_factors,
        noise_level_uv=float(noise_level_uv),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation: DICs and twins of the sorted units against those of the true trains.

SORTED_QUALITY_METRICS = ("snr", "isi_violation", "rp_violation", "presence_ratio", "amplitude_cutoff")


def dic_error(g_s, g_u, neuron: GroundTruthNeuron) -> float:
    """Euclidean distance, in the leak-normalised (g_s, g_u) plane, between an estimate and the neuron's DICs."""
    return float(np.hypot(np.asarray(g_s) - neuron.g_s, np.asarray(g_u) - neuron.g_u))


def quality_metric_params(duration_s: float) -> dict:
    """Metric parameters for short recordings of slow neurons.

    presence_ratio: bins of a tenth of the recording, at most SpikeInterface's 60 s (with its default 60 s bins a
    recording shorter than 60 s gets NaN). amplitude_cutoff: 20 histogram bins and at least 3 spikes per bin, so a
    unit needs 60 spikes instead of SpikeInterface's 500 (a 1 Hz tonic DA neuron fires 60 spikes in a minute).
    """
    return {
        "presence_ratio": {"bin_duration_s": float(min(60.0, duration_s / 10.0))},
        "amplitude_cutoff": {"num_histogram_bins": 20, "amplitudes_bins_min_ratio": 3},
    }


def compute_quality_metrics(sorting_analyzer, n_jobs: int = 1, seed: int = 0) -> pd.DataFrame:
    """What a user computes after sorting: templates, spike amplitudes and the quality metrics the gate reads."""
    job_kwargs = dict(n_jobs=n_jobs, progress_bar=False)
    # Seeded: the spikes behind the templates and the noise chunks are drawn at random (SNR, amplitudes).
    sorting_analyzer.compute(
        {
            "random_spikes": {"seed": seed},
            "noise_levels": {"random_slices_kwargs": {"seed": seed}},
            "templates": {},
        },
        **job_kwargs,
    )
    sorting_analyzer.compute("spike_amplitudes", **job_kwargs)
    duration_s = sorting_analyzer.get_total_duration()
    return sorting_analyzer.compute(
        "quality_metrics",
        metric_names=list(SORTED_QUALITY_METRICS),
        metric_params=quality_metric_params(duration_s),
        seed=seed,
    ).get_data()


def _dics_and_twins(sorting_analyzer, model: str, time_scale, twin_params: dict | None, n_jobs: int):
    """DIC (and twin) tables of an analyzer's units for one model family (and known k, or None)."""
    sorting_analyzer.compute("dynamic_input_conductances", model=model, time_scale=time_scale)
    estimates = sorting_analyzer.get_extension("dynamic_input_conductances").get_data()
    if twin_params is None:
        return estimates, None
    sorting_analyzer.compute("twin_populations", n_jobs=n_jobs, progress_bar=False, **twin_params)
    return estimates, sorting_analyzer.get_extension("twin_populations").get_data()


def evaluate_sorting(
    truth: GroundTruthRecording,
    neurons,
    sorting,
    duration_s: float,
    twin_params: dict | None = None,
    n_jobs: int = 1,
    sorting_analyzer=None,
    known_time_scale: bool = True,
) -> pd.DataFrame:
    """Per unit: the sorter's accuracy against the ground truth, the quality metrics, and the DICs / twin fidelity
    of the sorted train next to those of the true train.

    The sorted units are matched one-to-one to the true units (Hungarian matching of
    ``spikeinterface.comparison.compare_sorter_to_ground_truth``). Each matched sorted unit is analysed with its true
    neuron's model family (as a user analyses each recording region with the right family); unmatched sorted units
    (false units, splits) are analysed with the STG network and have no error. Units are never dropped.

    Parameters
    ----------
    truth : GroundTruthRecording
    neurons : list of GroundTruthNeuron, in the ground-truth unit order
    sorting : BaseSorting of the spike sorter
    duration_s : float
    twin_params : dict | None
        Parameters of the "twin_populations" extension (None: no twins).
    sorting_analyzer : SortingAnalyzer | None
        The sorted units' analyzer with "quality_metrics" (None: created in memory and computed here).
    known_time_scale : bool, default: True
        Give each unit's true k to the DIC extension (units grouped by model and k). With k unknown, the networks'
        own error on these 60 s model trains is large (docs/probe_ground_truth.md), which would hide the effect of
        sorting; a known k isolates it.

    Returns
    -------
    DataFrame, one row per true unit then one per unmatched sorted unit. Columns: gt_unit, sorted_unit, model,
    true_g_s, true_g_u, true_time_scale, burst_attenuation (amplitude factor at a burst's last spike, before drift),
    accuracy, recall, precision, the quality metrics, n_spikes / g_s / g_u / time_scale / label / in_distribution /
    dic_error / fraction_matching of the true and sorted trains (suffixes _true and _sorted), sorting_quality_ok and
    sorting_quality_reason (the gate on the sorted unit).
    """
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.core import create_sorting_analyzer

    from .analyzer import create_sorting_analyzer_from_sorting

    comparison = compare_sorter_to_ground_truth(truth.sorting, sorting, exhaustive_gt=True)
    performance = comparison.get_performance(method="by_unit")
    match = comparison.hungarian_match_12
    if sorting_analyzer is None:
        sorting_analyzer = create_sorting_analyzer(sorting, truth.recording, format="memory", sparse=True, seed=0)
        compute_quality_metrics(sorting_analyzer, n_jobs=n_jobs)
    metrics = sorting_analyzer.get_extension("quality_metrics").get_data()

    rows = {}
    for gt_unit, neuron in enumerate(neurons):
        rows[gt_unit] = {
            "gt_unit": gt_unit,
            "sorted_unit": match.get(gt_unit, -1),
            "model": neuron.model,
            "true_g_s": neuron.g_s,
            "true_g_u": neuron.g_u,
            "true_time_scale": neuron.time_scale,
            "burst_attenuation": float(truth.burst_factors[gt_unit].min()) if truth.burst_factors[gt_unit].size else 1,
            **{name: float(performance.loc[gt_unit, name]) for name in ("accuracy", "recall", "precision")},
        }
    matched_sorted = {row["sorted_unit"]: gt for gt, row in rows.items() if row["sorted_unit"] != -1}
    unmatched_sorted = [u for u in sorting.unit_ids if u not in matched_sorted]

    def record(row, estimates, twins, unit, suffix, neuron):
        row[f"n_spikes_{suffix}"] = int(estimates.loc[unit, "n_spikes"])
        for column in ("g_s", "g_u", "time_scale", "label", "in_distribution"):
            row[f"{column}_{suffix}"] = estimates.loc[unit, column]
        row[f"dic_error_{suffix}"] = (
            np.nan if neuron is None else dic_error(estimates.loc[unit, "g_s"], estimates.loc[unit, "g_u"], neuron)
        )
        row[f"fraction_matching_{suffix}"] = np.nan if twins is None else float(twins.loc[unit, "fraction_matching"])
        row[f"fidelity_note_{suffix}"] = "" if twins is None else str(twins.loc[unit, "fidelity_note"])
        if suffix == "sorted":
            row["sorting_quality_ok"] = bool(estimates.loc[unit, "sorting_quality_ok"])
            row["sorting_quality_reason"] = str(estimates.loc[unit, "sorting_quality_reason"])
            for name in metrics.columns:
                row[name] = float(metrics.loc[unit, name])

    groups = sorted({(n.model, n.time_scale if known_time_scale else None) for n in neurons}, key=str)
    for model, time_scale in groups:
        gt_units = [
            gt
            for gt, n in enumerate(neurons)
            if n.model == model and (time_scale is None or n.time_scale == time_scale)
        ]
        true_analyzer = create_sorting_analyzer_from_sorting(truth.sorting.select_units(gt_units), [duration_s])
        estimates, twins = _dics_and_twins(true_analyzer, model, time_scale, twin_params, n_jobs)
        for gt in gt_units:
            record(rows[gt], estimates, twins, gt, "true", neurons[gt])
        sorted_units = [rows[gt]["sorted_unit"] for gt in gt_units if rows[gt]["sorted_unit"] != -1]
        if sorted_units:
            sub_analyzer = sorting_analyzer.select_units(sorted_units)
            estimates, twins = _dics_and_twins(sub_analyzer, model, time_scale, twin_params, n_jobs)
            for unit in sorted_units:
                gt = matched_sorted[unit]
                record(rows[gt], estimates, twins, unit, "sorted", neurons[gt])
    table = [rows[gt] for gt in range(len(neurons))]
    if unmatched_sorted:
        estimates, _ = _dics_and_twins(sorting_analyzer.select_units(unmatched_sorted), "stg", None, None, n_jobs)
        for unit in unmatched_sorted:
            row = {"gt_unit": -1, "sorted_unit": unit, "model": "unmatched"}
            record(row, estimates, None, unit, "sorted", None)
            table.append(row)
    return pd.DataFrame(table)


def write_ground_truth_nwb(path, truth: GroundTruthRecording, neurons, duration_s: float, session_id: str = "gt"):
    """Write the ground-truth units to a new NWB file: spike times, ``obs_intervals`` [0, duration_s], and one column
    per known quantity (model, true_g_s, true_g_u, true_time_scale, burst_attenuation, unit_name = the neuron's
    name). The traces are not written (their binary folder is the sorter's input); ``spikeinterface-dic run`` on this
    file gives the true-train DICs, the reference of a validation.
    """
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    nwbfile = NWBFile(
        session_description="spikeinterface-dic ground truth: model neurons injected into a probe recording",
        identifier=f"spikeinterface-dic-ground-truth-{session_id}",
        session_start_time=datetime(2000, 1, 1, tzinfo=timezone.utc),  # fixed: same inputs, same file content
        session_id=session_id,
    )
    columns = {
        "unit_name": "Name of the model neuron (model, target DICs, k, seed).",
        "model": "Model family of the neuron (stg | da).",
        "true_g_s": "Slow DIC of the neuron at threshold (leak-normalised), from its conductances.",
        "true_g_u": "Ultraslow DIC of the neuron at threshold (leak-normalised).",
        "true_time_scale": "Time scale k of the neuron.",
        "burst_attenuation": "Amplitude factor of the last spike of a burst (1: no attenuation), before drift.",
    }
    for name, description in columns.items():
        nwbfile.add_unit_column(name=name, description=description)
    for unit, neuron in enumerate(neurons):
        times = truth.sorting.get_unit_spike_train(unit, return_times=True)
        factors = truth.burst_factors[unit]
        nwbfile.add_unit(
            spike_times=np.asarray(times, dtype=np.float64),
            obs_intervals=[[0.0, float(duration_s)]],
            unit_name=neuron.name,
            model=neuron.model,
            true_g_s=float(neuron.g_s),
            true_g_u=float(neuron.g_u),
            true_time_scale=float(neuron.time_scale),
            burst_attenuation=float(factors.min()) if factors.size else 1.0,
        )
    with NWBHDF5IO(str(path), "w") as writer:
        writer.write(nwbfile)
    return path


__all__ = [
    "GroundTruthNeuron",
    "GroundTruthRecording",
    "build_recording",
    "compute_quality_metrics",
    "dic_error",
    "evaluate_sorting",
    "burst_amplitude_factors",
    "burst_split_ms",
    "drift_factors",
    "make_probe",
    "simulate_neurons",
    "write_ground_truth_nwb",
]
