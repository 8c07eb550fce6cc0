"""A trace file's bytes in chunks, gzip or plain: at most CHUNK_BYTES decompressed at once."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from stepgap.analyze.trace import TraceError

CHUNK_BYTES = 16 << 20  # decompressed bytes handled per round
RAW_BYTES = 4 << 20  # compressed bytes read per zlib call

Progress = Callable[[int, int], None]  # (bytes read, file size)


def byte_chunks(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """The file's decompressed bytes in chunks; gzip is recognised by its magic bytes."""
    total = path.stat().st_size
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        if gzipped:
            yield from _gunzip(handle, path, total, progress)
            return
        while block := handle.read(CHUNK_BYTES):
            if progress:
                progress(handle.tell(), total)
            yield block


def _gunzip(handle, path: Path, total: int, progress: Progress | None) -> Iterator[bytes]:
    """Inflate at most CHUNK_BYTES at a time (traces compress ~20x: one raw block can hold
    hundreds of MB), member after member."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        while raw := handle.read(RAW_BYTES):
            data = raw
            while data:
                out = inflater.decompress(data, CHUNK_BYTES)
                data = inflater.unconsumed_tail
                if inflater.eof:  # a member ended; another may follow (zeros may pad it)
                    data = inflater.unused_data + data
                    if not data.strip(b"\x00"):
                        data = b""
                    elif data:
                        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                if out:
                    yield out
            if progress:
                progress(handle.tell(), total)
    except zlib.error as error:
        raise TraceError(f"{path}: corrupt gzip data ({error})") from None
    if not inflater.eof:
        raise TraceError(f"{path}: truncated gzip file (it ends before its end-of-stream marker)")
