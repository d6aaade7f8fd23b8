"""Search, classify and merge archives in the compressed domain (no decoding to float vectors).

`search_archive(archives, queries, k)` ranks items by inner product (cosine by default) with each
query, computed by the codecs' `scorer` on the codes; `Collection` keeps archives open (and
optionally their codes in memory) for many queries; `classify_archive` labels every item zero-shot
from text embeddings; `merge_archives` joins archives of one codec by copying blocks. See
docs/SEARCH.md.
"""

from ..container import merge_archives
from ._engine import Collection, SearchResult, classify_archive, search_archive

__all__ = ["Collection", "SearchResult", "classify_archive", "merge_archives", "search_archive"]
