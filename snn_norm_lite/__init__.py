"""snn-norm-lite: normalisation for spiking neural networks, as a teaching package.

Modules, in the order data flows through them: ``data`` -> ``neurons`` and ``norms`` ->
``models`` -> ``training`` -> ``probes`` -> ``plots`` and ``widgets``; ``experiments`` ties them
together for the chapters and the command line (``python -m snn_norm_lite``); ``distributed``
runs them data-parallel on several processes (``torchrun``).
"""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (completes the registry: norms/ registers the layers, models the E-I network)
