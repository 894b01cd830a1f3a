"""spikeinterface-dic: Dynamic Input Conductances and degenerate twin populations from spike times."""

__version__ = "0.1.0"

from .dic import compute_dics, compute_threshold, sensitivity_matrix
from .models import get_model

__all__ = ["__version__", "get_model", "compute_dics", "compute_threshold", "sensitivity_matrix"]
