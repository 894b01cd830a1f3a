"""Voltage and current traces of a unit's twins, regenerated on request.

Traces are not stored with results: a twin is fully defined by its conductances (``result.populations``), its unit's
time scale k and its noise seed (a function of the run's seed and the unit id), so :func:`twin_traces` re-simulates
the chosen twins exactly as :func:`~spikeinterface_dic.twin_simulation.simulate_twins` did (same model time window,
same per-row noise seeds, times multiplied by k) with the trace kernel (:mod:`.simulate.traces`), whose spikes are
the spike-only kernel's. Storing them would cost rows x samples x (channels + 3) doubles per unit (STG, 100 twins,
3 s at 0.1 ms: 290 MB) for data regenerable in a fraction of a second per twin.

Exactness: the returned spikes equal the stored twin trains when the run had no noise (the default) or when the twin
was not replaced by twin selection. A twin that selection drew in a later round had a noise seed of that round, which
the result does not keep; with noise, such a twin's trace is a statistically equivalent realisation (same
conductances, same noise level), not the stored one.
"""

from __future__ import annotations

import numpy as np

from .simulate.traces import Traces


def find_unit(mapping: dict, unit_id, what: str):
    """The key of ``mapping`` that is ``unit_id`` or its string form (ids read back from CSV / NWB are strings)."""
    for key in mapping:
        if key == unit_id or str(key) == str(unit_id):
            return key
    raise KeyError(f"unit {unit_id!r} has no {what}; units with one: {[str(u) for u in list(mapping)[:10]]}")


def run_config_of(result):
    """The run's settings as a RunConfig: the stored parameters it knows (results read back from CSV keep none, so
    their seed and noise are the defaults), with the result's model."""
    from .config import RunConfig

    def known(key, value) -> bool:
        try:
            RunConfig.from_dict({key: value})
        except TypeError:  # not a setting (e.g. "source" of a result read from CSV)
            return False
        return True

    settings = {key: value for key, value in (result.parameters or {}).items() if known(key, value)}
    settings["model"] = result.model_name
    return RunConfig.from_dict(settings)


def unit_time_scale(result, unit_id) -> float:
    """k of a unit's twins (its final estimate, NaN read as 1, clipped as in the twin simulation)."""
    from .twin_simulation import twin_time_scales

    key = find_unit({u: None for u in result.estimates.index}, unit_id, "estimate")
    return float(twin_time_scales(result.estimates, [key])[0])


def twin_time_scales_of(result, unit_id, twins) -> np.ndarray:
    """k of each chosen twin: its own (``result.twin_parameters``, twins drawn from the posterior) or the unit's,
    NaN read as 1 and clipped to the simulated range, as the twin simulation does."""
    from .twin_simulation import SIMULATED_TIME_SCALES

    key = find_unit(result.populations, unit_id, "twin population")
    parameters = getattr(result, "twin_parameters", {}) or {}
    if key in parameters and parameters[key] is not None and len(parameters[key]):
        k = np.asarray(parameters[key], dtype=float)[np.asarray(twins), 2]
        return np.clip(np.nan_to_num(k, nan=1.0), *SIMULATED_TIME_SCALES)
    return np.full(len(twins), unit_time_scale(result, key))


def _noise_seeds(config, unit_key, n: int, posterior: bool) -> np.ndarray:
    """Per-row noise seeds of the twins' first simulation: selection round 0 of the point path
    (:func:`.twin_simulation.simulate_twins`) or round 0 of the posterior path (:mod:`.twin_posterior`)."""
    from .twin_simulation import unit_child_seed

    seed = unit_child_seed(config.seed, unit_key)
    entropy = [seed, 1000] if posterior else seed
    return np.random.SeedSequence(entropy).generate_state(n, dtype=np.uint64)


def twin_traces(result, unit_id, twins=(0,), record_every_ms: float = 0.1, duration_s: float | None = None):
    """Re-simulate some twins of a unit and record their voltage, currents and calcium.

    Parameters
    ----------
    result : PipelineResult
        A run's result (:func:`~spikeinterface_dic.run_pipeline`, or read back from CSV / NWB).
    unit_id : int | str
        The unit.
    twins : sequence of int, default: (0,)
        Twin indices (rows of ``result.populations[unit_id]``).
    record_every_ms : float, default: 0.1
        Sampling step of the traces in ms of real time (rounded to whole integration steps of model time x k).
    duration_s : float | None, default: None
        Recorded window in s of real time; None: the run's (``duration_s`` setting, else the model's default window
        in its own time, as the twin simulation).

    Returns
    -------
    spike_trains : list of np.ndarray
        Spike times (s after the transient) of each requested twin, within the window: the stored twin trains (see
        module docstring for the exact conditions).
    traces : Traces
        ``traces["V"]``, ``traces["I_Na"]``, ... one row per requested twin (``traces.rows`` are the twin indices).
        Twins drawn from the posterior each have their own k, so their sample times differ: ``traces.t_s`` is then
        (n_twins, n_samples), padded with NaN; ``traces.time_of(i)`` and ``traces.values(name, i)`` give one twin's.

    Examples
    --------
    >>> trains, traces = twin_traces(result, unit_id=3, twins=[0, 1, 2])  # doctest: +SKIP
    >>> traces["V"].shape  # (3 twins, samples)  # doctest: +SKIP
    """
    from .simulate import simulate
    from .twin_simulation import SPIKE_MARGIN_MS

    key = find_unit(result.populations, unit_id, "twin population")
    population = np.asarray(result.populations[key], dtype=float)
    twins = np.atleast_1d(np.asarray(twins, dtype=np.int64))
    if twins.ndim != 1 or twins.size == 0 or (twins < 0).any() or (twins >= len(population)).any():
        raise ValueError(
            f"unit {unit_id!r} has {len(population)} twins; twins must be indices in [0, {len(population)})"
        )
    config = run_config_of(result)
    model = config.model_declaration
    time_scales = twin_time_scales_of(result, key, twins)
    posterior = getattr(config, "twin_sampling", "point") == "posterior" and key in (result.twin_parameters or {})
    seeds = _noise_seeds(config, key, len(population), posterior)[twins]
    transient_ms = model.default_transient_ms
    window_s = config.duration_s if duration_s is None else float(duration_s)
    trains, parts = [None] * twins.size, []
    # Twins of equal k share one kernel call; each is integrated in model time and its times multiplied by its k,
    # exactly as the twin simulation does.
    for k in np.unique(time_scales):
        rows = np.flatnonzero(time_scales == k)
        record_ms = model.default_duration_ms - transient_ms if window_s is None else 1000.0 * window_s / k
        group_trains, traces = simulate(
            model,
            population[twins[rows]],
            duration_s=(transient_ms + record_ms + SPIKE_MARGIN_MS) / 1000.0,
            transient_s=transient_ms / 1000.0,
            noise_std=config.noise_std_uA_cm2,
            seed=seeds[rows],
            record=np.arange(rows.size),
            record_every_ms=record_every_ms / k,
        )
        for row, train in zip(rows, group_trains, strict=True):
            trains[row] = train[train < record_ms / 1000.0] * k
        keep = traces.t_s < record_ms / 1000.0
        parts.append((rows, traces.t_s[keep] * k, traces.data[:, keep]))
    return trains, _combine(parts, twins, traces.names)


def _combine(parts, twins, names) -> Traces:
    """One Traces of the twins, in the requested order (per-twin times, NaN-padded, when their k differ)."""
    if len(parts) == 1:
        rows, t_s, data = parts[0]
        order = np.argsort(rows)
        return Traces(t_s=t_s, rows=twins, names=names, data=data[order])
    n_samples = max(t_s.size for _, t_s, _ in parts)
    t_all = np.full((twins.size, n_samples), np.nan)
    data_all = np.full((twins.size, n_samples, len(names)), np.nan)
    for rows, t_s, data in parts:
        t_all[rows, : t_s.size] = t_s
        data_all[rows, : t_s.size] = data
    return Traces(t_s=t_all, rows=twins, names=names, data=data_all)


__all__ = ["Traces", "find_unit", "run_config_of", "twin_time_scales_of", "twin_traces", "unit_time_scale"]
