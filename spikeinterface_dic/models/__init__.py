"""Conductance-based models declared as data (see :mod:`.base`)."""

from .base import Channel, CompensationCase, CompensationRule, Concentration, Gate, Model, sigmoid
from .da import DA
from .stg import STG

MODELS = {"stg": STG, "da": DA}


def get_model(model: "str | Model") -> Model:
    """Return a model by name ("stg" | "da"), or the model itself if one is given."""
    if isinstance(model, Model):
        return model
    key = str(model).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[key]


__all__ = [
    "Channel",
    "CompensationCase",
    "CompensationRule",
    "Concentration",
    "Gate",
    "Model",
    "sigmoid",
    "get_model",
    "MODELS",
    "STG",
    "DA",
]
