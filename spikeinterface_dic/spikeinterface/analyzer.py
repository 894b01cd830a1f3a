"""SortingAnalyzers for sortings without a recording, and loading analyzers that hold our extensions."""

from __future__ import annotations

import numpy as np


def _segment_durations_s(sorting, durations_s=None) -> list[float]:
    """Durations that cover the last spike of every segment (half a sample is added against float truncation)."""
    fs = float(sorting.sampling_frequency)
    num_segments = sorting.get_num_segments()
    last_frames = [sorting.get_last_spike_frame(segment_index=segment) for segment in range(num_segments)]
    if durations_s is None:
        if sorting.has_recording():
            samples = [sorting.get_num_samples(segment_index=segment) for segment in range(num_segments)]
        else:
            samples = [last + 1 for last in last_frames]
        return [(max(n, last + 1) + 0.5) / fs for n, last in zip(samples, last_frames, strict=True)]
    durations_s = [float(d) for d in np.atleast_1d(durations_s)]
    if len(durations_s) != num_segments:
        raise ValueError(f"durations_s has {len(durations_s)} values but the sorting has {num_segments} segments")
    for segment, (duration, last) in enumerate(zip(durations_s, last_frames, strict=True)):
        if duration * fs < last + 1:
            raise ValueError(
                f"segment {segment} lasts {duration} s but its last spike is at {last / fs} s; give "
                "durations that cover every spike (or durations_s=None)"
            )
    return [(int(round(d * fs)) + 0.5) / fs for d in durations_s]


def create_sorting_analyzer_from_sorting(
    sorting, durations_s=None, format: str = "memory", folder=None, **create_kwargs
):
    """A SortingAnalyzer for a sorting that has no recording (NWB units, neo, spike times from a CSV...).

    The analyzer gets a lazy one-channel ``MockRecording`` (no trace memory is allocated; it is only there because
    SpikeInterface requires a recording) with a dummy probe, no sparsity, and segment durations that cover the last
    spike. The DIC extensions only read spike times, so they work on it like on any analyzer; extensions that need
    traces (waveforms, templates) would see noise and must not be computed.

    Parameters
    ----------
    sorting : BaseSorting
        Any SpikeInterface sorting, single- or multi-segment.
    durations_s : list of float | None, default: None
        Duration of each segment in seconds; None uses the registered recording's, or the last spike of the segment.
    format : "memory" | "binary_folder" | "zarr", default: "memory"
    folder : str | Path | None, default: None
        Where to save the analyzer (binary_folder / zarr).
    **create_kwargs
        Passed on to ``spikeinterface.core.create_sorting_analyzer`` (e.g. ``overwrite=True``).

    Returns
    -------
    SortingAnalyzer

    Examples
    --------
    >>> import spikeinterface_dic as sdic
    >>> analyzer = sdic.create_sorting_analyzer_from_sorting(sorting)
    >>> analyzer.compute("dynamic_input_conductances", model="stg")
    """
    from spikeinterface.core import MockRecording, create_sorting_analyzer

    recording = MockRecording(
        num_channels=1,
        sampling_frequency=float(sorting.sampling_frequency),
        durations=_segment_durations_s(sorting, durations_s),
        seed=0,
        noise_block_size=256,
    )
    recording.set_dummy_probe_from_locations(np.zeros((1, 2)))
    create_kwargs.setdefault("sparse", False)
    create_kwargs.setdefault("return_in_uV", False)
    return create_sorting_analyzer(
        sorting,
        recording,
        format=format,
        folder=folder,
        main_channel_indices=np.zeros(sorting.get_num_units(), dtype=np.int64),
        **create_kwargs,
    )


def load_sorting_analyzer(folder, **load_kwargs):
    """``spikeinterface.core.load_sorting_analyzer`` with the DIC extensions registered first.

    SpikeInterface has no plugin discovery: an analyzer saved with "dynamic_input_conductances" or
    "twin_populations" and loaded *before* ``import spikeinterface_dic`` only warns "Extension ... is unknown" and
    ``get_extension(...)`` then raises ``KeyError``. Either ``import spikeinterface_dic`` before loading, or load with
    this function. (Importing the package after loading also works: the next ``get_extension`` reads the extension
    from disk.)

    Parameters
    ----------
    folder : str | Path
        The binary folder or zarr store of the analyzer.
    **load_kwargs
        Passed on (``load_extensions``, ``format``, ``backend_options``, ``lazy``, ``read_only``).
    """
    from spikeinterface.core import load_sorting_analyzer as load

    from .extensions import register_extensions

    register_extensions()
    return load(folder, **load_kwargs)
