#!/usr/bin/env bash
# Generate the training and held-out test data and train the shipped networks on a machine with many cores and a GPU.
# Usage: OUT=folder bash benchmarks/train_on_device.sh   (CPU-only machines: see README "Training on a CPU")
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-output/training}
mkdir -p "$OUT"
python3 - <<'PY'
import json, os, time
from pathlib import Path
import numba
out = Path(os.environ["OUT"])
from spikeinterface_dic.inference.data import generate_training_data
from spikeinterface_dic.inference.train import train
plan = {"stg": dict(n_targets=int(os.environ.get("STG_TARGETS", 3000)), test_targets=int(os.environ.get("STG_TEST", 200)), max_minutes=float(os.environ.get("MINUTES", 2.0))),
        "da": dict(n_targets=int(os.environ.get("DA_TARGETS", 800)), test_targets=int(os.environ.get("DA_TEST", 100)), max_minutes=float(os.environ.get("MINUTES", 1.5)))}
timings = {"threads": numba.get_num_threads()}
for model, p in plan.items():
    t = time.perf_counter()
    generate_training_data(model, Path(os.environ.get("DATA", out)) / f"data_{model}", n_targets=p["n_targets"], seed=0, chunk_size=50)
    timings[f"{model}_data_s"] = time.perf_counter() - t
    t = time.perf_counter()
    generate_training_data(model, out / f"test_{model}", n_targets=p["test_targets"], seed=1, chunk_size=50,
                           noise_fraction=0.0)
    timings[f"{model}_test_data_s"] = time.perf_counter() - t
    print(json.dumps(timings), flush=True)
for model, p in plan.items():
    t = time.perf_counter()
    card = train(Path(os.environ.get("DATA", out)) / f"data_{model}", out / "weights", model, seed=0, max_epochs=60, patience=8,
                 max_minutes=p["max_minutes"], progress_bar=True)
    timings[f"{model}_train_s"] = time.perf_counter() - t
    print(json.dumps(timings), flush=True)
(out / "timings.json").write_text(json.dumps(timings, indent=2))
PY
