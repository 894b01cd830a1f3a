"""The result object returned by :func:`spikeinterface_dic.run_pipeline` and read back from NWB / CSV."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class PipelineResult:
    """Everything the pipeline produced for a batch of units.

    Attributes
    ----------
    model_name : str
        "stg" | "da".
    conductance_names : tuple of str
        Column names of the population matrices (e.g. ("Na", "Kd", ..., "leak")), conductances in mS/cm2.
    estimates : pandas.DataFrame
        One row per unit (index: unit ids). Columns: g_s, g_u, g_s_std, g_u_std, time_scale, time_scale_std, label,
        in_distribution (bool), ood_reason (str, "" when in distribution), n_spikes, n_windows.
    populations : dict
        {unit_id: ndarray (population_size, n_channels)}; units without a population (silent) are absent.
    twin_spike_trains : dict
        {unit_id: list of float64 arrays (spike times in s after the transient)}; empty when simulate=False.
    twin_parameters : dict
        {unit_id: ndarray (population_size, 3)}: each twin's (g_s, g_u, k) (the populations table's
        :data:`~spikeinterface_dic.schema.MEMBER_COLUMNS`); empty when not recorded (results written before).
    fidelity : pandas.DataFrame
        One row per simulated unit: fraction_matching (0..1), n_twins, twin_label_fraction, median_isi_distance,
        main_frequency_hz (recorded), twin_main_frequency_hz (median over twins).
    parameters : dict
        JSON-serialisable parameters of the run (population_size, simulate, duration_s, transient_s, seed, ...).
    provenance : dict
        Package version, weights sha256, date (ISO 8601), ...
    """

    model_name: str
    conductance_names: tuple
    estimates: pd.DataFrame
    populations: dict = field(default_factory=dict)
    twin_spike_trains: dict = field(default_factory=dict)
    fidelity: pd.DataFrame = field(default_factory=pd.DataFrame)
    twin_parameters: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def unit_ids(self) -> list:
        return list(self.estimates.index)

    def populations_dataframe(self) -> pd.DataFrame:
        """Long table: one row per twin, columns unit_id, twin_index, g_<channel>... and, when recorded, each twin's
        member_g_s, member_g_u, member_time_scale."""
        from .schema import MEMBER_NAMES

        frames = []
        for unit_id, gbar in self.populations.items():
            frame = pd.DataFrame(np.asarray(gbar), columns=[f"g_{name}" for name in self.conductance_names])
            frame.insert(0, "twin_index", np.arange(len(frame)))
            frame.insert(0, "unit_id", unit_id)
            parameters = self.twin_parameters.get(unit_id)
            if parameters is not None:
                for j, name in enumerate(MEMBER_NAMES):
                    frame[name] = np.asarray(parameters, dtype=np.float64)[:, j]
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["unit_id", "twin_index"] + [f"g_{n}" for n in self.conductance_names])
        return pd.concat(frames, ignore_index=True)

    def equals(self, other: PipelineResult, rtol: float = 1e-6) -> bool:
        """True when two results hold the same numbers (used by round-trip tests)."""
        if self.model_name != other.model_name or tuple(self.conductance_names) != tuple(other.conductance_names):
            return False
        numeric = ["g_s", "g_u", "g_s_std", "g_u_std", "time_scale", "time_scale_std"]
        a, b = self.estimates, other.estimates
        if [str(u) for u in a.index] != [str(u) for u in b.index]:
            return False
        for column in numeric:
            if column in a and not np.allclose(
                a[column].to_numpy(float), b[column].to_numpy(float), rtol=rtol, equal_nan=True
            ):
                return False
        if list(a["label"]) != list(b["label"]) or list(a["in_distribution"]) != list(b["in_distribution"]):
            return False
        if {str(k) for k in self.populations} != {str(k) for k in other.populations}:
            return False
        other_pops = {str(k): v for k, v in other.populations.items()}
        for unit_id, gbar in self.populations.items():
            if not np.allclose(gbar, other_pops[str(unit_id)], rtol=rtol):
                return False
        other_twins = {str(k): v for k, v in other.twin_spike_trains.items()}
        for unit_id, trains in self.twin_spike_trains.items():
            theirs = other_twins.get(str(unit_id))
            if theirs is None or len(theirs) != len(trains):
                return False
            if not all(np.allclose(x, y, rtol=rtol) for x, y in zip(trains, theirs, strict=True)):
                return False
        return True


def merge_results(results: list[PipelineResult]) -> PipelineResult:
    """Concatenate pipeline results of disjoint unit sets (same model and parameters), in the given order.

    ``provenance`` is the first result's, with each stage of ``timings`` summed over the results.
    """
    if not results:
        raise ValueError("merge_results needs at least one result")
    first = results[0]
    for other in results[1:]:
        if other.model_name != first.model_name or tuple(other.conductance_names) != tuple(first.conductance_names):
            raise ValueError(f"cannot merge results of models {first.model_name!r} and {other.model_name!r}")
    estimates = pd.concat([r.estimates for r in results])
    if estimates.index.has_duplicates:
        repeated = estimates.index[estimates.index.duplicated()].unique().tolist()[:5]
        raise ValueError(f"cannot merge results that share unit ids {repeated}")
    fidelities = [r.fidelity for r in results if r.fidelity is not None and len(r.fidelity)]
    fidelity = pd.concat(fidelities) if fidelities else pd.DataFrame()
    timings: dict = {}
    for r in results:
        for stage, seconds in r.provenance.get("timings", {}).items():
            timings[stage] = timings.get(stage, 0.0) + float(seconds)
    provenance = {**first.provenance, "timings": timings}
    return PipelineResult(
        model_name=first.model_name,
        conductance_names=tuple(first.conductance_names),
        estimates=estimates,
        populations={u: p for r in results for u, p in r.populations.items()},
        twin_spike_trains={u: t for r in results for u, t in r.twin_spike_trains.items()},
        fidelity=fidelity,
        twin_parameters={u: p for r in results for u, p in r.twin_parameters.items()},
        parameters=dict(first.parameters),
        provenance=provenance,
    )
