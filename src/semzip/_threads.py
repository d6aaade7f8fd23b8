"""Thread limits for work whose result must not depend on the machine's core count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._errors import InputError


@contextlib.contextmanager
def limited_threads(threads: int = 1) -> Iterator[None]:
    """Run BLAS and faiss's OpenMP on `threads` threads inside the block, restoring the settings after.

    Parallel reductions sum in a thread-dependent order, so seeded training gives the same codec (and
    hash) for a given thread count, not across thread counts: training pins the count instead of taking
    the machine's core count (one thread unless asked, e.g. `semzip fit --threads N`).
    """
    import faiss
    from threadpoolctl import threadpool_limits

    if not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        faiss.omp_set_num_threads(before)
