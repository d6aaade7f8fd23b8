"""Thread limits for work whose result must not depend on the machine's core count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run BLAS and faiss's OpenMP on one thread inside the block, restoring the settings after.

    Parallel reductions sum in a thread-dependent order, so seeded training would otherwise give a
    different codec (and hash) on a machine with another core count.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(before)
