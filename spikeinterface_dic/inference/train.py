"""Training of DICNet (CLI: ``spikeinterface-dic train``).

Reproducible from a seed (torch, numpy and the augmentation all derive from it), early stopping on a validation split
made by target (members of one population never straddle the split), CPU by default, CUDA when present.

Augmentation (training only; validation and test inputs are clean): Gaussian jitter with sd ~ U(0, 2) ms (times
re-sorted), deletion of up to 5 % of spikes, a random window of 8..``window`` ISIs, and the time scale k drawn from the
prior: with probability 1/2 k = 1 (the model's own kinetics), otherwise log2 k ~ U(-2.5, 3.5), i.e. k in
[0.18, 11.3], so that the supported k in [0.25, 8] lies inside the prior rather than at its edges (where a posterior
mean is pulled inwards).
This is the explicit prior on k that the per-unit estimate of k inherits (documented in the model card).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..features import spike_train_features
from .data import load_training_data
from .shape import ShapeReference, TimeScaleLibrary, library_statistics, shape_statistics

WINDOW = 128
K_LOG2_RANGE = (-2.5, 3.5)
K_PRIOR_POINT_MASS = 0.5


def load_folders(folders) -> dict:
    """One data folder, or several concatenated (target groups kept apart, recipes listed in order)."""
    if isinstance(folders, (str, Path)):
        return load_training_data(folders)
    parts = [load_training_data(f) for f in folders]
    if len(parts) == 1:
        return parts[0]
    models = {p["recipe"]["model"] for p in parts}
    if len(models) != 1:
        raise ValueError(
            f"training folders {list(map(str, folders))} mix models {sorted(models)}; train one model at a time"
        )
    out = {"trains": [t for p in parts for t in p["trains"]], "recipe": [p["recipe"] for p in parts]}
    for key in ("g_s", "g_u", "gbar", "noise_std"):
        out[key] = np.concatenate([p[key] for p in parts])
    # Target indices restart in every folder: offset them so that a population never straddles the validation split.
    offsets = np.cumsum([0] + [int(p["target_index"].max()) + 1 if len(p["target_index"]) else 0 for p in parts])
    out["target_index"] = np.concatenate([p["target_index"] + o for p, o in zip(parts, offsets, strict=False)])
    return out


def prepare(folder) -> dict:
    """Load chunks (one folder or a list), compute clean-train labels and auxiliary targets, drop silent trains."""
    data = load_folders(folder)
    features = spike_train_features(data["trains"])
    keep = (features["n_spikes"].to_numpy() >= 4) & (features["label"].to_numpy() != "silent")
    main = features["main_frequency_hz"].to_numpy()
    spb = features["nbr_spikes_bursting"].fillna(0.0).to_numpy()
    label = (features["label"].to_numpy() == "bursting").astype(np.int64)
    keep &= np.isfinite(main)
    index = np.flatnonzero(keep)
    return {
        "trains_ms": [np.asarray(data["trains"][i]) * 1000.0 for i in index],
        "y": np.stack([data["g_s"][index], data["g_u"][index]], axis=1),
        "label": label[index],
        "aux": np.stack([np.log(main[index]), spb[index]], axis=1),
        "group": data["target_index"][index],
        "noise_std": data["noise_std"][index],
        "recipe": data["recipe"],
        "n_dropped_silent": int((~keep).sum()),
    }


def make_batch(trains_ms, rng, augment: bool, window: int = WINDOW, log2_k=None):
    """Pad log ISIs of a list of trains into (B, T) arrays; returns (log_isi, mask, log_k)."""
    rows, log_ks = [], []
    for j, train in enumerate(trains_ms):
        t = np.asarray(train, dtype=float)
        if augment:
            t = np.sort(t + rng.normal(0.0, rng.uniform(0.0, 2.0), t.size))
            delete = rng.random(t.size) < rng.uniform(0.0, 0.05)
            if t.size - delete.sum() >= 4:
                t = t[~delete]
        isi = np.diff(t)
        isi = np.maximum(isi, 0.05)
        if augment:
            length = int(rng.integers(min(8, isi.size), min(window, isi.size) + 1))
            start = int(rng.integers(0, isi.size - length + 1))
        else:
            length, start = min(window, isi.size), 0
        isi = isi[start : start + length]
        if log2_k is not None:
            lk = float(log2_k[j]) * math.log(2.0)
        elif augment and rng.random() >= K_PRIOR_POINT_MASS:
            lk = rng.uniform(*K_LOG2_RANGE) * math.log(2.0)
        else:
            lk = 0.0
        rows.append(np.log(isi) + lk)
        log_ks.append(lk)
    width = max(len(r) for r in rows)
    log_isi = np.zeros((len(rows), width), dtype=np.float32)
    mask = np.zeros((len(rows), width), dtype=bool)
    for j, r in enumerate(rows):
        log_isi[j, : len(r)] = r
        mask[j, : len(r)] = True
    return log_isi, mask, np.array(log_ks, dtype=np.float32)


def _loss(outputs, y, log_k, label, aux):
    import torch

    scale = torch.tensor([10.0, 10.0, 1.0], device=y.device)
    target = torch.cat([y, log_k[:, None]], dim=1) / scale
    log_std = outputs["log_std"]
    nll = (0.5 * ((target - outputs["mean"]) / log_std.exp()) ** 2 + log_std).mean()
    ce = torch.nn.functional.cross_entropy(outputs["logits"], label)
    # Auxiliary targets at k = 1: the network must undo the time scale to predict them.
    aux_frequency = (outputs["aux"][:, 0] - (aux[:, 0] / 3.0)) ** 2
    aux_spb = label.float() * (outputs["aux"][:, 1] - aux[:, 1] / 10.0) ** 2
    return nll + 0.3 * ce + 0.3 * (aux_frequency.mean() + aux_spb.mean()), nll


LIBRARY_MAX_TRAINS = 40_000
# Below this many bursting trains a nearest-neighbour speed estimate is noise; the reference then holds no library.
LIBRARY_MIN_TRAINS = 200


def write_reference(path, trains_s, is_bursting) -> Path:
    """Write the shape reference (novelty flags) and the bursting time-scale library of ``trains_s`` to ``path``.

    Trains are model trains at k = 1 (seconds). The novelty reference keeps about 3,000 trains of every pattern; the
    library keeps up to 40,000 bursting trains (about 1 MB as float32; none below 200), evenly subsampled (no seed).
    The file is written to a temporary name and renamed, so an interrupted run never leaves a truncated reference.
    """
    path = Path(path)
    trains_s = list(trains_s)
    shapes = np.array([shape_statistics(t) for t in trains_s[:: max(1, len(trains_s) // 3000)]])
    arrays = ShapeReference(shapes).to_arrays()
    bursting = np.flatnonzero(np.asarray(is_bursting, dtype=bool))
    bursting = bursting[:: max(1, int(np.ceil(len(bursting) / LIBRARY_MAX_TRAINS)))]
    if len(bursting) >= LIBRARY_MIN_TRAINS:
        statistics = [library_statistics(trains_s[i]) for i in bursting]
        library = TimeScaleLibrary(np.array([s for s, _ in statistics]), np.array([v for _, v in statistics]))
        arrays.update(library.to_arrays())
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, path)
    return path


def train(
    data_folder,
    out_dir,
    model_name: str,
    seed: int = 0,
    max_epochs: int = 40,
    patience: int = 6,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    width: int = 48,
    device: str | None = None,
    validation_fraction: float = 0.1,
    max_minutes: float | None = None,
    progress_bar: bool = False,
    initial_weights_dir=None,
) -> dict:
    """Train DICNet on a generated data folder; writes ``<model>.pt`` and ``<model>.json`` into ``out_dir``.

    ``initial_weights_dir`` continues training (fine-tuning) from the weights and input standardisation of an earlier
    run (a folder holding ``<model>.pt`` and ``<model>.json``); its card's history is kept in the new card.
    """
    import torch

    from .network import DICNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10]))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = prepare(data_folder)
    groups = np.unique(data["group"])
    validation_groups = set(rng.choice(groups, max(1, int(len(groups) * validation_fraction)), replace=False).tolist())
    is_validation = np.array([g in validation_groups for g in data["group"]])
    train_index, validation_index = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
    all_log_isi = np.concatenate([np.log(np.maximum(np.diff(t), 0.05)) for t in data["trains_ms"]])
    previous_card = None
    if initial_weights_dir is not None:
        previous_card = json.loads((Path(initial_weights_dir) / f"{model_name}.json").read_text())
        net = DICNet(**previous_card["config"])
        net.load_state_dict(
            torch.load(Path(initial_weights_dir) / f"{model_name}.pt", map_location="cpu", weights_only=True)
        )
        net = net.to(device)
    else:
        net = DICNet(width=width, log_isi_mean=float(all_log_isi.mean()), log_isi_std=float(all_log_isi.std())).to(
            device
        )
    optimiser = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = max(1, len(train_index) // batch_size)
    total_steps = max_epochs * steps_per_epoch
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    clock = {"started": time.perf_counter()}

    def learning_rate_factor(step: int) -> float:
        # Linear warm-up over the first 10 %, then cosine decay to 1 %. Progress is the larger of the step fraction
        # and the elapsed fraction of max_minutes, so a time-capped run still anneals fully instead of stopping
        # at its peak rate (a step-only schedule planned for max_epochs would be cut off mid-way).
        progress = step / total_steps
        if budget_s is not None:
            progress = max(progress, (time.perf_counter() - clock["started"]) / budget_s)
        progress = min(progress, 1.0)
        if progress < 0.1:
            return 0.04 + 0.96 * progress / 0.1
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * (progress - 0.1) / 0.9))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, learning_rate_factor)
    validation_rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    validation_log2_k = np.where(
        validation_rng.random(len(validation_index)) < K_PRIOR_POINT_MASS,
        0.0,
        validation_rng.uniform(*K_LOG2_RANGE, len(validation_index)),
    )

    def tensors(index, augment, log2_k=None):
        log_isi, mask, log_k = make_batch([data["trains_ms"][i] for i in index], rng, augment, log2_k=log2_k)
        as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return (
            as_t(log_isi),
            as_t(mask),
            as_t(log_k),
            as_t(data["y"][index].astype(np.float32)),
            as_t(data["label"][index]),
            as_t(data["aux"][index].astype(np.float32)),
        )

    best, best_state, history, bad_epochs = math.inf, None, [], 0
    started = clock["started"] = time.perf_counter()
    for epoch in range(max_epochs):
        net.train()
        order = rng.permutation(train_index)
        total = 0.0
        for step in range(steps_per_epoch):
            log_isi, mask, log_k, y, label, aux = tensors(order[step * batch_size : (step + 1) * batch_size], True)
            loss, _ = _loss(net(log_isi, mask), y, log_k, label, aux)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
        net.eval()
        validation_loss = 0.0
        with torch.no_grad():
            for start in range(0, len(validation_index), 1024):
                chunk = validation_index[start : start + 1024]
                log_isi, mask, log_k, y, label, aux = tensors(chunk, False, validation_log2_k[start : start + 1024])
                validation_loss += float(_loss(net(log_isi, mask), y, log_k, label, aux)[0]) * len(chunk)
        validation_loss /= max(1, len(validation_index))
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / steps_per_epoch,
                "validation_nll": validation_loss,
                "seconds": time.perf_counter() - started,
            }
        )
        if progress_bar:
            print(json.dumps(history[-1]), flush=True)
        if validation_loss < best - 1e-4:
            best, bad_epochs = validation_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        if bad_epochs >= patience:
            break
        # Stop when the next epoch would overrun the time budget (the schedule has annealed by then).
        epoch_seconds = (time.perf_counter() - started) / (epoch + 1)
        if budget_s is not None and time.perf_counter() - started + 0.5 * epoch_seconds > budget_s:
            break
    training_seconds = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{model_name}.pt"
    torch.save(best_state, weights_path)
    write_reference(out_dir / f"{model_name}_reference.npz", [t / 1000.0 for t in data["trains_ms"]], data["label"])
    card = {
        "model": model_name,
        "fine_tuned_from": None
        if previous_card is None
        else {
            k: previous_card.get(k)
            for k in (
                "weights_sha256",
                "data_recipe",
                "device",
                "training_seconds",
                "epochs",
                "best_validation_nll",
                "fine_tuned_from",  # keeps the whole chain of runs
            )
        },
        "config": net.config,
        "window_isis": WINDOW,
        "time_scale_prior": {"point_mass_at_1": K_PRIOR_POINT_MASS, "log2_uniform_range": list(K_LOG2_RANGE)},
        "data_recipe": data["recipe"],
        "n_training_trains": int(len(train_index)),
        "n_validation_trains": int(len(validation_index)),
        "n_dropped_silent": data["n_dropped_silent"],
        "seed": seed,
        "device": device,
        "training_seconds": training_seconds,
        "epochs": len(history),
        "best_validation_nll": best,
        "history": history,
        "training_rate_hz_range": [
            float(np.exp(np.quantile(data["aux"][:, 0], 0.001))),
            float(np.exp(np.quantile(data["aux"][:, 0], 0.999))),
        ],
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "reference_sha256": hashlib.sha256((out_dir / f"{model_name}_reference.npz").read_bytes()).hexdigest(),
    }
    (out_dir / f"{model_name}.json").write_text(json.dumps(card, indent=2))
    return card


def refresh_reference(weights_dir, model_name: str, data_folders) -> dict:
    """Rebuild ``<model>_reference.npz`` of existing weights from data folders and record it in the model card.

    The network is untouched; only the novelty reference and the time-scale library change, with the new sha256
    and the recipes of the data they came from written into the card (atomically, like the reference).
    """
    weights_dir = Path(weights_dir)
    card_path = weights_dir / f"{model_name}.json"
    card = json.loads(card_path.read_text())
    data = prepare(data_folders)
    path = write_reference(
        weights_dir / f"{model_name}_reference.npz", [t / 1000.0 for t in data["trains_ms"]], data["label"]
    )
    with np.load(path) as arrays:
        n_library = int(len(arrays["library_log_speeds"])) if "library_log_speeds" in arrays else 0
    card["reference_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    # Chunks are resumable, so a folder may hold only part of its recipe's targets: record how many were used.
    card["reference_data"] = {
        "data_recipe": data["recipe"],
        "n_targets_used": int(len(np.unique(data["group"]))),
        "n_library_trains": n_library,
    }
    temporary = card_path.with_name(card_path.name + ".tmp")
    temporary.write_text(json.dumps(card, indent=2))
    os.replace(temporary, card_path)
    return card
