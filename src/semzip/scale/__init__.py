"""Scale-out compression with Ray Data: sharded collections too big for one process or one machine.

`compress_sharded(source, out_dir, codec, workers=...)` embeds (images) or reads (embedding files)
items in parallel Ray workers, fits the codec on a seeded sample, and writes a resumable sharded
collection that `semzip.shards.ShardedArchive` (and `semzip decompress/info`) read as one.
Needs the optional extra `semzip[ray]`; Ray is imported only when a run starts. See docs/SCALE.md.
"""

from ._run import compress_sharded, local_runtime_env
from ._sources import EmbeddingSource, ImageSource, open_source

__all__ = ["EmbeddingSource", "ImageSource", "compress_sharded", "local_runtime_env", "open_source"]
