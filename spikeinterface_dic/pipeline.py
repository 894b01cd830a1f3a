"""The composed job: spike trains -> DICs and time scale -> twin populations -> simulated twins -> fidelity.

Every front end (SpikeInterface extensions, NWB, CLI, web app, Dask) runs with one :class:`~.config.RunConfig`;
:func:`run_pipeline` is inference (:func:`~.inference.predict.infer_dics`) followed by the twin stage
(:func:`~.twin_stage.run_twin_stage`), which the SpikeInterface twin extension calls too.

Cost model: inference is one batched forward pass (see :mod:`.inference.predict`); the twin stage's cost is in
:mod:`.twin_simulation` (populations ~2-8 ms per 1,000 twins; simulation dominates) and :mod:`.twin_selection`.
"""

from __future__ import annotations

import datetime
import time

import numpy as np
import pandas as pd

from .config import RunConfig
from .models import MODELS
from .result import PipelineResult, merge_results
from .twin_stage import recorded_train, run_twin_stage
from .version import __version__


def run_pipeline(
    spike_trains,
    config: RunConfig | None = None,
    *,
    client=None,
    estimates: pd.DataFrame | None = None,
    progress_bar: bool = False,
    units_per_task: int = 8,
    **settings,
) -> PipelineResult:
    """Run the whole method on a batch of units.

    Parameters
    ----------
    spike_trains : dict | list of array_like
        Spike times in seconds ({unit_id: times} keeps the unit ids; a list gets ids 0..n-1).
    config : RunConfig, default: None
        Every setting of the run (see :class:`~spikeinterface_dic.config.RunConfig`: model, population_size,
        simulate, seed, duration_s, noise_std_uA_cm2, frequency_tolerance, spikes_per_burst_tolerance,
        spikes_per_burst_relative_tolerance, adapt_time_scale, twin_selection, time_scale, refractory_ms, device).
    **settings
        Settings given as keywords instead (or on top of ``config``), e.g. ``run_pipeline(trains, model="da",
        population_size=20)``. A ``time_scale`` sequence is one k per train, in order.
    client : dask.distributed.Client, default: None
        Spread units over a Dask cluster, ``units_per_task`` units per task (see :mod:`.distributed`); same results
        as without: the whole batch is inferred here (one batched forward pass, as a local call does), then each
        task runs the twin stage of its units with their rows of the estimates. ``provenance["timings"]`` then sums
        each stage over the tasks (busy time); ``provenance["dask"]`` records the tasks and the wall time.
    estimates : pandas.DataFrame, default: None
        :func:`infer_dics` output covering these units, to skip the inference. :mod:`.distributed` infers the whole
        batch once and passes each chunk its rows, because the network's float32 outputs vary in the 7th digit with
        the batch they are computed in, and chaotic twins amplify that.
    progress_bar : bool, default: False
        Bars over units in the slow steps (over finished tasks with a client).
    units_per_task : int, default: 8
        Units per Dask task (with ``client``). Smaller chunks spread better over workers; larger ones share each
        simulator call and the per-task overhead (~10 ms) among more units.

    Notes
    -----
    Time-scale adaptation (``adapt_time_scale``): after simulating the twins at the inferred k, k is rescaled by
    (median twin main frequency / recorded main frequency) when most twins fire in the recorded pattern. Time scaling
    is exact, so this only rescales the twins' spike times. A known k (``time_scale``) is never adapted. ``fidelity``
    keeps ``fraction_matching_network_time_scale`` (before adaptation), ``estimates`` keeps ``time_scale_network``.
    Twin selection (``twin_selection``): twins that do not fire in the unit's pattern are replaced by matching
    members drawn for the same DICs (:func:`.twin_selection.select_matching_twins`).
    """
    if not isinstance(spike_trains, dict):
        spike_trains = dict(enumerate(spike_trains))
    time_scale = settings.get("time_scale")
    if time_scale is not None and not isinstance(time_scale, dict) and np.ndim(time_scale) == 1:
        settings["time_scale"] = dict(zip(spike_trains, time_scale, strict=True))
    # replace() keeps a user-declared Model object (to_dict/from_dict would turn it back into a name).
    config = (config.replace(**settings) if config else RunConfig.from_dict(settings)) if settings else config
    config = config or RunConfig()
    from .inference.predict import infer_dics, load_predictor

    model = config.model_declaration
    started = time.perf_counter()
    if estimates is None:
        estimates = infer_dics(
            spike_trains,
            model=model,
            device=config.device,
            weights_dir=config.weights_dir,
            refractory_ms=config.refractory_ms,
            time_scale=config.time_scale_argument(),
            time_scale_range=config.time_scale_range,
            span_source=config.span_source,
        )
    else:
        estimates = estimates.loc[list(spike_trains)].copy()
    inference_s = time.perf_counter() - started
    if client is not None and spike_trains:
        return _run_on_cluster(spike_trains, estimates, config, client, progress_bar, units_per_task, inference_s)
    recorded = {
        u: recorded_train(np.asarray(t, dtype=np.float64), config.refractory_ms) for u, t in spike_trains.items()
    }
    stage = run_twin_stage(estimates, recorded, config, progress_bar=progress_bar)
    provenance = {
        "package": "spikeinterface-dic",
        "version": __version__,
        # Shipped networks read the stock models only; a user-declared model comes with its own estimates.
        "weights_sha256": load_predictor(model.name, config.weights_dir).weights_sha256
        if MODELS.get(model.name) == model
        else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timings": {"inference_s": inference_s, **stage.timings},
    }
    return PipelineResult(
        model_name=model.name,
        conductance_names=tuple(model.conductance_names),
        estimates=stage.estimates,
        populations=stage.populations,
        twin_spike_trains=stage.twin_trains,
        fidelity=stage.fidelity,
        twin_parameters=stage.twin_parameters,
        parameters={**config.to_dict(), "dt_ms": model.default_dt_ms},
        provenance=provenance,
    )


def _run_on_cluster(spike_trains, estimates, config, client, progress_bar, units_per_task, inference_s):
    """The twin stage of every chunk of ``units_per_task`` units as one Dask task; results merged in unit order."""
    if int(units_per_task) < 1:
        raise ValueError(f"units_per_task must be >= 1; got {units_per_task}")
    started = time.perf_counter()
    unit_ids = list(spike_trains)
    futures = []
    for start in range(0, len(unit_ids), int(units_per_task)):
        chunk_ids = unit_ids[start : start + int(units_per_task)]
        chunk = {unit_id: np.asarray(spike_trains[unit_id], dtype=np.float64) for unit_id in chunk_ids}
        futures.append(client.submit(run_pipeline, chunk, config, estimates=estimates.loc[chunk_ids], pure=False))
    wait_with_progress(futures, progress_bar, "units (Dask tasks)")
    result = merge_results(client.gather(futures))
    result.provenance["timings"]["inference_s"] = inference_s
    result.provenance["dask"] = {
        "n_tasks": len(futures),
        "units_per_task": int(units_per_task),
        "wall_s": time.perf_counter() - started + inference_s,
    }
    return result


def wait_with_progress(futures: list, enabled: bool, description: str) -> None:
    """Wait for Dask futures with a tqdm bar of finished ones."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    with tqdm(total=len(futures), desc=description, disable=not enabled) as bar:
        for _ in as_completed(futures):
            bar.update(1)
