"""Seismic kernel: ``python -m simulation_kernels.seismic --config CFG --output DIR``."""

from __future__ import annotations
