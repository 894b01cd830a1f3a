"""The text of the NEURON script written next to the exported mechanisms (:mod:`.twins_neuron`, a real module so
that it is linted and tested like the rest of the package)."""

from pathlib import Path

SCRIPT = (Path(__file__).parent / "twins_neuron.py").read_text()
