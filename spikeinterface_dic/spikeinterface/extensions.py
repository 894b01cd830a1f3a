"""SpikeInterface analyzer extensions: DICs of every unit, and the degenerate twin populations they define.

Both are registered when ``spikeinterface_dic`` is imported::

    import spikeinterface_dic  # registers "dynamic_input_conductances" and "twin_populations"

    analyzer.compute("dynamic_input_conductances", model="stg")
    analyzer.compute("twin_populations", population_size=100, simulate=True, n_jobs=-1)
    estimates = analyzer.get_extension("dynamic_input_conductances").get_data()  # DataFrame indexed by unit_id

``self.data`` holds ndarrays only (per-unit arrays in ``unit_ids`` order, ragged data as flat values + offsets,
strings as fixed-width unicode), so the memory, binary_folder and zarr backends store them without pickle.
An analyzer saved with these extensions must be loaded after ``import spikeinterface_dic`` (or with
:func:`spikeinterface_dic.spikeinterface.load_sorting_analyzer`): SpikeInterface has no plugin discovery.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd
from spikeinterface.core.job_tools import fix_job_kwargs
from spikeinterface.core.sortinganalyzer import AnalyzerExtension, register_result_extension

from ..config import INFERENCE_SETTINGS, TWIN_SETTINGS, RunConfig
from ..schema import ESTIMATE_COLUMNS, ESTIMATE_NAMES, MEMBER_NAMES, SORTING_QUALITY_COLUMNS, TWIN_NAMES
from ..twin_stage import FINAL_TIME_SCALE_COLUMNS
from .quality_gate import SortingQualityThresholds, sorting_quality_of
from .ragged import unpack_rows
from .trains import infer_dics_segments, unit_spike_trains
from .twins import UNIT_KEYS, compute_twin_data, concatenate_twin_units, population_sizes, take_twin_units


def _estimates_to_data(frame: pd.DataFrame) -> dict:
    """The estimates as plain ndarrays of their schema dtypes (stored without pickle by every backend)."""
    return {column.name: column.as_array(frame[column.name].tolist()) for column in ESTIMATE_COLUMNS}


def compute_dic_data(sorting, unit_ids, config: RunConfig) -> dict:
    """Data dict of ComputeDynamicInputConductances for ``unit_ids`` of a bare sorting (all segments used)."""
    unit_ids = list(unit_ids)
    if not unit_ids:
        return _estimates_to_data(pd.DataFrame(columns=list(ESTIMATE_NAMES)))
    trains = unit_spike_trains(sorting, unit_ids)
    frame = infer_dics_segments(
        trains,
        config.model_declaration,
        config.refractory_ms,
        time_scale=config.time_scale,
        weights_dir=config.weights_dir,
        time_scale_range=config.time_scale_range,
        span_source=config.span_source,
    )
    return _estimates_to_data(frame)


def _inference_config(params: dict, **more) -> RunConfig:
    """The run configuration of the extensions' params (the gate's thresholds are not a run setting)."""
    return RunConfig.from_dict({key: value for key, value in {**params, **more}.items() if key != "sorting_quality"})


def _take_units(data: dict, unit_indices) -> dict:
    unit_indices = np.asarray(unit_indices, dtype=np.int64).reshape(-1)
    return {key: np.asarray(value)[unit_indices] for key, value in data.items()}


def _concatenate_units(parts) -> dict:
    parts = list(parts)
    return {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in parts[0]}


class _UnitwiseExtension(AnalyzerExtension):
    """Shared unit bookkeeping: select, and re-estimate only the merged / split units."""

    need_recording = False
    use_nodepipeline = False
    need_backward_compatibility_on_load = False
    _take = staticmethod(_take_units)
    _concatenate = staticmethod(_concatenate_units)

    def _compute_units(self, sorting_analyzer, unit_ids, job_kwargs) -> dict:
        raise NotImplementedError

    def _select_units_extension_data(self, unit_ids):
        return self._take(self.data, self.sorting_analyzer.sorting.ids_to_indices(unit_ids))

    def _recompute_changed_units(self, new_sorting_analyzer, changed_unit_ids, job_kwargs) -> dict:
        changed = list(changed_unit_ids)
        changed_set = set(changed)
        kept = [unit_id for unit_id in new_sorting_analyzer.unit_ids if unit_id not in changed_set]
        kept_indices = self.sorting_analyzer.sorting.ids_to_indices(kept) if kept else np.empty(0, dtype=np.int64)
        combined = self._concatenate(
            [self._take(self.data, kept_indices), self._compute_units(new_sorting_analyzer, changed, job_kwargs)]
        )
        position = {unit_id: index for index, unit_id in enumerate(kept + changed)}
        return self._take(combined, [position[unit_id] for unit_id in new_sorting_analyzer.unit_ids])

    def _merge_extension_data(
        self, merge_unit_groups, new_unit_ids, new_sorting_analyzer, keep_mask=None, verbose=False, **job_kwargs
    ):
        # The merged units get new spike trains (censored by keep_mask in the new sorting): estimate them again.
        return self._recompute_changed_units(new_sorting_analyzer, new_unit_ids, job_kwargs)

    def _split_extension_data(self, split_units, new_unit_ids, new_sorting_analyzer, verbose=False, **job_kwargs):
        return self._recompute_changed_units(new_sorting_analyzer, list(chain(*new_unit_ids)), job_kwargs)

    def _unit_index(self, unit_id) -> int:
        return int(self.sorting_analyzer.sorting.id_to_index(unit_id))


class ComputeDynamicInputConductances(_UnitwiseExtension):
    """Dynamic input conductances (g_s, g_u) at threshold and time scale k of every unit, from its spike times.

    The shipped network of the chosen model family reads each unit's ISIs (all segments; no ISI crosses a segment
    boundary, see :mod:`spikeinterface_dic.spikeinterface.trains`). It is one batched forward pass over all units,
    so job kwargs do not apply (torch uses its own threads) and the result does not depend on them.

    Parameters
    ----------
    model : "stg" | "da", default: "stg"
        Model family whose network interprets the spike trains.
    refractory_ms : float, default: 1.0
        ISIs shorter than this are refractory violations (sorting errors); the second spike of each is dropped and
        counted in ``n_refractory_violations``.
    weights_dir : str | None, default: None
        Network weights made by ``spikeinterface-dic train`` (None: the shipped ones).
    time_scale_range : (k_low, k_high) | None, default: None
        A prior range of every unit's k, applied to the joint posterior (docs/posterior.md).
    span_source : "recording" | "window" | None, default: None
        How the units' trains came to span what they span: "recording" for a sorting of a real recording (its
        duration says nothing of k), "window" for simulated windows times k; None weighs both by their evidence
        (:func:`spikeinterface_dic.infer_dics`).
    time_scale : float | None, default: None
        Known time scale k of every unit (e.g. from the recording temperature and a Q10): used as given, with a
        zero-width interval, instead of estimated (see :func:`spikeinterface_dic.infer_dics`).
    sorting_quality : dict | None, default: None
        Thresholds of the sorting-quality gate (keys of
        :class:`spikeinterface_dic.spikeinterface.quality_gate.SortingQualityThresholds`; a None value disables that
        check); None uses the thresholds measured in docs/probe_ground_truth.md. The gate reads the analyzer's
        "quality_metrics" extension and never computes it: without it every unit is "not checked".

    Returns
    -------
    estimates : pandas.DataFrame
        Indexed by unit_id. Columns: g_s, g_u, g_s_std, g_u_std (leak-normalised DICs and their sd), time_scale,
        time_scale_std, time_scale_low, time_scale_high (k and its 1-sd interval), label ("silent" | "spiking" |
        "bursting"), in_distribution (bool), ood_reason (str, "" when in distribution), n_spikes (after removing
        refractory violations), n_windows, n_refractory_violations, novelty, and the sorting-quality gate:
        sorting_quality_ok (bool), sorting_quality_reason (str). Units with fewer than 3 spikes in every
        segment get NaN estimates and a reason, never an error; flagged units are kept.
    """

    extension_name = "dynamic_input_conductances"
    depend_on = []
    need_job_kwargs = False

    @classmethod
    def get_optional_dependencies(cls, **params):
        # The gate reads "quality_metrics" when present: computed in one call, the metrics come first. Metrics
        # recomputed later are not seen until this extension is computed again (its gate columns are stored).
        return ["quality_metrics"]

    def _set_params(
        self,
        model: str = "stg",
        refractory_ms: float = 1.0,
        time_scale: float | None = None,
        weights_dir=None,
        time_scale_range: tuple | None = None,
        sorting_quality: dict | None = None,
        span_source: str | None = None,
    ):
        config = RunConfig(
            model=model,
            refractory_ms=refractory_ms,
            time_scale=time_scale,
            weights_dir=weights_dir,
            time_scale_range=time_scale_range,
            span_source=span_source,
        )
        if config.time_scale is not None and not isinstance(config.time_scale, float):
            raise ValueError("time_scale of the extension is one k for every unit (or None to estimate it)")
        settings = config.to_dict()
        if sorting_quality is not None:  # validated now, stored as a plain dict (JSON params)
            sorting_quality = SortingQualityThresholds.from_dict(sorting_quality).to_dict()
        return {**{name: settings[name] for name in INFERENCE_SETTINGS}, "sorting_quality": sorting_quality}

    def _compute_units(self, sorting_analyzer, unit_ids, job_kwargs) -> dict:
        data = compute_dic_data(sorting_analyzer.sorting, unit_ids, _inference_config(self.params))
        ok, reasons = sorting_quality_of(sorting_analyzer, unit_ids, self.params.get("sorting_quality"))
        for column, values in zip(SORTING_QUALITY_COLUMNS, (ok, reasons), strict=True):
            data[column.name] = column.as_array(values)
        return data

    def _run(self, verbose=False):
        self.data.update(self._compute_units(self.sorting_analyzer, self.sorting_analyzer.unit_ids, {}))

    def _get_data(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {column: np.asarray(self.data[column]) for column in ESTIMATE_NAMES},
            index=pd.Index(self.sorting_analyzer.unit_ids, name="unit_id"),
        )
        for column in SORTING_QUALITY_COLUMNS:  # absent from analyzers saved before the gate existed
            if column.name in self.data:
                frame[column.name] = np.asarray(self.data[column.name])
        return frame


class ComputeTwinPopulations(_UnitwiseExtension):
    """Degenerate twin populations of every unit, generated at its estimated DICs, optionally simulated and scored.

    Requires "dynamic_input_conductances" (its model and refractory_ms are used). For each unit with an estimate,
    ``population_size`` conductance sets sharing its (g_s, g_u) are drawn (seeded by (seed, unit id), the same
    populations as :func:`spikeinterface_dic.run_pipeline`), simulated (spike times scaled by the unit's time scale)
    and compared with the unit's train: the segment with most spikes, refractory violations removed.

    Parameters
    ----------
    population_size : int, default: 100
        Twins per unit.
    simulate : bool, default: True
        Simulate the twins and score their fidelity.
    duration_s : float | None, default: None
        Recorded window of each twin in seconds of real time; None uses the model's default window in its own time.
    noise_std : float, default: 0.0
        Standard deviation of the noisy current injected into the twins (uA/cm2).
    seed : int, default: 0
        Every random step derives from it and the unit id, so results do not depend on n_jobs or on other units.
    frequency_tolerance : float, default: 0.1
        Relative tolerance on the main frequency for a twin to match its unit.
    spikes_per_burst_tolerance : float, default: 1.0
        Tolerance, in spikes, on spikes per burst for a twin to match its unit (its floor).
    spikes_per_burst_relative_tolerance : float, default: 0.10
        Relative tolerance on spikes per burst, where larger than ``spikes_per_burst_tolerance``.
    adapt_time_scale : bool, default: True
        Rescale each unit's time scale so that its twins' median main frequency equals the recorded one, when most
        twins fire in the recorded pattern (see :func:`spikeinterface_dic.run_pipeline`). The DIC extension keeps
        the network's time scale; the one used for the twins is ``twin_time_scale``.
    twin_selection : bool, default: True
        Refine the twins until they reproduce the unit's pattern (see ``RunConfig.twin_selection``).
    twin_sampling : "posterior" | "point", default: "posterior"
        Each twin's own (g_s, g_u, k) drawn from the unit's posterior, or every twin built for the unit's point
        estimate (see :mod:`spikeinterface_dic.twin_posterior`). Each twin's parameters are in
        ``get_population(unit_id)`` (member_g_s, member_g_u, member_time_scale).
    **job_kwargs
        ``n_jobs`` is the number of threads of the simulation kernel (-1: all cores; SpikeInterface's global job
        kwargs apply); ``progress_bar`` shows a bar over units.

    Returns
    -------
    twin_summary : pandas.DataFrame
        Indexed by unit_id: population_size, target_g_s, target_g_u, twin_time_scale, population_error; the final
        time scale (time_scale, time_scale_std, time_scale_low, time_scale_high: after adaptation, when the twins
        were simulated with adapt_time_scale) and the network's (time_scale_network); n_twins and the fidelity
        columns of :data:`spikeinterface_dic.schema.TWIN_COLUMNS` (NaN where not simulated).
        ``get_population(unit_id)``, ``get_twin_parameters(unit_id)`` and ``get_twin_spike_trains(unit_id)`` return
        a unit's members, each twin's (g_s, g_u, k) and the twins' spike trains.
    """

    extension_name = "twin_populations"
    depend_on = ["dynamic_input_conductances"]
    need_job_kwargs = True
    _take = staticmethod(take_twin_units)
    _concatenate = staticmethod(concatenate_twin_units)

    def _set_params(
        self,
        population_size: int = 100,
        simulate: bool = True,
        duration_s: float | None = None,
        noise_std_uA_cm2: float = 0.0,
        seed: int = 0,
        frequency_tolerance: float = 0.1,
        spikes_per_burst_tolerance: float = 1.0,
        spikes_per_burst_relative_tolerance: float = 0.10,
        adapt_time_scale: bool = True,
        twin_selection: bool = True,
        twin_sampling: str = "posterior",
        noise_std: float | None = None,
    ):
        if noise_std is not None:  # the name before the run configuration existed
            noise_std_uA_cm2 = noise_std
        settings = RunConfig(
            population_size=population_size,
            simulate=simulate,
            duration_s=duration_s,
            noise_std_uA_cm2=noise_std_uA_cm2,
            seed=seed,
            frequency_tolerance=frequency_tolerance,
            spikes_per_burst_tolerance=spikes_per_burst_tolerance,
            spikes_per_burst_relative_tolerance=spikes_per_burst_relative_tolerance,
            adapt_time_scale=adapt_time_scale,
            twin_selection=twin_selection,
            twin_sampling=twin_sampling,
        ).to_dict()
        return {name: settings[name] for name in TWIN_SETTINGS}

    def run_config(self) -> RunConfig:
        """The run configuration of these twins: the DIC extension's settings and this extension's."""
        parent = self.sorting_analyzer.get_extension(ComputeDynamicInputConductances.extension_name)
        if parent is None:
            raise ValueError("twin_populations needs the 'dynamic_input_conductances' extension: compute it first")
        return _inference_config(parent.params, **self.params)

    def _compute_units(self, sorting_analyzer, unit_ids, job_kwargs) -> dict:
        parent = sorting_analyzer.get_extension(ComputeDynamicInputConductances.extension_name)
        if parent is None:
            raise ValueError("twin_populations needs the 'dynamic_input_conductances' extension: compute it first")
        job_kwargs = fix_job_kwargs(job_kwargs)
        return compute_twin_data(
            sorting_analyzer.sorting,
            unit_ids,
            parent.get_data(),
            _inference_config(parent.params, **self.params),
            n_jobs=job_kwargs["n_jobs"],
            progress_bar=job_kwargs["progress_bar"],
        )

    def _run(self, verbose=False, **job_kwargs):
        self.data.update(self._compute_units(self.sorting_analyzer, self.sorting_analyzer.unit_ids, job_kwargs))

    def _get_data(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {"population_size": population_sizes(self.data)},
            index=pd.Index(self.sorting_analyzer.unit_ids, name="unit_id"),
        )
        for column in UNIT_KEYS:
            frame[column] = np.asarray(self.data[column])
        return frame

    @property
    def conductance_names(self) -> tuple:
        return tuple(str(name) for name in np.asarray(self.data["conductance_names"]))

    def _member_rows(self, unit_id) -> range:
        offsets = np.asarray(self.data["population_offsets"])
        index = self._unit_index(unit_id)
        return range(int(offsets[index]), int(offsets[index + 1]))

    def get_population(self, unit_id) -> pd.DataFrame:
        """Members of a unit's population: one row per twin (index twin_index), columns g_<channel> (mS/cm2)."""
        rows = self._member_rows(unit_id)
        gbar = np.asarray(self.data["population_gbar"])[rows.start : rows.stop]
        return pd.DataFrame(
            gbar,
            columns=[f"g_{name}" for name in self.conductance_names],
            index=pd.RangeIndex(len(rows), name="twin_index"),
        )

    def get_twin_parameters(self, unit_id) -> pd.DataFrame:
        """Each twin's (g_s, g_u, k): one row per twin (index twin_index), columns member_g_s, member_g_u,
        member_time_scale (drawn from the unit's posterior with twin_sampling="posterior")."""
        if "population_parameters" not in self.data:
            raise ValueError("these twins were computed before twin parameters were stored: compute them again")
        rows = self._member_rows(unit_id)
        return pd.DataFrame(
            np.asarray(self.data["population_parameters"])[rows.start : rows.stop],
            columns=list(MEMBER_NAMES),
            index=pd.RangeIndex(len(rows), name="twin_index"),
        )

    def get_twin_spike_trains(self, unit_id) -> list:
        """Simulated spike trains (s after the transient, scaled by the unit's time scale) of a unit's twins."""
        if not self.params["simulate"]:
            raise ValueError("the twins were not simulated: compute 'twin_populations' with simulate=True")
        return unpack_rows(self.data["twin_spike_times"], self.data["twin_spike_offsets"], self._member_rows(unit_id))

    def get_twin_traces(self, unit_id, twins=(0,), record_every_ms: float = 0.1):
        """Voltage, currents and calcium of some twins of a unit, regenerated on request (not stored: they follow
        from the stored conductances, time scale and seed; see :func:`spikeinterface_dic.twin_traces`).

        Returns (spike_trains, traces) as :func:`~spikeinterface_dic.twin_traces`.
        """
        from ..traces import twin_traces

        return twin_traces(self.to_pipeline_result(), unit_id, twins=twins, record_every_ms=record_every_ms)

    def to_pipeline_result(self):
        """A :class:`spikeinterface_dic.PipelineResult` (e.g. for ``write_nwb``) of the analyzer's units."""
        from ..result import PipelineResult
        from ..version import __version__

        parent = self.sorting_analyzer.get_extension(ComputeDynamicInputConductances.extension_name)
        summary = self.get_data()
        with_population = [u for u in summary.index if summary.loc[u, "population_size"] > 0]
        simulated = [u for u in with_population if summary.loc[u, "n_twins"] > 0] if self.params["simulate"] else []
        fidelity = summary.loc[simulated, list(TWIN_NAMES)]
        estimates = parent.get_data()
        estimates["population_error"] = summary["population_error"]
        estimates["twin_time_scale"] = summary["twin_time_scale"]
        for column in FINAL_TIME_SCALE_COLUMNS:  # one k per unit: the final one, the network's beside it
            estimates[column] = summary[column]
        return PipelineResult(
            model_name=parent.params["model"],
            conductance_names=self.conductance_names,
            estimates=estimates,
            populations={u: self.get_population(u).to_numpy() for u in with_population},
            twin_parameters={u: self.get_twin_parameters(u).to_numpy() for u in with_population}
            if "population_parameters" in self.data
            else {},
            twin_spike_trains={u: self.get_twin_spike_trains(u) for u in simulated},
            fidelity=fidelity,
            parameters=self.run_config().to_dict(),
            provenance={"package": "spikeinterface-dic", "version": __version__, "source": "SortingAnalyzer"},
        )


def register_extensions() -> None:
    """Register both analyzer extensions with SpikeInterface (idempotent; done on ``import spikeinterface_dic``)."""
    register_result_extension(ComputeDynamicInputConductances)
    register_result_extension(ComputeTwinPopulations)


register_extensions()
compute_dynamic_input_conductances = ComputeDynamicInputConductances.function_factory()
compute_twin_populations = ComputeTwinPopulations.function_factory()
