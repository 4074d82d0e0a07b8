"""Parse a GGUF file once while transformers converts it.

Profiled on the embedded SmolLM2-135M (2 cores): transformers' GGUF path builds a
`gguf.GGUFReader` for the config, again for the tokenizer's config and again for the
weights (~3 s each: the reader turns every one of the 49k tokens and merges into numpy
views), and maps tensor names by building gguf's `TensorNameMap` once per submodule
(~400 times, the same table each time). Dequantizing the tensors themselves takes ~1.5 s.

Inside `parse_once()`, the first reader of a file is reused by every later reader of the
same file, and the name table is built once per (architecture, block count). transformers'
own code does all the conversion, so the tensors, config and tokenizer are those of its
plain loader by construction (tests compare every tensor); only repeated parsing is gone.
Both are read-only objects, and the originals are restored on leaving.

The one reader also slices the file through a plain numpy view of its memory map: gguf
cuts each of the ~250k metadata pieces out of an `np.memmap`, whose subclass bookkeeping
costs more than the slicing (reader 4.7 s -> 1.8 s; same bytes, still memory-mapped).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterator

_LOCK = threading.Lock()  # the patch is process-wide: one conversion at a time


def plain_view_reader(original_reader):
    """A GGUFReader subclass whose pieces are views of a plain ndarray over the memory map."""
    import numpy as np

    class PlainViewReader(original_reader):
        def _get(self, offset, dtype, count=1, override_order=None):
            # gguf's own _get, on `self.data.view(np.ndarray)` instead of the np.memmap itself.
            plain = self.__dict__.get("_plain_data")
            if plain is None:
                plain = self._plain_data = self.data.view(np.ndarray)
            count = int(count)
            end = offset + np.dtype(dtype).itemsize * count
            arr = plain[offset:end].view(dtype=dtype)[:count]
            return arr.view(arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order))

    return PlainViewReader


@contextlib.contextmanager
def parse_once() -> Iterator[None]:
    import gguf

    with _LOCK:
        original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
        readers: dict = {}
        fast_reader = plain_view_reader(original_reader)

        def shared_reader(path, mode="r"):
            if mode != "r":  # a writer of the file: never share
                return original_reader(path, mode)
            key = os.path.realpath(os.fspath(path))
            if key not in readers:
                readers[key] = fast_reader(path, mode)
            return readers[key]

        gguf.GGUFReader = shared_reader
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
            readers.clear()
