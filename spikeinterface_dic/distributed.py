"""Batch processing: the pipeline over many units or many files, here or on a Dask cluster.

- :func:`run_pipeline_dask` infers the DICs of the whole batch here (one batched forward pass, as a local call
  does), splits the units into chunks (``units_per_task`` units each), runs :func:`~spikeinterface_dic.run_pipeline`
  on every chunk as one Dask task with the chunk's estimates, and merges the results in unit order. The network's
  float32 outputs vary in their 7th digit with the batch they are computed in, and bursting twins amplify such
  differences, hence one inference for the batch; every later random step derives from (seed, unit id), so the
  result equals that of one local call.
- :func:`process_files` runs one task per file (read -> pipeline -> write CSV or NWB). A file that fails (unreadable,
  no units, ...) is reported in the summary and does not stop the others.

Tasks run in the Dask workers' processes: each worker loads the network weights and compiles the simulator once
(a few seconds), then reuses them. Give each worker process one Dask thread and let the simulator use the cores of
its share (:func:`local_client` does this for a local cluster).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .pipeline import run_pipeline, wait_with_progress
from .result import PipelineResult

SUMMARY_COLUMNS = [
    "file",
    "status",
    "n_units",
    "error",
    "seconds",
    "labels",
    "n_in_distribution",
    "fraction_matching",
    "fraction_matching_before_selection",
    "n_without_population",
    "n_targets_clipped",
    "n_problems",
    "problems",
    "outputs",
]


# ------------------------------------------------------------------------------------------------- units -> tasks
def run_pipeline_dask(
    spike_trains, client, config: RunConfig | None = None, progress_bar: bool = False, units_per_task: int = 8
) -> PipelineResult:
    """:func:`~spikeinterface_dic.run_pipeline` on a Dask cluster, ``units_per_task`` units per task (the same as
    ``run_pipeline(spike_trains, config, client=client, units_per_task=...)``; see there)."""
    return run_pipeline(spike_trains, config, client=client, progress_bar=progress_bar, units_per_task=units_per_task)


# ------------------------------------------------------------------------------------------------- files -> tasks
@dataclass(frozen=True)
class FileJob:
    """One input file and where its results go.

    Attributes
    ----------
    path : str
        Input file (NWB, CSV or neo-readable).
    output : str
        CSV: the prefix given to :func:`~spikeinterface_dic.write_csv` (``<output>_units.csv``,
        ``<output>_populations.csv``). NWB: the enriched copy of the input (equal to ``path`` when ``in_place``).
    output_format : "csv" | "nwb"
    overwrite : bool
        Replace existing outputs (and DIC results already in an NWB file).
    time_unit : "s" | "ms" | "us" | None
        Unit of the times in a CSV input (see :func:`~spikeinterface_dic.read_spike_trains`); None: the format's.
    """

    path: str
    output: str
    output_format: str = "csv"
    overwrite: bool = False
    time_unit: str | None = None


def process_files(
    paths,
    out_dir,
    client=None,
    output_format: str = "csv",
    in_place: bool = False,
    overwrite: bool = False,
    progress_bar: bool = False,
    config: RunConfig | None = None,
) -> pd.DataFrame:
    """Run the pipeline on every file, one task per file; a failing file is reported and the others finish.

    Parameters
    ----------
    paths : list of str | Path
        Input files: NWB (``/units``), CSV (Spike2Pop or long format) or any file neo reads.
    out_dir : str | Path
        Folder of the outputs (created if needed); ignored for NWB output with ``in_place=True``.
    client : dask.distributed.Client, default: None
        Run the files as Dask tasks; None processes them here, one after the other.
    output_format : "csv" | "nwb", default: "csv"
        "csv": ``<out_dir>/<file stem>_units.csv`` and ``_populations.csv`` (:func:`~spikeinterface_dic.write_csv`).
        "nwb": ``<out_dir>/<file name>``, a copy of the input NWB file with the results added
        (:func:`~spikeinterface_dic.write_nwb`); the input is never modified unless ``in_place``.
    in_place : bool, default: False
        With "nwb": add the results to the input files themselves.
    overwrite : bool, default: False
        Replace existing outputs (and DIC results already present in an NWB file); False reports such a file as
        failed.
    progress_bar : bool, default: False
        A tqdm bar over files.
    config : RunConfig, default: None
        The run's settings (None: the defaults).

    Returns
    -------
    pandas.DataFrame
        One row per file, in input order: file, status ("ok" | "failed"), n_units, error (one line, "" when ok),
        seconds, labels ("3 bursting, 1 spiking"), n_in_distribution, fraction_matching (median over simulated
        units), n_problems and problems (rows of the file that were skipped, with their line numbers), outputs.
    """
    jobs = file_jobs(paths, out_dir, output_format=output_format, in_place=in_place, overwrite=overwrite)
    return run_file_jobs(jobs, config, client=client, progress_bar=progress_bar)


def file_jobs(
    paths,
    out_dir,
    output_format: str = "csv",
    in_place: bool = False,
    overwrite: bool = False,
    time_unit: str | None = None,
) -> list[FileJob]:
    """One :class:`FileJob` per path; outputs named after the inputs, made unique when two inputs share a name."""
    if output_format not in ("csv", "nwb"):
        raise ValueError(f"output_format must be 'csv' or 'nwb'; got {output_format!r}")
    if in_place and output_format != "nwb":
        raise ValueError("in_place applies to NWB output only (output_format='nwb')")
    out_dir = Path(out_dir)
    jobs, used = [], Counter()
    for path in map(Path, paths):
        name = path.stem if output_format == "csv" else path.name
        used[name] += 1
        if used[name] > 1:  # same name in two folders: keep both
            name = f"{path.stem}_{used[name]}" + ("" if output_format == "csv" else path.suffix)
        output = path if in_place else out_dir / name
        jobs.append(FileJob(str(path), str(output), output_format, overwrite, time_unit))
    return jobs


def run_file_jobs(
    jobs: list[FileJob], config: RunConfig | None = None, client=None, progress_bar: bool = False
) -> pd.DataFrame:
    """Run :func:`process_file` for every job (Dask tasks when ``client`` is given) and return the summary.

    With a client and a single file, the file's units are spread over the cluster instead
    (:func:`run_pipeline_dask`).
    """
    if client is None or len(jobs) == 1:
        from tqdm.auto import tqdm

        # One file: the pipeline's own bar (populations); several: one bar over files.
        rows = [
            process_file(job, config, client=client, progress_bar=progress_bar and len(jobs) == 1)
            for job in tqdm(jobs, desc="files", unit="file", disable=not progress_bar or len(jobs) < 2)
        ]
    else:
        futures = [client.submit(process_file, job, config, pure=False) for job in jobs]
        wait_with_progress(futures, progress_bar, "files (Dask tasks)")
        rows = []
        for job, future in zip(jobs, futures, strict=True):
            try:
                rows.append(future.result())
            except Exception as error:  # the worker itself died (e.g. out of memory): still one row per file
                rows.append(_failed_row(job, error, float("nan")))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def process_file(job: FileJob, config: RunConfig | None = None, client=None, progress_bar: bool = False) -> dict:
    """Read one file, run the pipeline and write its outputs; never raises: failures become a summary row."""
    from .io import read_spike_trains, write_csv
    from .nwb import write_nwb

    started = time.perf_counter()
    created: list[Path] = []
    try:
        output = Path(job.output)
        check_job_outputs(job)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # malformed rows come back in trains.problems, with line numbers
            try:
                trains = read_spike_trains(job.path, time_unit=job.time_unit)
            except OSError as error:  # FileNotFoundError's message is clear; h5py's (OSError) are not
                if isinstance(error, FileNotFoundError):
                    raise
                raise ValueError(f"cannot read the file ({one_line(error)})") from error
        if job.output_format == "nwb" and trains.file_format != "nwb":
            raise ValueError(f"NWB output needs an NWB input; {job.path} is {trains.file_format}: use CSV output")
        result = run_pipeline(dict(trains), config, client=client, progress_bar=progress_bar)
        if job.output_format == "csv":
            output.parent.mkdir(parents=True, exist_ok=True)
            outputs = [str(p) for p in write_csv(result, output)]
        else:
            if output.resolve() != Path(job.path).resolve():
                output.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(job.path, output)
                created.append(output)
            write_nwb(result, output, overwrite=job.overwrite)
            created.clear()
            outputs = [str(output)]
    except Exception as error:
        for path in created:  # a copy that did not receive its results is not an output
            path.unlink(missing_ok=True)
        return _failed_row(job, error, time.perf_counter() - started)
    return {
        **_result_summary(result),
        "file": job.path,
        "status": "ok",
        "error": "",
        "seconds": time.perf_counter() - started,
        "n_problems": len(trains.problems),
        "problems": "; ".join(trains.problems),
        "outputs": "; ".join(outputs),
    }


def check_job_outputs(job: FileJob) -> None:
    """Raise, before anything is computed, when a job's outputs cannot be written: a folder that is not writable,
    outputs that exist, or an NWB file that already holds DIC results, without ``overwrite``. Messages name the
    user's files and the CLI's option."""
    from .nwb import results_present

    output, source = Path(job.output), Path(job.path)
    in_place = job.output_format == "nwb" and output.resolve() == source.resolve()
    folder = output.parent if not in_place else output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # created later; its nearest existing parent must be writable
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {output}: the folder {folder} is not writable")
    if job.output_format == "csv":
        existing = [output.with_name(output.name + suffix) for suffix in ("_units.csv", "_populations.csv")]
        existing = [path for path in existing if path.exists()]
        if existing and not job.overwrite:
            raise FileExistsError(f"{existing[0]} exists; pass --overwrite (overwrite=True) to replace it")
        return
    if in_place and not os.access(output, os.W_OK):
        raise PermissionError(f"cannot add results to {output}: the file is not writable")
    if not in_place and output.exists() and not job.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite (overwrite=True) to replace it")
    if source.suffix.lower() == ".nwb" and source.is_file() and not job.overwrite:
        try:
            present = results_present(source)
        except (OSError, ValueError):
            return  # unreadable or without units: the run reports it with the reading error
        if present:
            where = f"{source} already holds" if in_place else f"the input {source} already holds"
            raise FileExistsError(f"{where} DIC results; pass --overwrite (overwrite=True) to replace them")


def _median(frame: pd.DataFrame, column: str) -> float:
    if column not in frame.columns or not len(frame):
        return np.nan
    values = frame[column].to_numpy(float)
    return float(np.nanmedian(values)) if np.isfinite(values).any() else np.nan


def _result_summary(result: PipelineResult) -> dict:
    """Counts and medians over a file's units (fractions matching: medians over the simulated units)."""
    estimates = result.estimates
    labels = Counter(estimates["label"].astype(str)) if len(estimates) else Counter()
    with_estimate = estimates["g_s"].notna() if len(estimates) else pd.Series(dtype=bool)
    clipped = 0
    if "target_g_s" in estimates.columns and len(estimates):
        targets = estimates[["target_g_s", "target_g_u"]].to_numpy(float)
        values = estimates[["g_s", "g_u"]].to_numpy(float)
        reached = np.isfinite(targets).all(axis=1)
        clipped = int((reached & ~np.isclose(targets, values).all(axis=1)).sum())
    return {
        "n_units": len(estimates),
        "labels": ", ".join(f"{count} {label}" for label, count in labels.most_common()),
        "n_in_distribution": int(estimates["in_distribution"].astype(bool).sum()) if len(estimates) else 0,
        "fraction_matching": _median(result.fidelity, "fraction_matching"),
        "fraction_matching_before_selection": _median(result.fidelity, "fraction_matching_before_selection"),
        "n_without_population": int((with_estimate & ~estimates.index.isin(list(result.populations))).sum())
        if len(estimates)
        else 0,
        "n_targets_clipped": clipped,
    }


def _failed_row(job: FileJob, error: BaseException, seconds: float) -> dict:
    return {
        "file": job.path,
        "status": "failed",
        "n_units": 0,
        "error": one_line(error),
        "seconds": seconds,
        "labels": "",
        "n_in_distribution": 0,
        "fraction_matching": np.nan,
        "fraction_matching_before_selection": np.nan,
        "n_without_population": 0,
        "n_targets_clipped": 0,
        "n_problems": 0,
        "problems": "",
        "outputs": "",
    }


def one_line(error: BaseException) -> str:
    """An exception as one line of text: its message, or its type when the message says nothing."""
    message = " ".join(str(error).split())
    if isinstance(error, KeyError) or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message


# ------------------------------------------------------------------------------------------------------ clusters
def local_client(n_workers: int | None = None, processes: bool = True):
    """A ``dask.distributed.Client`` on a new local cluster of ``n_workers`` workers with one task slot each.

    With processes, each worker's simulator and torch use ``cpu_count // n_workers`` threads, so the workers
    share the cores instead of each using them all. Close the client and its cluster when done
    (``client.close(); client.cluster.close()``).
    """
    from dask.distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    n_workers = max(1, min(int(n_workers or cores), cores))
    threads = str(max(1, cores // n_workers))
    options = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": processes,
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
    }
    if processes:  # read by numba and torch when the worker process starts
        options["env"] = {"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return Client(LocalCluster(**options))
