"""The byte layout semzip's files share (preamble, section headers, block index rows), and the
bytes of an archive that are neither codec state nor block payload, which rate control allows for.

The container writes with these structures; a codec that meets a whole-archive budget (SMIC's
`bits=`) asks `overhead_bytes` instead of knowing the layout.
"""

from __future__ import annotations

import math
import struct

import numpy as np

PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, section count
SECTION = struct.Struct("<4sQI")  # tag, payload length, CRC-32 of payload
INDEX = np.dtype([("offset", "<u8"), ("nbytes", "<u4"), ("items", "<u4"), ("crc", "<u4")])  # one row per block
DEFAULT_BLOCK_ITEMS = 1024
#: HEAD's JSON (format, counts, model id, codec id, spec and hash, writer), allowed for at its size
#: with long model ids and specs (measured: 250-280 bytes with a ViT-L-14-336 model id).
HEAD_BYTES = 544
#: Per block beyond the first: the symbol stream's 32-bit mode word and its word padding.
STREAM_BYTES = 8


def overhead_bytes(items: int, block_items: int = DEFAULT_BLOCK_ITEMS) -> int:
    """Bytes of an archive of `items` items (its codec embedded, default ids) besides the codec's
    state and the payload of one symbol stream: preamble, the HEAD, CODC, DATA, INDX and IDS_ section
    headers, HEAD itself, and per block an INDX row and the framing of its own stream."""
    blocks = math.ceil(items / block_items)
    return PREAMBLE.size + 5 * SECTION.size + HEAD_BYTES + blocks * (INDEX.itemsize + STREAM_BYTES)
