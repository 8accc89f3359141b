"""Transact: card payments in the middle of a customer conversation."""

import os

__version__ = "0.1.0"

# Before numpy loads: a service's numpy work is many small passes (the media DSP), on
# which a second OpenBLAS thread only spins, doubling the CPU time of the same work.
# A deployment may still choose otherwise by setting the variable itself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
