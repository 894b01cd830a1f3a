"""Training data: DIC-guided sampling (method spec section 6), simulated with our kernel, written in resumable chunks.

A Latin hypercube over (g_s, g_u) gives the targets; each target gets a degenerate population (``population_size``
members, :func:`spikeinterface_dic.generate_population`), and all members of a chunk are simulated together by the
numba kernel. Chunks are ``chunk_XXXXX.npz`` files written atomically (temporary file, then rename), so an interrupted
run resumes where it stopped and chunks can be produced in parallel (by process or on a Dask cluster): chunk c depends
only on (seed, c). ``recipe.json`` records everything needed to regenerate the data.

Chunk contents: target_index (m,), g_s (m,), g_u (m,), gbar (m, n_channels), noise_std (m,), spike_times (flat, s)
and spike_offsets (m + 1,) - member i's train is spike_times[spike_offsets[i]:spike_offsets[i + 1]], seconds after
the transient, simulated at time_scale 1 (time scales are applied by the training augmentation, which is exact:
a simulation at k is the k = 1 one with times multiplied by k).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..models import get_model
from ..version import __version__


def latin_hypercube_targets(model, n_targets: int, seed: int) -> np.ndarray:
    """(n_targets, 2) array of (g_s, g_u) targets over the model's training ranges."""
    from scipy.stats import qmc

    model = get_model(model)
    low = np.array([model.extra["training_g_s"][0], model.extra["training_g_u"][0]])
    high = np.array([model.extra["training_g_s"][1], model.extra["training_g_u"][1]])
    sample = qmc.LatinHypercube(d=2, seed=np.random.default_rng(np.random.SeedSequence([seed, 0]))).random(n_targets)
    return low + sample * (high - low)


def _chunk_path(out_dir: Path, chunk: int) -> Path:
    return out_dir / f"chunk_{chunk:05d}.npz"


def generate_chunk(model, out_dir, chunk: int, recipe: dict) -> Path:
    """Generate (or skip, if present) one chunk of the data set described by ``recipe``."""
    from ..population import generate_population
    from ..simulate import simulate

    model = get_model(model)
    out_dir = Path(out_dir)
    path = _chunk_path(out_dir, chunk)
    if path.exists():
        return path
    targets = latin_hypercube_targets(model, recipe["n_targets"], recipe["seed"])
    start = chunk * recipe["chunk_size"]
    stop = min(start + recipe["chunk_size"], recipe["n_targets"])
    rng = np.random.default_rng(np.random.SeedSequence([recipe["seed"], 1, chunk]))
    gbars, g_s, g_u, index = [], [], [], []
    for target_index in range(start, stop):
        target_g_s, target_g_u = targets[target_index]
        try:
            population = generate_population(
                model,
                g_s=target_g_s,
                g_u=target_g_u,
                n=recipe["population_size"],
                seed=int(np.random.SeedSequence([recipe["seed"], 2, target_index]).generate_state(1)[0]),
            )
        except ValueError:
            continue  # unreachable target: recorded as absent (the recipe's counts say how many)
        gbars.append(population.gbar)
        g_s += [target_g_s] * len(population.gbar)
        g_u += [target_g_u] * len(population.gbar)
        index += [target_index] * len(population.gbar)
    gbar = np.concatenate(gbars) if gbars else np.empty((0, model.n_channels))
    noisy = rng.random(len(gbar)) < recipe["noise_fraction"]
    noise_std = np.where(noisy, rng.uniform(0.0, recipe["noise_std_max"], len(gbar)), 0.0)
    trains = []
    if len(gbar):
        seed_sim = int(np.random.SeedSequence([recipe["seed"], 3, chunk]).generate_state(1)[0])
        trains = simulate(
            model,
            gbar,
            duration_s=recipe["duration_s"],
            transient_s=recipe["transient_s"],
            noise_std=noise_std,
            seed=seed_sim,
        )
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in trains])]).astype(np.int64)
    spike_times = np.concatenate(trains) if trains else np.empty(0)
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        temporary,
        target_index=np.array(index, dtype=np.int64),
        g_s=np.array(g_s),
        g_u=np.array(g_u),
        gbar=gbar,
        noise_std=noise_std,
        spike_times=spike_times,
        spike_offsets=offsets,
    )
    os.replace(temporary, path)
    return path


def generate_training_data(
    model,
    out_dir,
    n_targets: int = 1000,
    population_size: int = 16,
    seed: int = 0,
    chunk_size: int = 64,
    duration_s: float | None = None,
    transient_s: float | None = None,
    noise_fraction: float = 0.3,
    noise_std_max: float = 3.0,
    client=None,
    progress_bar: bool = False,
) -> Path:
    """Generate a training set in ``out_dir`` (resumable; returns the folder).

    Parameters
    ----------
    model : "stg" | "da"
    n_targets : int, default: 1000
        Number of (g_s, g_u) targets (Latin hypercube over the model's training ranges).
    population_size : int, default: 16
        Members per target (the original used 16).
    noise_fraction, noise_std_max : float
        Fraction of members simulated with a noisy current, and the maximum of its sd (uA/cm2, drawn uniformly).
    client : dask.distributed.Client, default: None
        Run chunks as Dask tasks; None runs them here, one after the other.
    """
    model = get_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = {
        "model": model.name,
        "n_targets": int(n_targets),
        "population_size": int(population_size),
        "seed": int(seed),
        "chunk_size": int(chunk_size),
        "duration_s": float(model.default_duration_ms / 1000 if duration_s is None else duration_s),
        "transient_s": float(model.default_transient_ms / 1000 if transient_s is None else transient_s),
        "dt_ms": model.default_dt_ms,
        "g_s_range": list(model.extra["training_g_s"]),
        "g_u_range": list(model.extra["training_g_u"]),
        "sampling": "latin hypercube over (g_s, g_u)",
        "noise_fraction": float(noise_fraction),
        "noise_std_max": float(noise_std_max),
        "noise": "Ornstein-Uhlenbeck current, 1 kHz cut-off, from t = 0",
        "package_version": __version__,
    }
    recipe_path = out_dir / "recipe.json"
    if recipe_path.exists():
        existing = json.loads(recipe_path.read_text())
        different = {k for k in recipe if k != "package_version" and existing.get(k) != recipe[k]}
        if different:
            raise ValueError(
                f"{out_dir} holds data made with another recipe (differs in {sorted(different)}); use a new folder"
            )
    else:
        recipe_path.write_text(json.dumps(recipe, indent=2))
    n_chunks = -(-n_targets // chunk_size)
    started = time.perf_counter()
    if client is not None:
        futures = [
            client.submit(generate_chunk, model.name, str(out_dir), c, recipe, pure=False) for c in range(n_chunks)
        ]
        client.gather(futures)
    else:
        from tqdm.auto import tqdm

        for c in tqdm(range(n_chunks), desc=f"{model.name} training data", disable=not progress_bar):
            generate_chunk(model, out_dir, c, recipe)
    (out_dir / "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    return out_dir


def load_training_data(folder) -> dict:
    """Concatenate every chunk of a folder: dict of arrays plus 'trains' (list of arrays, s) and 'recipe'."""
    folder = Path(folder)
    chunks = sorted(folder.glob("chunk_*.npz"))
    chunks = [c for c in chunks if not c.name.endswith(".tmp.npz")]
    if not chunks:
        raise FileNotFoundError(f"no chunk_*.npz files in {folder}; run generate-data first")
    parts = {k: [] for k in ("target_index", "g_s", "g_u", "gbar", "noise_std")}
    trains = []
    for path in chunks:
        with np.load(path) as data:
            for key in parts:
                parts[key].append(data[key])
            offsets, times = data["spike_offsets"], data["spike_times"]
            trains += [times[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    out = {key: np.concatenate(value) for key, value in parts.items()}
    out["trains"] = trains
    out["recipe"] = json.loads((folder / "recipe.json").read_text())
    return out
