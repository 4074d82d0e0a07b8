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
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterator

_LOCK = threading.Lock()  # the patch is process-wide: one conversion at a time


@contextlib.contextmanager
def parse_once() -> Iterator[None]:
    import gguf

    with _LOCK:
        original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
        readers: dict = {}

        def shared_reader(path, mode="r"):
            if mode != "r":  # a writer of the file: never share
                return original_reader(path, mode)
            key = os.path.realpath(os.fspath(path))
            if key not in readers:
                readers[key] = original_reader(path, mode)
            return readers[key]

        gguf.GGUFReader = shared_reader
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
            readers.clear()
