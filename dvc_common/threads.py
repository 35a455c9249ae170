"""A fixed torch thread count around entropy coding.

Encoder and decoder must compute bit-identical entropy parameters, or the rANS
decoder reads garbage. Some CPU kernels split work by thread and run a scalar
tail loop whose rounding differs from the vector body, so results can depend on
the thread count. Running the coding paths under one recorded thread count
removes that source of mismatch on a given machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: Thread count used for compress/decompress unless a file records another.
CODING_THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int = CODING_THREADS) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
