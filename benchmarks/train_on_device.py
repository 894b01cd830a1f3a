"""Generate training data and train (or fine-tune) the shipped networks on a many-core machine with a GPU.

Stages overlap to use the machine fully: the STG set is generated first (numba, every core); then STG training runs
on the GPU in a child process while the DA set is generated on the remaining cores; then DA training. Everything the
run makes lands in ``--out`` (data folders, weights, cards, timings.json), so an interrupted run keeps what finished.

Usage (all sizes are targets of 16 members each):
    python benchmarks/train_on_device.py --out output/device --stg-targets 4000 --da-targets 1600 \
        --fine-tune spikeinterface_dic/inference/weights --stg-minutes 3 --da-minutes 2.5

On a CPU-only machine use the CLI instead (README, "Training on a CPU"): the same functions, one stage at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _train_child(args, model: str, minutes: float) -> list[str]:
    code = (
        "import json, sys\n"
        "from spikeinterface_dic.inference.train import train\n"
        f"card = train({[str(f) for f in _folders(args, model)]!r}, {str(args.out / 'weights')!r}, {model!r},"
        f" seed={args.seed}, max_epochs={args.max_epochs}, patience=8, max_minutes={minutes},"
        f" learning_rate={args.learning_rate}, progress_bar=True,"
        f" initial_weights_dir={_initial(args, model)!r})\n"
        "print(json.dumps({k: card[k] for k in ('epochs', 'training_seconds', 'best_validation_nll')}))\n"
    )
    return [sys.executable, "-c", code]


def _initial(args, model: str) -> str | None:
    folder = args.fine_tune_stg if model == "stg" else args.fine_tune_da
    folder = folder or args.fine_tune
    return None if folder is None else str(folder)


def _folders(args, model: str) -> list[Path]:
    targets = args.stg_targets if model == "stg" else args.da_targets
    folders = [args.out / f"data_{model}"] if targets > 0 else []
    folders += [Path(f) for f in (args.extra_stg if model == "stg" else args.extra_da)]
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stg-targets", type=int, default=4000)
    parser.add_argument("--da-targets", type=int, default=1600)
    parser.add_argument("--data-seed", type=int, default=4, help="not 1: seed 1 is the held-out test set")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--fine-tune", type=Path, default=None, help="weights folder to continue from")
    parser.add_argument("--fine-tune-stg", type=Path, default=None, help="STG weights folder (overrides --fine-tune)")
    parser.add_argument("--fine-tune-da", type=Path, default=None, help="DA weights folder (overrides --fine-tune)")
    parser.add_argument("--extra-stg", nargs="*", default=[], help="more STG data folders to train on")
    parser.add_argument("--extra-da", nargs="*", default=[], help="more DA data folders to train on")
    parser.add_argument("--stg-minutes", type=float, default=3.0)
    parser.add_argument("--da-minutes", type=float, default=2.5)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--deadline-minutes", type=float, default=None, help="shorten DA training so that the run ends by then"
    )
    args = parser.parse_args()
    if args.data_seed == 1:
        parser.error("--data-seed 1 is the held-out test set's seed")
    import numba

    from spikeinterface_dic.inference.data import generate_training_data

    args.out.mkdir(parents=True, exist_ok=True)
    timings = {"threads": numba.get_num_threads()}
    started = time.perf_counter()

    def log(key):
        timings[key] = round(time.perf_counter() - started, 1)
        (args.out / "timings.json").write_text(json.dumps(timings, indent=2))
        print(json.dumps(timings), flush=True)

    da_log = open(args.out / "train_da.log", "w")  # noqa: SIM115 - the child writes to it until it exits
    da_child = None
    if args.da_targets == 0:
        # DA data given (--extra-da): its training runs on the GPU while the STG set is generated.
        da_child = subprocess.Popen(
            _train_child(args, "da", args.da_minutes),
            stdout=da_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        numba.set_num_threads(max(1, numba.get_num_threads() - 2))
    if args.stg_targets > 0:
        generate_training_data(
            "stg", args.out / "data_stg", n_targets=args.stg_targets, seed=args.data_seed, chunk_size=50
        )
    log("stg_data_done_s")
    stg_log = open(args.out / "train_stg.log", "w")  # noqa: SIM115 - the child writes to it until it exits
    stg_minutes = args.stg_minutes
    if args.deadline_minutes is not None and args.da_targets == 0:
        stg_minutes = max(0.2, min(stg_minutes, args.deadline_minutes - (time.perf_counter() - started) / 60 - 1.0))
    timings["stg_training_minutes"] = stg_minutes
    stg_child = subprocess.Popen(
        _train_child(args, "stg", stg_minutes),
        stdout=stg_log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    if da_child is None:
        # The training child needs a core or two for batching; the kernel takes the rest.
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS - 2))
        generate_training_data(
            "da", args.out / "data_da", n_targets=args.da_targets, seed=args.data_seed, chunk_size=50
        )
        log("da_data_done_s")
        da_minutes = args.da_minutes
        if args.deadline_minutes is not None:
            # Leave a minute for loading the data and writing the card.
            da_minutes = max(0.2, min(da_minutes, args.deadline_minutes - (time.perf_counter() - started) / 60 - 1.0))
        timings["da_training_minutes"] = da_minutes
        da_child = subprocess.Popen(_train_child(args, "da", da_minutes), stdout=da_log, stderr=subprocess.STDOUT)
    da_child.wait()
    da_log.close()
    log("da_train_done_s")
    stg_child.wait()
    stg_log.close()
    log("stg_train_done_s")
    timings["return_codes"] = {"stg": stg_child.returncode, "da": da_child.returncode}
    log("total_s")


if __name__ == "__main__":
    main()
