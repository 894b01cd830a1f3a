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
from .result import PipelineResult
from .twin_stage import recorded_train, run_twin_stage
from .version import __version__


def run_pipeline(
    spike_trains,
    config: RunConfig | None = None,
    *,
    client=None,
    estimates: pd.DataFrame | None = None,
    progress_bar: bool = False,
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
        adapt_time_scale, twin_selection, time_scale, refractory_ms, device).
    **settings
        Settings given as keywords instead (or on top of ``config``), e.g. ``run_pipeline(trains, model="da",
        population_size=20)``. A ``time_scale`` sequence is one k per train, in order.
    client : dask.distributed.Client, default: None
        Spread units over a Dask cluster (see :mod:`.distributed`); same results as without.
    estimates : pandas.DataFrame, default: None
        :func:`infer_dics` output covering these units, to skip the inference. :mod:`.distributed` infers the whole
        batch once and passes each chunk its rows, because the network's float32 outputs vary in the 7th digit with
        the batch they are computed in, and chaotic twins amplify that.
    progress_bar : bool, default: False
        Bars over units in the slow steps.

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
    config = RunConfig.from_dict(config.to_dict() if config else None, **settings) if settings else config
    config = config or RunConfig()
    if client is not None:
        from .distributed import run_pipeline_dask

        return run_pipeline_dask(spike_trains, client, config, progress_bar=progress_bar)
    from .inference.predict import infer_dics, load_predictor

    model = config.model_declaration
    started = time.perf_counter()
    if estimates is None:
        estimates = infer_dics(
            spike_trains,
            model=model,
            device=config.device,
            refractory_ms=config.refractory_ms,
            time_scale=config.time_scale_argument(),
        )
    else:
        estimates = estimates.loc[list(spike_trains)].copy()
    inference_s = time.perf_counter() - started
    recorded = {
        u: recorded_train(np.asarray(t, dtype=np.float64), config.refractory_ms) for u, t in spike_trains.items()
    }
    stage = run_twin_stage(estimates, recorded, config, progress_bar=progress_bar)
    provenance = {
        "package": "spikeinterface-dic",
        "version": __version__,
        "weights_sha256": load_predictor(model.name).weights_sha256,
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
        parameters={**config.to_dict(), "dt_ms": model.default_dt_ms},
        provenance=provenance,
    )
