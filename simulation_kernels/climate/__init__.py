"""Regional climate kernel: ``python -m simulation_kernels.climate --config CFG --output DIR``.

Storm analysis of one storm: ``python -m simulation_kernels.climate.rainfall --input DIR --storm ID
--output DIR``.
"""

from __future__ import annotations
