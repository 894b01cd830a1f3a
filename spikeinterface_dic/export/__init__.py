"""Export a unit's twins to NEURON, NeuroML2 and a standalone Brian2 script (see docs/export.md).

Every exported file is generated from the model declaration (:mod:`spikeinterface_dic.models`): gates, channels,
concentrations, reversal potentials and the time scale k; no exporter re-types an equation. Writing the files needs
none of the target tools; running NEURON (``pip install neuron``, a C compiler for ``nrnivmodl``), validating NeuroML
(``pip install libNeuroML``) or running Brian2 needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = ("neuron", "neuroml", "brian2")


def _twin_set(result_or_populations, unit_id, twins, model, time_scale):
    """(model, unit key, gbar of the chosen twins, their indices, k of each, windows (duration_s, transient_s) of
    each, in s of real time)."""
    from ..models import get_model
    from ..result import PipelineResult

    if isinstance(result_or_populations, PipelineResult):
        from ..traces import find_unit, run_config_of

        result = result_or_populations
        key = find_unit(result.populations, unit_id, "twin population")
        model = get_model(result.model_name) if model is None else get_model(model)
        population = np.asarray(result.populations[key], dtype=float)
        config = run_config_of(result)
        record_duration_s = config.duration_s
    else:
        if model is None:
            raise ValueError("give model= ('stg' | 'da') with a populations mapping or array")
        model = get_model(model)
        if isinstance(result_or_populations, dict):
            matches = [u for u in result_or_populations if u == unit_id or str(u) == str(unit_id)]
            if not matches:
                raise KeyError(f"unit {unit_id!r} is not in the populations; units: {list(result_or_populations)[:10]}")
            key = matches[0]
            population = np.atleast_2d(np.asarray(result_or_populations[key], dtype=float))
        else:
            key = unit_id
            population = np.atleast_2d(np.asarray(result_or_populations, dtype=float))
        record_duration_s = None
    if population.ndim != 2 or population.shape[1] != model.n_channels:
        raise ValueError(
            f"unit {unit_id!r}: conductances of shape {population.shape}; model {model.name!r} needs "
            f"(n_twins, {model.n_channels}) in the order {', '.join(model.conductance_names)}"
        )
    indices = np.arange(len(population)) if twins is None else np.atleast_1d(np.asarray(twins, dtype=np.int64))
    if indices.size == 0 or (indices < 0).any() or (indices >= len(population)).any():
        raise ValueError(
            f"unit {unit_id!r} has {len(population)} twins; twins must be indices in [0, {len(population)})"
        )
    if time_scale is not None:
        k = np.asarray(time_scale, dtype=float)
        if k.ndim and k.shape != (indices.size,):
            raise ValueError(f"time_scale: one k, or one per exported twin ({indices.size}); got {k.shape[0]} values")
        k = np.broadcast_to(k, (indices.size,)).copy()
    elif isinstance(result_or_populations, PipelineResult):
        from ..traces import twin_time_scales_of

        k = twin_time_scales_of(result_or_populations, key, indices)  # each twin's own k (posterior twins)
    else:
        k = np.ones(indices.size)
    if not (np.isfinite(k).all() and (k > 0).all()):
        raise ValueError(f"unit {unit_id!r}: time scale k must be a positive number; got {time_scale}")
    # Each twin's window in real time: the model's transient and window in its own time x k (the twin simulation's),
    # or the run's duration_s after the transient.
    transient_s = model.default_transient_ms / 1000.0 * k
    if record_duration_s is None:
        record_s = (model.default_duration_ms - model.default_transient_ms) / 1000.0 * k
    else:
        record_s = np.full(indices.size, float(record_duration_s))
    return model, key, population[indices], indices, k, (transient_s + record_s, transient_s)


def export_twins(
    result_or_populations,
    unit_id,
    format: str = "neuron",  # noqa: A002 - the issue's and the CLI's name
    folder=".",
    twins=None,
    model=None,
    time_scale: float | None = None,
) -> list[Path]:
    """Write a unit's twins as NEURON, NeuroML2 or Brian2 files.

    Parameters
    ----------
    result_or_populations : PipelineResult | dict | array_like
        A run's result (model, conductances and time scale k are read from it), or {unit_id: (n_twins, n_channels)
        conductances in mS/cm2}, or one such array (then ``model`` is required).
    unit_id : int | str
        The unit whose twins are exported.
    format : "neuron" | "neuroml" | "brian2", default: "neuron"
        "neuron": one NMODL mechanism per channel and concentration, ``twins.json`` and ``twins_neuron.py``
        (run ``nrnivmodl .`` then ``python twins_neuron.py`` in the folder). "neuroml": a NeuroML2 document with the
        channels and one cell per twin, validated against the schema when libNeuroML is installed. "brian2": one
        standalone Python script.
    folder : str | Path, default: "."
        Output folder (created).
    twins : sequence of int, default: None
        Twin indices to export (None: all).
    model : str | Model, default: None
        Needed for a populations mapping or array; for a result, overrides nothing unless given.
    time_scale : float | sequence of float, default: None
        k of the twins, one or one per twin (None: each twin's own k from the result - twins drawn from the
        posterior have their own - or the unit's; 1 for populations).

    Returns
    -------
    list of Path
        The files written.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    model, key, gbar, indices, k, (duration_s, transient_s) = _twin_set(
        result_or_populations, unit_id, twins, model, time_scale
    )
    folder = Path(folder)
    if format == "neuron":
        from .neuron import twins_record, write_neuron

        return write_neuron(model, twins_record(key, gbar, k, duration_s, transient_s, indices), folder)
    if format == "brian2":
        from .brian2_script import write_brian2_script

        return [write_brian2_script(model, key, gbar, indices, k, duration_s, transient_s, folder)]
    from .neuroml import write_neuroml

    return write_neuroml(model, key, gbar, indices, k, folder)


__all__ = ["FORMATS", "export_twins"]
