"""One validated run configuration, shared by every front end.

:class:`RunConfig` holds every setting of a run (inference and twins), with units in the field names. It is
validated once, when built, and serialised once (:meth:`RunConfig.to_dict`): ``run_pipeline``, Dask, the CLI, the
web app and the SpikeInterface extensions take it, and the result's ``parameters`` (CSV, NWB provenance) are its
``to_dict()``. A new setting is one field here (plus, where a front end exposes it, one option there).

Execution settings that cannot change a result (progress bars, threads, Dask chunking) are not part of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .models import Model, get_model

# Names accepted for a field besides its own: earlier keyword names, and the parameters stored by extensions and NWB
# files written before the configuration existed.
_LEGACY_NAMES = {"noise_std": "noise_std_uA_cm2"}
# Keys that to_dict and results' parameters carry but that are derived, not settings.
_DERIVED_KEYS = {"model_digest", "dt_ms"}


def _positive_time_scale(value, where: str) -> float:
    try:
        k = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"time_scale {where} must be a positive number; got {value!r}") from None
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"time_scale {where} must be a positive number (or None to estimate it); got {value!r}")
    return k


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run.

    Attributes
    ----------
    model : str | Model, default: "stg"
        Model family ("stg" | "da") or a user-declared :class:`~spikeinterface_dic.models.Model`.
    device : str, default: "cpu"
        torch device of the inference network.
    weights_dir : str | None, default: None
        Folder of network weights made by ``spikeinterface-dic train`` (None: the shipped weights).
    refractory_ms : float, default: 1.0
        ISIs shorter than this are refractory violations: the second spike is dropped before inference and from the
        recorded train the twins are compared with.
    time_scale : None | float | mapping, default: None
        Known time scale k (one for every unit, or {unit_id: k}); None estimates it. Units with a known k are never
        adapted (see ``adapt_time_scale``).
    time_scale_range : (k_low, k_high) | None, default: None
        What is known of k as a range, for the units whose k is not given (applied to the joint posterior; see
        docs/posterior.md).
    span_source : "recording" | "window" | None, default: None
        How the units' trains came to span what they span, if known: "recording" (as long as the recording lasted,
        which says nothing of k), "window" (simulated windows times k, as ``generate-data`` writes them); None weighs
        both by their evidence (see :func:`~spikeinterface_dic.infer_dics`).
    population_size : int, default: 100
        Twins per unit.
    simulate : bool, default: True
        Simulate the twins and score them against the recorded trains.
    seed : int, default: 0
        Every random step derives from (seed, unit id).
    duration_s : float | None, default: None
        Recorded window of each twin in s of real time; None: the model's default window in its own time.
    noise_std_uA_cm2 : float, default: 0.0
        Standard deviation of the noisy current injected into the twins.
    frequency_tolerance : float, default: 0.10
        Relative tolerance on the main frequency for a twin to match its unit.
    spikes_per_burst_tolerance : float, default: 1.0
        Tolerance, in spikes, on the mean spikes per burst for a twin to match its unit (its floor: see below).
    spikes_per_burst_relative_tolerance : float, default: 0.10
        Relative tolerance on the mean spikes per burst where it exceeds ``spikes_per_burst_tolerance`` (bursts of
        more than 10 spikes at the defaults; :func:`~spikeinterface_dic.features.spikes_per_burst_tolerance_of`).
    adapt_time_scale : bool, default: True
        Rescale an estimated k so that the twins' median main frequency equals the recorded one.
    twin_selection : bool, default: True
        Refine the twins until they reproduce the unit's pattern: with ``twin_sampling="posterior"``, sequential
        Monte Carlo from the matching twins (:mod:`~spikeinterface_dic.twin_posterior`); with ``"point"``, matching
        members drawn for the same DICs replace the others.
    twin_sampling : "posterior" | "point", default: "posterior"
        "posterior": each twin gets its own (g_s, g_u, k) drawn from the unit's posterior (models with posterior
        flows; the others, and units whose estimates were given, use "point"; with ``simulate=False`` the populations
        are built for the point estimate, since the draws are refined against simulated twins). "point": every twin
        of a unit is built for its point estimate (the median), as Spike2Pop does.
    """

    model: str | Model = "stg"
    device: str = "cpu"
    weights_dir: str | None = None
    refractory_ms: float = 1.0
    time_scale: float | Mapping | None = None
    time_scale_range: tuple | None = None
    span_source: str | None = None
    population_size: int = 100
    simulate: bool = True
    seed: int = 0
    duration_s: float | None = None
    noise_std_uA_cm2: float = 0.0
    frequency_tolerance: float = 0.10
    spikes_per_burst_tolerance: float = 1.0
    spikes_per_burst_relative_tolerance: float = 0.10
    adapt_time_scale: bool = True
    twin_selection: bool = True
    twin_sampling: str = "posterior"

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise once, here
        model = get_model(self.model)
        set_(self, "model", model.name if _is_stock(model) else model)
        if isinstance(self.population_size, bool) or int(self.population_size) != self.population_size:
            raise ValueError(f"population_size must be an integer >= 1; got {self.population_size!r}")
        if int(self.population_size) < 1:
            raise ValueError(f"population_size must be >= 1; got {self.population_size}")
        set_(self, "population_size", int(self.population_size))
        set_(self, "seed", int(self.seed))
        for name in ("simulate", "adapt_time_scale", "twin_selection"):
            set_(self, name, bool(getattr(self, name)))
        for name in (
            "refractory_ms",
            "noise_std_uA_cm2",
            "frequency_tolerance",
            "spikes_per_burst_tolerance",
            "spikes_per_burst_relative_tolerance",
        ):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {getattr(self, name)!r}")
            set_(self, name, value)
        if self.duration_s is not None:
            duration = float(self.duration_s)
            if not (math.isfinite(duration) and duration > 0):
                raise ValueError(f"duration_s must be > 0 (s of real time) or None; got {self.duration_s!r}")
            set_(self, "duration_s", duration)
        if self.twin_sampling not in TWIN_SAMPLING:
            raise ValueError(f"twin_sampling must be one of {TWIN_SAMPLING}; got {self.twin_sampling!r}")
        set_(self, "device", str(self.device))
        if self.weights_dir is not None:
            set_(self, "weights_dir", str(self.weights_dir))
        set_(self, "time_scale", _normalise_time_scale(self.time_scale))
        if self.time_scale_range is not None:
            low, high = (_positive_time_scale(v, "range bound") for v in self.time_scale_range)
            if not low < high:
                raise ValueError(
                    f"time_scale_range must be (k_low, k_high) with k_low < k_high; got {self.time_scale_range}"
                )
            set_(self, "time_scale_range", (low, high))
        from .inference.tonic_rate import check_span_source  # the inference layer owns the list of sources

        check_span_source(self.span_source)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, settings: Mapping | None = None, **overrides) -> RunConfig:
        """A configuration from a mapping of settings (e.g. :meth:`to_dict` output, stored extension parameters)
        and keyword overrides; unknown keys are an error that lists the known ones."""
        merged = {**(settings or {}), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in merged.items():
            if key in _DERIVED_KEYS:
                continue
            name = _LEGACY_NAMES.get(key, key)
            if name not in known:
                raise TypeError(f"unknown run setting {key!r}; the settings are {', '.join(sorted(known))}")
            values[name] = value
        return cls(**values)

    def replace(self, **changes) -> RunConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **{_LEGACY_NAMES.get(k, k): v for k, v in changes.items()})

    # ---------------------------------------------------------------- serialisation
    def pattern_tolerances(self, frequency: bool = True) -> dict:
        """The keywords of :func:`~spikeinterface_dic.features.pattern_matches` (and ``pattern_distance``) for
        this run; ``frequency=False``: any main frequency (the label and spikes per burst only)."""
        return {
            "frequency_tolerance": self.frequency_tolerance if frequency else math.inf,
            "spikes_per_burst_tolerance": self.spikes_per_burst_tolerance,
            "spikes_per_burst_relative_tolerance": self.spikes_per_burst_relative_tolerance,
        }

    def to_dict(self) -> dict:
        """JSON-serialisable settings (the ``parameters`` of results, NWB provenance, extension parameters)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        model = get_model(self.model)
        out["model"] = model.name
        if not _is_stock(model):
            out["model_digest"] = model.digest
        if isinstance(self.time_scale, tuple):
            out["time_scale"] = {str(unit): k for unit, k in self.time_scale}
        if self.time_scale_range is not None:
            out["time_scale_range"] = list(self.time_scale_range)
        return out

    # ---------------------------------------------------------------- derived
    @property
    def model_declaration(self) -> Model:
        return get_model(self.model)

    def known_time_scale(self, unit_id) -> float:
        """The known k of a unit (NaN when estimated)."""
        if self.time_scale is None:
            return math.nan
        if isinstance(self.time_scale, float):
            return self.time_scale
        for unit, k in self.time_scale:
            if unit == unit_id or str(unit) == str(unit_id):
                return k
        return math.nan

    def time_scale_argument(self):
        """``time_scale`` as :func:`~spikeinterface_dic.infer_dics` takes it (None, a float or a dict)."""
        return dict(self.time_scale) if isinstance(self.time_scale, tuple) else self.time_scale


# How twins get their (g_s, g_u, k): see RunConfig.twin_sampling.
TWIN_SAMPLING = ("posterior", "point")


def _is_stock(model: Model) -> bool:
    from .models import MODELS

    return MODELS.get(model.name) is model or MODELS.get(model.name) == model


def _normalise_time_scale(value):
    """None, a positive float, or a sorted tuple of (unit id, k) pairs (hashable, as the frozen dataclass needs)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        pairs = []
        for unit, k in value.items():
            if k is None or (isinstance(k, float) and math.isnan(k)):
                continue  # unknown for this unit
            pairs.append((unit, _positive_time_scale(k, f"of unit {unit!r}")))
        return tuple(pairs) if pairs else None
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return tuple((unit, _positive_time_scale(k, f"of unit {unit!r}")) for unit, k in value)
    return _positive_time_scale(value, "for every unit")


# Which settings each SpikeInterface extension holds: the DIC extension reads the trains, the twin extension builds
# twins from its estimates. Together they are one RunConfig (device is an execution choice of the analyzer's session
# and stays "cpu" there).
INFERENCE_SETTINGS = ("model", "weights_dir", "refractory_ms", "time_scale", "time_scale_range", "span_source")
TWIN_SETTINGS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in (*INFERENCE_SETTINGS, "device"))

__all__ = ["RunConfig", "INFERENCE_SETTINGS", "TWIN_SETTINGS"]
