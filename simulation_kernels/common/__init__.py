"""Helpers shared by the kernels: configuration I/O, progress lines, MPI decomposition."""

from __future__ import annotations
