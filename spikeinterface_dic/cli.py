"""Command line: ``spikeinterface-dic run | example | generate-data | train | compare | app``.

Every command has ``--help``. Bad input ends with a one-line ``spikeinterface-dic: error: ...`` on stderr and a
non-zero exit code (1; 2 for unusable arguments); ``--debug`` shows the traceback instead. Progress bars (tqdm, on
stderr) appear only when stderr is a terminal and ``--quiet`` is not given.

Examples
--------
spikeinterface-dic example
spikeinterface-dic run recording.nwb --out recording_dic.nwb
spikeinterface-dic run units.csv other.csv --out results/ --population-size 50 --dask local --n-jobs 4
spikeinterface-dic generate-data --model stg --out data/stg --n-targets 1000
spikeinterface-dic train data/stg --out weights/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

PROGRAM = "spikeinterface-dic"
# Extensions collected from folders: NWB, CSV, and the neo formats that hold sorted spike trains.
INPUT_EXTENSIONS = (".nwb", ".csv", ".nev", ".nex", ".plx", ".pl2", ".smr", ".smrx")
DEFAULT_RUN_OUT = "spikeinterface_dic_results"
DEFAULT_EXAMPLE_OUT = "spikeinterface_dic_example"
EXAMPLE_FILE = "example_units.csv"


class CommandError(Exception):
    """Bad input: reported as one line, exit code 1."""


# ------------------------------------------------------------------------------------------------------ arguments
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {text}")
    return value


def _n_jobs(text: str) -> int:
    value = int(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or -1 (all cores); got {text}")
    return value


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error, and Python warnings")
    return common


def _time_unit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-unit",
        choices=("s", "ms", "us"),
        default=None,
        help="unit of the spike times in CSV inputs (default: ms for the Spike2Pop format ID,spiking_times, the unit "
        "in the column name for the long format; NWB and neo files carry their own)",
    )


def _pipeline_options(parser: argparse.ArgumentParser, population_size: int = 100) -> None:
    from .config import TWIN_SAMPLING
    from .inference.tonic_rate import SPAN_SOURCES

    group = parser.add_argument_group("pipeline")
    group.add_argument(
        "--population-size",
        type=_positive_int,
        default=population_size,
        metavar="N",
        help=f"twins per unit (default: {population_size})",
    )
    group.add_argument(
        "--simulate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="simulate the twins and score how well they reproduce each unit (default: --simulate)",
    )
    group.add_argument(
        "--duration-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="recorded window of each twin in seconds of real time (default: the model's window, "
        "3 s for STG and 9 s for DA, times the unit's time scale)",
    )
    group.add_argument(
        "--noise-std",
        type=_non_negative_float,
        default=0.0,
        metavar="X",
        help="noisy current injected into the twins, uA/cm2 (default: 0)",
    )
    group.add_argument(
        "--no-twin-selection",
        dest="twin_selection",
        action="store_false",
        help="keep the first twins as drawn instead of refining them until they reproduce the unit's pattern",
    )
    group.add_argument(
        "--twin-sampling",
        choices=TWIN_SAMPLING,
        default="posterior",
        help="posterior (default): each twin gets its own (g_s, g_u, k) drawn from the unit's posterior, refined "
        "by sequential Monte Carlo; point: every twin is built for the unit's point estimate",
    )
    group.add_argument(
        "--time-scale",
        type=_positive_float,
        default=None,
        metavar="K",
        help="known time scale of every unit (k > 1 is slower than the model, e.g. from the recording temperature "
        "and a Q10); used as given instead of estimated and adapted (default: estimate k per unit)",
    )
    group.add_argument(
        "--time-scale-range",
        type=_positive_float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="what you know of every unit's k as a range (e.g. 2 6): the posterior under a prior flat in ln k on it "
        "(default: the network's prior)",
    )
    group.add_argument(
        "--span-source",
        choices=SPAN_SOURCES,
        default=None,
        help="how the trains came to span what they span, if you know: recording (as long as the recording lasted) "
        "or window (simulated windows times k, as generate-data writes them); default: both weighed by their evidence",
    )
    group.add_argument(
        "--adapt-time-scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rescale an estimated k so that the twins' median main frequency equals the unit's; a known k "
        "(--time-scale) is never adapted (default: --adapt-time-scale)",
    )
    group.add_argument(
        "--refractory-ms",
        type=_non_negative_float,
        default=1.0,
        metavar="MS",
        help="ISIs shorter than this are refractory violations (sorting errors): the second spike is dropped "
        "(default: 1.0)",
    )
    group.add_argument(
        "--frequency-tolerance",
        type=_non_negative_float,
        default=0.10,
        metavar="F",
        help="relative tolerance on the main frequency for a twin to match its unit (default: 0.10)",
    )
    group.add_argument(
        "--spikes-per-burst-tolerance",
        type=_non_negative_float,
        default=1.0,
        metavar="N",
        help="tolerance, in spikes, on the mean spikes per burst for a twin to match its unit (default: 1.0)",
    )
    group.add_argument(
        "--spikes-per-burst-relative-tolerance",
        type=_non_negative_float,
        default=0.10,
        metavar="F",
        help="relative tolerance on the mean spikes per burst, where larger than the tolerance in spikes "
        "(default: 0.10)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of every random step (default: 0)")
    group.add_argument(
        "--n-jobs",
        type=_n_jobs,
        default=-1,
        metavar="N",
        help="cores for the simulator and the network; with --dask local, the number of workers "
        "(default: -1, all cores)",
    )
    group.add_argument("--device", default="cpu", help="torch device of the inference network (default: cpu)")
    group.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="network weights made by `spikeinterface-dic train` (the folder holding <model>.pt, <model>.json and "
        "<model>_reference.npz; default: the shipped weights)",
    )


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Dynamic input conductances and degenerate conductance-based twin populations from spike times.",
        epilog=f"'{PROGRAM} COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the pipeline on spike-train files",
        description="Infer the DICs and time scale of every unit, build its twin population, simulate the twins and "
        "score them. INPUT: NWB files (/units), CSV files (Spike2Pop format ID,spiking_times in ms, or "
        "unit_id,spike_time_s), neo-readable files, or folders (searched recursively for "
        f"{', '.join(INPUT_EXTENSIONS)}). Outputs: --out X.nwb writes a copy of the (single) NWB input with the "
        "results added; --out X.csv writes X_units.csv and X_populations.csv; --out FOLDER writes "
        "<input name>_units.csv and <input name>_populations.csv per input. A summary table ends the run.",
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="spike-train files or folders")
    _time_unit_option(run)
    run.add_argument("--model", choices=("stg", "da"), default="stg", help="model family (default: stg)")
    run.add_argument(
        "--out", default=None, metavar="OUT", help=f"X.nwb, X.csv or a folder (default: ./{DEFAULT_RUN_OUT}/)"
    )
    run.add_argument(
        "--in-place",
        action="store_true",
        help="add the results to the input NWB files themselves instead of writing copies",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs and DIC results already stored in an NWB file",
    )
    run.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' for a new local "
        "cluster; several files run as one task each, a single file's units are spread over the workers",
    )
    _pipeline_options(run)
    run.set_defaults(handler=_command_run)

    example = commands.add_parser(
        "example",
        parents=[common],
        help="run the bundled example end to end",
        description=f"Run the pipeline on the bundled example ({EXAMPLE_FILE}: six simulated STG units, tonic, "
        "bursting, one three times slower, one noisy) and write the results as CSV.",
    )
    example.add_argument(
        "--out",
        default=DEFAULT_EXAMPLE_OUT,
        metavar="FOLDER",
        help=f"output folder (default: ./{DEFAULT_EXAMPLE_OUT}/)",
    )
    _pipeline_options(example)
    example.set_defaults(handler=_command_example)

    generate = commands.add_parser(
        "generate-data",
        parents=[common],
        help="generate a training set for the inference network",
        description="Simulate degenerate populations for Latin-hypercube (g_s, g_u) targets and store their spike "
        "trains in chunks (resumable: an interrupted run continues where it stopped).",
    )
    generate.add_argument("--model", choices=("stg", "da"), required=True, help="model family")
    generate.add_argument("--out", required=True, metavar="FOLDER", help="data folder (created if needed)")
    generate.add_argument(
        "--n-targets",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="number of (g_s, g_u) targets (default: 1000)",
    )
    generate.add_argument(
        "--population-size", type=_positive_int, default=16, metavar="N", help="members per target (default: 16)"
    )
    generate.add_argument(
        "--chunk-size", type=_positive_int, default=64, metavar="N", help="targets per chunk file / task (default: 64)"
    )
    generate.add_argument(
        "--duration-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="simulated time per member, transient included (default: the model's)",
    )
    generate.add_argument(
        "--transient-s",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="discarded initial time (default: the model's)",
    )
    generate.add_argument(
        "--noise-fraction",
        type=_non_negative_float,
        default=0.3,
        metavar="F",
        help="fraction of members simulated with a noisy current (default: 0.3)",
    )
    generate.add_argument(
        "--noise-std-max",
        type=_non_negative_float,
        default=3.0,
        metavar="X",
        help="largest noise sd, uA/cm2, drawn uniformly (default: 3)",
    )
    generate.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    generate.add_argument(
        "--n-jobs",
        type=_n_jobs,
        default=-1,
        metavar="N",
        help="cores for the simulator; with --dask local, the number of workers (default: -1)",
    )
    generate.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local",
        help="run the chunks on a Dask cluster (scheduler address or 'local')",
    )
    generate.set_defaults(handler=_command_generate_data)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train the inference network on a generated data folder",
        description="Train DICNet on a folder made by generate-data and write <model>.pt, <model>.json (model card) "
        "and <model>_reference.npz into --out.",
    )
    train.add_argument("data_folder", metavar="DATA_FOLDER", help="folder made by generate-data")
    train.add_argument("--out", required=True, metavar="FOLDER", help="folder of the trained weights")
    train.add_argument(
        "--model",
        choices=("stg", "da"),
        default=None,
        help="model family (default: the one recorded in DATA_FOLDER/recipe.json)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    train.add_argument("--max-epochs", type=_positive_int, default=40, metavar="N", help="default: 40")
    train.add_argument(
        "--patience",
        type=_positive_int,
        default=6,
        metavar="N",
        help="epochs without improvement before stopping (default: 6)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=256, metavar="N", help="default: 256")
    train.add_argument("--learning-rate", type=_positive_float, default=2e-3, metavar="LR", help="default: 0.002")
    train.add_argument("--width", type=_positive_int, default=48, metavar="N", help="network width (default: 48)")
    train.add_argument(
        "--validation-fraction",
        type=_positive_float,
        default=0.1,
        metavar="F",
        help="fraction of targets held out for validation (default: 0.1)",
    )
    train.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        metavar="M",
        help="stop after this many minutes (default: no limit)",
    )
    train.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    train.add_argument(
        "--initial-weights",
        default=None,
        metavar="FOLDER",
        help="fine-tune from the weights in this folder (<model>.pt and <model>.json)",
    )
    train.set_defaults(handler=_command_train)
    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="compare the same units in two conditions",
        description="Per-unit shifts of g_s, g_u and ln k between two conditions (z-tests, corrected across units) "
        "and the channels whose twin-population medians move. A and B: results of 'run' (X.nwb holding DIC "
        "results, or X_units.csv next to X_populations.csv) with the same unit ids. Or one spike-train INPUT with "
        "--intervals: the pipeline runs on each epoch (without simulating twins), then the epochs are compared.",
    )
    compare.add_argument(
        "condition_a", metavar="A", help="results of condition a (a spike-train file with --intervals)"
    )
    compare.add_argument("condition_b", metavar="B", nargs="?", default=None, help="results of condition b")
    _time_unit_option(compare)
    compare.add_argument(
        "--intervals",
        nargs=2,
        default=None,
        metavar="START:STOP",
        help="the two epochs of A to compare, in seconds (e.g. --intervals 0:600 900:1500)",
    )
    compare.add_argument("--model", choices=("stg", "da"), default="stg", help="model family (default: stg)")
    compare.add_argument(
        "--population-size",
        type=_positive_int,
        default=100,
        metavar="N",
        help="twins per unit and epoch with --intervals (default: 100)",
    )
    compare.add_argument("--seed", type=int, default=0, help="seed of the twins with --intervals (default: 0)")
    compare.add_argument("--device", default="cpu", help="torch device of the inference network (default: cpu)")
    compare.add_argument("--alpha", type=_positive_float, default=0.05, help="significance level (default: 0.05)")
    compare.add_argument(
        "--correction",
        choices=("bh", "bonferroni", "holm", "none"),
        default="bh",
        help="multiple-testing correction across units (default: bh, Benjamini-Hochberg)",
    )
    compare.add_argument("--out", default=None, metavar="X.csv", help="write X_units.csv and X_channels.csv")
    compare.add_argument("--plot", default=None, metavar="FIGURE", help="save the figure (.png, .pdf or .svg)")
    compare.set_defaults(handler=_command_compare)
    export = commands.add_parser(
        "export",
        parents=[common],
        help="export a unit's twins to NEURON, NeuroML2 or Brian2",
        description="Write one unit's twins (conductances and time scale k from the results of 'run': X.nwb, "
        "X_units.csv next to X_populations.csv, or a folder of such CSV files) as NEURON mechanisms and a script "
        "(then run `nrnivmodl .` and `python twins_neuron.py` in OUT), a NeuroML2 document validated against the "
        "schema, or a standalone Brian2 script. See docs/export.md.",
    )
    export.add_argument("results", metavar="RESULTS", help="X.nwb, X_units.csv / X.csv, or a folder written by run")
    export.add_argument("--unit", required=True, help="unit id")
    export.add_argument("--format", choices=("neuron", "neuroml", "brian2"), default="neuron", help="(default: neuron)")
    export.add_argument("--twins", default=None, metavar="I,J,...", help="twin indices (default: all)")
    export.add_argument("--out", default="twins_export", metavar="DIR", help="output folder (default: ./twins_export/)")
    export.set_defaults(handler=_command_export)
    app = commands.add_parser(
        "app",
        parents=[common],
        help="start the web app in your browser (no programming needed)",
        description="Start the web app on this computer only (http://127.0.0.1:PORT/) and open it in your browser: "
        "load an NWB, CSV or neo file or the bundled example, run the analysis, look at the results and download "
        "them. Stop it with Ctrl+C.",
    )
    app.add_argument("--port", type=_port, default=5006, help="port of the app (default: 5006)")
    app.add_argument("--no-browser", action="store_true", help="do not open a browser; print the address only")
    app.set_defaults(handler=_command_app)
    return parser


def _command_export(args) -> int:
    from .analysis import read_result
    from .export import export_twins

    path = Path(args.results)
    candidates = sorted(path.glob("*_units.csv")) if path.is_dir() else [path]
    if not candidates:
        raise CommandError(f"{path} holds no results (X_units.csv written by `{PROGRAM} run`)")
    results = [read_result(candidate) for candidate in candidates]
    holding = [r for r in results if any(str(u) == str(args.unit) for u in r.populations)]
    if not holding:
        raise CommandError(f"unit {args.unit!r} has no twin population in {path}")
    if len(holding) > 1:
        raise CommandError(f"unit {args.unit!r} is in several results under {path}: give one file")
    twins = None
    if args.twins:
        try:
            twins = [int(text) for text in args.twins.split(",")]
        except ValueError:
            raise CommandError(f"--twins takes comma-separated twin indices (e.g. 0,1,2); got {args.twins!r}") from None
    written = export_twins(holding[0], args.unit, format=args.format, folder=args.out, twins=twins)
    for file in written:
        print(file)
    if args.format == "neuron":
        print(f"next: cd {args.out} && nrnivmodl . && python twins_neuron.py")
    return 0


# ------------------------------------------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeinterface-dic`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:  # library warnings (numpy, hdmf, ...) are noise here; skipped rows are reported
                warnings.simplefilter("ignore")
            return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        from .distributed import one_line

        print(f"{PROGRAM}: error: {one_line(error)}", file=sys.stderr)
        return 1


def _progress_enabled(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _info(args, message: str) -> None:
    if _progress_enabled(args):  # for a person at a terminal; scripts get the summary only
        print(message, file=sys.stderr, flush=True)


def _use_cores(n_jobs: int) -> None:
    """Threads of the simulator (numba) and of the network (torch) in this process."""
    import numba
    import torch

    cores = os.cpu_count() or 1
    n = cores if n_jobs == -1 else n_jobs
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(max(1, n))


@contextmanager
def _dask_client(address: str | None, n_jobs: int):
    """None, a client of a new local cluster ('local'), or a client connected to a scheduler address."""
    if address is None:
        yield None
        return
    from .distributed import local_client

    if address == "local":
        client = local_client(None if n_jobs == -1 else n_jobs)
    else:
        from dask.distributed import Client

        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise CommandError(f"cannot connect to the Dask scheduler at {address}: {error}") from None
    try:
        yield client
    finally:
        cluster = client.cluster if address == "local" else None
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------------------------------------------ run
def collect_inputs(inputs: list[str], exclude: Path | None = None) -> list[Path]:
    """Files named on the command line, and those with a known extension found (recursively) in folders.

    Hidden files and folders, and anything inside ``exclude`` (the output folder), are skipped. Raises
    :class:`CommandError` for a missing path or a folder without spike-train files.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if not path.exists():
            raise CommandError(f"input not found: {path}")
        if path.is_file():
            found.append(path)
            continue
        in_folder = sorted(
            candidate
            for candidate in path.rglob("*")
            if candidate.is_file()
            and candidate.suffix.lower() in INPUT_EXTENSIONS
            and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            and (excluded is None or not candidate.resolve().is_relative_to(excluded))
        )
        if not in_folder:
            raise CommandError(f"no spike-train files ({', '.join(INPUT_EXTENSIONS)}) in folder {path}")
        found.extend(in_folder)
    unique, seen = [], set()
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def _plan(args, files: list[Path]):
    """The FileJob of every input, from --out / --in-place / --overwrite."""
    from .distributed import FileJob, file_jobs

    if args.in_place:
        if args.out is not None:
            raise CommandError("--in-place writes into the input NWB files; do not combine it with --out")
        return file_jobs(
            files, ".", output_format="nwb", in_place=True, overwrite=args.overwrite, time_unit=args.time_unit
        )
    out = Path(args.out if args.out is not None else DEFAULT_RUN_OUT)
    suffix = out.suffix.lower()
    if suffix in (".nwb", ".csv"):
        if len(files) != 1:
            raise CommandError(f"--out {out} names one output but there are {len(files)} inputs; give a folder")
        if suffix == ".nwb":
            if out.resolve() == files[0].resolve():
                raise CommandError(f"--out {out} is the input file; pass --in-place to add the results to it")
            return [FileJob(str(files[0]), str(out), "nwb", args.overwrite, args.time_unit)]
        return [FileJob(str(files[0]), str(out.with_suffix("")), "csv", args.overwrite, args.time_unit)]
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; give a folder, X.csv or X.nwb")
    return file_jobs(files, out, output_format="csv", overwrite=args.overwrite, time_unit=args.time_unit)


def _check_outputs(jobs) -> None:
    """Every output can be written, before anything is computed (one line per problem, then a CommandError)."""
    from .distributed import check_job_outputs

    problems = []
    for job in jobs:
        try:
            check_job_outputs(job)
        except (OSError, ValueError) as error:
            problems.append(str(error))
    if problems:
        for problem in problems[:-1]:
            print(f"{PROGRAM}: error: {problem}", file=sys.stderr)
        raise CommandError(problems[-1])


def _run_config(args, model: str, **overrides):
    """The run configuration of the command's options (see :class:`~spikeinterface_dic.config.RunConfig`); settings
    a command has no option for keep their defaults."""
    from .config import RunConfig

    options = {  # RunConfig field: the argparse destination of its option
        "population_size": "population_size",
        "simulate": "simulate",
        "seed": "seed",
        "duration_s": "duration_s",
        "noise_std_uA_cm2": "noise_std",
        "device": "device",
        "weights_dir": "weights",
        "refractory_ms": "refractory_ms",
        "frequency_tolerance": "frequency_tolerance",
        "spikes_per_burst_tolerance": "spikes_per_burst_tolerance",
        "spikes_per_burst_relative_tolerance": "spikes_per_burst_relative_tolerance",
        "adapt_time_scale": "adapt_time_scale",
        "twin_selection": "twin_selection",
        "twin_sampling": "twin_sampling",
        "time_scale": "time_scale",
        "time_scale_range": "time_scale_range",
        "span_source": "span_source",
    }
    settings = {"model": model}
    for field, destination in options.items():
        if hasattr(args, destination):
            value = getattr(args, destination)
            settings[field] = str(value) if isinstance(value, Path) else value
    try:
        return RunConfig.from_dict(settings, **overrides)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _command_run(args) -> int:
    from .distributed import run_file_jobs

    out = Path(args.out if args.out is not None else DEFAULT_RUN_OUT)
    files = collect_inputs(args.inputs, exclude=None if out.suffix.lower() in (".nwb", ".csv") else out)
    jobs = _plan(args, files)
    config = _run_config(args, args.model)
    _check_outputs(jobs)
    _use_cores(args.n_jobs)
    started = time.perf_counter()
    with _dask_client(args.dask, args.n_jobs) as client:
        _info(
            args,
            f"{len(jobs)} file(s), model {args.model}, {args.population_size} twins per unit"
            + (f", Dask {client.scheduler.address}" if client is not None else ""),
        )
        summary = run_file_jobs(jobs, config, client=client, progress_bar=_progress_enabled(args))
    for row in summary.itertuples():
        if row.n_problems:
            for problem in re.split(r"; (?=line \d|block \d)", row.problems):  # io's locations of skipped rows
                print(f"{PROGRAM}: warning: {row.file}: {problem}", file=sys.stderr)
    failed = summary[summary["status"] != "ok"]
    if len(failed) < len(summary):
        print(format_summary(summary))
        print(
            f"\n{len(summary) - len(failed)} of {len(summary)} file(s) done in "
            f"{time.perf_counter() - started:.1f} s; outputs:"
        )
        for outputs in summary.loc[summary["status"] == "ok", "outputs"]:
            for output in outputs.split("; "):
                print(f"  {output}")
    for row in failed.itertuples():
        print(f"{PROGRAM}: error: {row.file}: {row.error.removeprefix(f'{row.file}: ')}", file=sys.stderr)
    return 1 if len(failed) else 0


def format_summary(summary) -> str:
    """The summary of :func:`~spikeinterface_dic.distributed.process_files` as a text table."""
    import numpy as np
    import pandas as pd

    ok = summary["status"] == "ok"
    table = pd.DataFrame(
        {
            "file": summary["file"].map(lambda path: Path(path).name),
            "status": summary["status"],
            "units": summary["n_units"].where(ok, 0).astype(int),
            "labels": summary["labels"].where(ok, ""),
            "in-distribution": [
                f"{i}/{n}" if good else ""
                for i, n, good in zip(summary["n_in_distribution"], summary["n_units"], ok, strict=True)
            ],
            "matching twins": [
                _matching_cell(after, before) if good else ""
                for after, before, good in zip(
                    summary["fraction_matching"], summary["fraction_matching_before_selection"], ok, strict=True
                )
            ],
            "no twins": [
                str(int(n)) if good else "" for n, good in zip(summary["n_without_population"], ok, strict=True)
            ],
            "targets clipped": [
                str(int(n)) if good else "" for n, good in zip(summary["n_targets_clipped"], ok, strict=True)
            ],
            "time (s)": [f"{value:.1f}" if np.isfinite(value) else "" for value in summary["seconds"]],
        }
    )
    legend = (
        "\nmatching twins: median over the simulated units of the fraction of a unit's twins that fire in its pattern "
        "(label, main frequency within the tolerance, spikes per burst), after twin selection (before it, in "
        "parentheses); n/a: not simulated, or no unit has a main frequency to match. no twins: units with an "
        "estimate but no population (reason in the population_error column). targets clipped: units whose twins "
        "were generated for DICs clipped to the trained region (target_g_s, target_g_u columns)."
    )
    import textwrap

    return format_table(table, left=("file", "status", "labels")) + "\n" + textwrap.fill(legend.strip(), 110)


def _matching_cell(after: float, before: float) -> str:
    import numpy as np

    if not np.isfinite(after):
        return "n/a"
    return f"{after:.2f}" + (f" ({before:.2f})" if np.isfinite(before) else "")


def format_table(table, left=()) -> str:
    """A DataFrame as text: columns in ``left`` left-aligned (header included), the others right-aligned."""
    columns = []
    for name in table.columns:
        cells = [str(name), *(str(value) for value in table[name])]
        width = max(len(cell) for cell in cells)
        columns.append([cell.ljust(width) if name in left else cell.rjust(width) for cell in cells])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns, strict=True))


# -------------------------------------------------------------------------------------------------------- compare
def _interval(text: str) -> tuple[float, float]:
    start, separator, stop = text.partition(":")
    try:
        interval = (float(start), float(stop))
    except ValueError:
        interval = None
    if not separator or interval is None or not interval[1] > interval[0]:
        raise CommandError(f"--intervals takes START:STOP in seconds with STOP > START; got {text!r}")
    return interval


def _command_compare(args) -> int:
    from .analysis import compare_conditions, read_result, split_by_intervals, write_comparison

    if args.intervals is not None:
        if args.condition_b is not None:
            raise CommandError("give two results (A B), or one spike-train file with --intervals; not both")
        from .io import read_spike_trains
        from .pipeline import run_pipeline

        trains = read_spike_trains(args.condition_a, time_unit=args.time_unit)
        epochs = split_by_intervals(dict(trains), [_interval(text) for text in args.intervals])
        _info(args, f"{len(trains)} unit(s), epochs {args.intervals[0]} s and {args.intervals[1]} s")
        results = [
            run_pipeline(epoch, _run_config(args, args.model, simulate=False), progress_bar=_progress_enabled(args))
            for epoch in epochs
        ]
    elif args.condition_b is None:
        raise CommandError(
            "compare needs two results (A B), or one spike-train file and --intervals START:STOP START:STOP"
        )
    else:
        results = [read_result(args.condition_a), read_result(args.condition_b)]
    comparison = compare_conditions(*results, alpha=args.alpha, correction=args.correction)
    if comparison.missing_units:
        shown = ", ".join(str(unit) for unit in comparison.missing_units[:10])
        more = "" if len(comparison.missing_units) <= 10 else ", ..."
        print(
            f"{PROGRAM}: warning: {len(comparison.missing_units)} unit(s) present in one condition only were "
            f"left out: {shown}{more}",
            file=sys.stderr,
        )
    print(format_comparison(comparison))
    outputs = [] if args.out is None else list(write_comparison(comparison, args.out))
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from .analysis import plot_condition_comparison

        plot_condition_comparison(comparison).savefig(args.plot, dpi=150)
        outputs.append(Path(args.plot))
    if outputs:
        print("\noutputs:")
        for path in outputs:
            print(f"  {path}")
    return 0


def format_comparison(comparison) -> str:
    """The per-unit shifts of a :class:`~spikeinterface_dic.analysis.ConditionComparison` as a text table."""
    import numpy as np
    import pandas as pd

    units = comparison.units

    def shift(name):
        return [
            f"{value:+.2f} +/- {std:.2f}" if np.isfinite(value) else "n/a"
            for value, std in zip(units[f"delta_{name}"], units[f"delta_{name}_std"], strict=True)
        ]

    table = pd.DataFrame(
        {
            "unit": [str(unit) for unit in units.index],
            "delta g_s": shift("g_s"),
            "delta g_u": shift("g_u"),
            "delta ln k": shift("log_time_scale"),
            "p (adjusted)": [f"{p:.2g}" if np.isfinite(p) else "n/a" for p in units["p_adjusted"]],
            "significant": ["yes" if value else "" for value in units["significant"]],
            "channels up": units["channels_increase"],
            "channels down": units["channels_decrease"],
        }
    )
    n_significant = int(units["significant"].sum())
    return (
        format_table(table, left=("unit", "significant", "channels up", "channels down"))
        + f"\n\n{n_significant} of {len(units)} unit(s) shifted significantly "
        f"({comparison.correction} correction, alpha = {comparison.alpha})"
    )


# ------------------------------------------------------------------------------------------------------------ app
def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number between 1 and 65535; got {text}")
    return value


def _command_app(args) -> int:
    try:
        from .app import serve
    except ImportError as error:
        raise CommandError(f"the web app needs the package panel: pip install panel ({error})") from error
    serve(port=args.port, open_browser=not args.no_browser)
    return 0


# -------------------------------------------------------------------------------------------------------- example
def example_path() -> Path:
    """Path of the bundled example CSV (``spikeinterface_dic/data/example_units.csv``)."""
    return Path(str(resources.files("spikeinterface_dic") / "data" / EXAMPLE_FILE))


def _command_example(args) -> int:
    import numpy as np
    import pandas as pd

    from .io import read_spike_trains, write_csv
    from .pipeline import run_pipeline

    source = example_path()
    if not source.is_file():
        raise CommandError(f"the bundled example is missing ({source}); reinstall spikeinterface-dic")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    _use_cores(args.n_jobs)
    input_copy = out / "example_input.csv"
    shutil.copyfile(source, input_copy)
    trains = read_spike_trains(input_copy)
    _info(args, f"example: {len(trains)} STG units from {source.name}, {args.population_size} twins each")
    started = time.perf_counter()
    result = run_pipeline(dict(trains), _run_config(args, "stg"), progress_bar=_progress_enabled(args))
    seconds = time.perf_counter() - started
    units_path, populations_path, _ = write_csv(result, out / "example_results")
    estimates = result.estimates
    matching = result.fidelity["fraction_matching"] if len(result.fidelity) else pd.Series(dtype=float)
    table = pd.DataFrame(
        {
            "unit": estimates.index.astype(str),
            "label": estimates["label"].to_numpy(),
            "g_s": [f"{v:.2f}" for v in estimates["g_s"]],
            "g_u": [f"{v:.2f}" for v in estimates["g_u"]],
            "time scale": [f"{v:.2f}" for v in estimates["time_scale"]],
            "in-distribution": estimates["in_distribution"].to_numpy(),
            "fraction matching": [f"{v:.2f}" if np.isfinite(v) else "n/a" for v in matching.reindex(estimates.index)],
        }
    )
    print(format_table(table, left=("unit", "label")))
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result.provenance["timings"].items())
    print(f"\ndone in {seconds:.1f} s ({timings}). Outputs in {out}/:")
    print(f"  {input_copy.name:<32} the input (Spike2Pop CSV, spike times in ms)")
    print(f"  {units_path.name:<32} one row per unit: DICs, time scale, label, fidelity")
    print(f"  {populations_path.name:<32} one row per twin: maximal conductances (mS/cm2)")
    print(f"Next: {PROGRAM} run {input_copy} --out results/  (or your own NWB / CSV files)")
    return 0


# --------------------------------------------------------------------------------------------- training commands
def _command_generate_data(args) -> int:
    from .inference.data import generate_training_data

    if not args.noise_fraction <= 1:
        raise CommandError(f"--noise-fraction must be between 0 and 1; got {args.noise_fraction}")
    _use_cores(args.n_jobs)
    started = time.perf_counter()
    with _dask_client(args.dask, args.n_jobs) as client:
        folder = generate_training_data(
            args.model,
            args.out,
            n_targets=args.n_targets,
            population_size=args.population_size,
            seed=args.seed,
            chunk_size=args.chunk_size,
            duration_s=args.duration_s,
            transient_s=args.transient_s,
            noise_fraction=args.noise_fraction,
            noise_std_max=args.noise_std_max,
            client=client,
            progress_bar=_progress_enabled(args),
        )
    n_chunks = len(list(Path(folder).glob("chunk_*.npz")))
    print(
        f"{args.n_targets} targets x {args.population_size} members of {args.model} in {n_chunks} chunk(s) "
        f"in {folder} ({time.perf_counter() - started:.1f} s)"
    )
    return 0


def _command_train(args) -> int:
    from .inference.train import train

    data_folder = Path(args.data_folder)
    recipe_path = data_folder / "recipe.json"
    if not recipe_path.is_file():
        raise CommandError(f"{data_folder} is not a data folder made by generate-data (no recipe.json)")
    recipe_model = json.loads(recipe_path.read_text()).get("model")
    model = args.model or recipe_model
    if recipe_model and model != recipe_model:
        raise CommandError(f"{data_folder} holds {recipe_model} data; --model {model} does not match")
    if not args.validation_fraction < 1:
        raise CommandError(f"--validation-fraction must be between 0 and 1; got {args.validation_fraction}")
    card = train(
        data_folder,
        args.out,
        model_name=model,
        seed=args.seed,
        max_epochs=args.max_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        width=args.width,
        device=args.device,
        validation_fraction=args.validation_fraction,
        max_minutes=args.max_minutes,
        progress_bar=not args.quiet,
        initial_weights_dir=args.initial_weights,
    )
    out = Path(args.out)
    print(
        f"trained {model} for {card['epochs']} epoch(s) in {card['training_seconds']:.1f} s "
        f"(best validation NLL {card['best_validation_nll']:.4g}); weights in {out}/: {model}.pt, {model}.json, "
        f"{model}_reference.npz"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
