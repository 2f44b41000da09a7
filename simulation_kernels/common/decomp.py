"""Cartesian domain decomposition and halo exchange, with or without MPI.

A 2D grid of ``rows x cols`` points is split into a ``prow x pcol`` process grid. Each rank
holds its block with ``halo`` ghost cells on every side, in one C-contiguous array of shape
``(nrows + 2 halo, ncols + 2 halo)``. Rows are exchanged directly (a block of full rows is
contiguous); columns go through preallocated contiguous buffers, since a strided column view
cannot be sent (mpi4py raises ``BufferError``). Columns go first, then full-width rows, so the
corner ghosts are filled as well.

Without an MPI launcher (or without mpi4py) the same object runs one rank and fills periodic
ghosts by copying.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Decomposition", "get_world"]

_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def get_world() -> Any | None:
    """Return ``MPI.COMM_WORLD`` when this process was started by an MPI launcher, else ``None``.

    Importing ``mpi4py.MPI`` outside a launcher would initialise a singleton MPI for nothing,
    so it is only imported when ``python -m mpi4py`` already did or a launcher variable is set.
    """
    if "mpi4py.MPI" not in sys.modules and not any(v in os.environ for v in _LAUNCHER_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


@dataclass
class Decomposition:
    """One rank's view of a ``rows x cols`` grid split over ``dims`` ranks.

    :param rows: global number of rows.
    :param cols: global number of columns.
    :param dims: process grid ``(prow, pcol)``; its product must equal the number of ranks.
    :param halo: ghost cells on each side.
    :param periodic: whether the grid wraps around in both directions.
    :param comm: an MPI communicator, or ``None`` for one rank.
    """

    rows: int
    cols: int
    dims: tuple[int, int]
    halo: int
    periodic: bool
    comm: Any | None = None
    rank: int = 0
    size: int = 1
    coords: tuple[int, int] = (0, 0)
    cart: Any | None = None
    _buffers: dict[Any, list[np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        prow, pcol = self.dims
        size = 1 if self.comm is None else self.comm.Get_size()
        if prow * pcol != size:
            raise ValueError(f"process grid {prow}x{pcol} needs {prow * pcol} ranks, running on {size}")
        if self.rows % prow or self.cols % pcol:
            raise ValueError(f"process grid {prow}x{pcol} does not divide the {self.rows}x{self.cols} grid")
        self.size = size
        if self.comm is not None and size > 1:
            self.cart = self.comm.Create_cart([prow, pcol], periods=[self.periodic] * 2, reorder=False)
            self.rank = self.cart.Get_rank()
            self.coords = tuple(self.cart.Get_coords(self.rank))  # type: ignore[assignment]
        self.nrows = self.rows // prow
        self.ncols = self.cols // pcol
        self.row0 = self.coords[0] * self.nrows
        self.col0 = self.coords[1] * self.ncols

    @property
    def is_root(self) -> bool:
        """True on the rank that writes outputs."""
        return self.rank == 0

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the local array, ghosts included."""
        return (self.nrows + 2 * self.halo, self.ncols + 2 * self.halo)

    def allocate(self, dtype: Any = np.float64) -> np.ndarray:
        """A zeroed local array with ghosts."""
        return np.zeros(self.shape, dtype=dtype)

    def interior(self, arr: np.ndarray) -> np.ndarray:
        """View of the owned block (no ghosts)."""
        h = self.halo
        return arr[h : h + self.nrows, h : h + self.ncols]

    def local_rows(self) -> np.ndarray:
        """Global row indices of the owned rows."""
        return np.arange(self.row0, self.row0 + self.nrows)

    def local_cols(self) -> np.ndarray:
        """Global column indices of the owned columns."""
        return np.arange(self.col0, self.col0 + self.ncols)

    def owns(self, row: int, col: int) -> bool:
        """Whether global point ``(row, col)`` is in this rank's block."""
        return self.row0 <= row < self.row0 + self.nrows and self.col0 <= col < self.col0 + self.ncols

    # -- halo exchange -------------------------------------------------------------------
    def exchange(self, arr: np.ndarray) -> None:
        """Fill the ghost cells of ``arr`` from the neighbours (or periodic copies)."""
        if self.cart is None:
            self._exchange_local(arr)
        else:
            self._exchange_mpi(arr)

    def _exchange_local(self, arr: np.ndarray) -> None:
        if not self.periodic:
            return
        h, nr, nc = self.halo, self.nrows, self.ncols
        arr[h : h + nr, :h] = arr[h : h + nr, nc : nc + h]
        arr[h : h + nr, nc + h :] = arr[h : h + nr, h : 2 * h]
        arr[:h, :] = arr[nr : nr + h, :]
        arr[nr + h :, :] = arr[h : 2 * h, :]

    def _column_buffers(self, arr: np.ndarray) -> list[np.ndarray]:
        key = arr.dtype.str
        if key not in self._buffers:
            self._buffers[key] = [np.empty((self.nrows, self.halo), dtype=arr.dtype) for _ in range(4)]
        return self._buffers[key]

    def _exchange_mpi(self, arr: np.ndarray) -> None:
        h, nr, nc = self.halo, self.nrows, self.ncols
        cart = self.cart
        # columns: west <-> east through contiguous buffers
        west, east = cart.Shift(1, 1)
        send_w, send_e, recv_w, recv_e = self._column_buffers(arr)
        send_e[...] = arr[h : h + nr, nc : nc + h]
        send_w[...] = arr[h : h + nr, h : 2 * h]
        cart.Sendrecv(send_e, dest=east, sendtag=11, recvbuf=recv_w, source=west, recvtag=11)
        cart.Sendrecv(send_w, dest=west, sendtag=12, recvbuf=recv_e, source=east, recvtag=12)
        null = _proc_null()
        if west != null:
            arr[h : h + nr, :h] = recv_w
        if east != null:
            arr[h : h + nr, nc + h :] = recv_e
        # rows: north <-> south, full width (ghost columns included: fills the corners)
        north, south = cart.Shift(0, 1)
        cart.Sendrecv(
            arr[nr : nr + h, :], dest=south, sendtag=21, recvbuf=arr[:h, :], source=north, recvtag=21
        )
        cart.Sendrecv(
            arr[h : 2 * h, :], dest=north, sendtag=22, recvbuf=arr[nr + h :, :], source=south, recvtag=22
        )

    # -- collectives -----------------------------------------------------------------------
    def gather(self, arr: np.ndarray) -> np.ndarray | None:
        """Assemble the global field from every rank's interior; the array on rank 0, ``None`` elsewhere."""
        block = np.ascontiguousarray(self.interior(arr))
        if self.cart is None:
            return block.copy()
        parts = self.cart.gather((self.row0, self.col0, block), root=0)
        if not self.is_root:
            return None
        out = np.empty((self.rows, self.cols), dtype=arr.dtype)
        for r0, c0, b in parts:
            out[r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
        return out

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Gather one Python object per rank on rank 0 (``None`` elsewhere)."""
        if self.cart is None:
            return [obj]
        return self.cart.gather(obj, root=0)

    def allreduce(self, value: float, op: str = "sum") -> float:
        """Sum, max or min of a scalar over all ranks."""
        if self.cart is None:
            return value
        from mpi4py import MPI

        return self.cart.allreduce(value, op={"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op])

    def bcast(self, obj: Any) -> Any:
        """Broadcast ``obj`` from rank 0."""
        return obj if self.cart is None else self.cart.bcast(obj, root=0)


def _proc_null() -> int:
    from mpi4py import MPI

    return MPI.PROC_NULL
