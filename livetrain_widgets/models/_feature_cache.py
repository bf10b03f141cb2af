"""A memory-bounded cache of the frozen trunk's features, per image and augmentation variant.

The embedded model's frozen trunk (stem and blocks up to ``freeze_stride``, BatchNorm in eval mode, no
drop-connect) maps one input to the same features at every step, so a training step need not recompute
them: the trainer revisits each labeled image many times, under a few augmentation variants (a handful
of scales, two flips). On the reference 2-core CPU the frozen trunk is 35-40 % of a step with the trunk
frozen to stride 8, and 75 % with the whole backbone frozen; a hit costs a dictionary look-up.

Entries are evicted least-recently-used first once their bytes pass ``max_bytes``; one bigger than the
bound is not kept at all (so ``max_bytes=0`` computes every time). The whole cache empties when the
``stamp`` of the frozen weights changes (a checkpoint or a model loaded over them), since its features were
computed with the old ones.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

#: what one entry holds: the trunk's outputs by stride (key -1: where the trainable part goes on) and
#: the (height, width) of the image the trunk saw, before padding to a multiple of 32
Entry = tuple[dict[int, torch.Tensor], tuple[int, int]]


def fingerprint(image: np.ndarray) -> tuple[Hashable, ...]:
    """A content key of an image: its shape and a CRC-32 of its bytes (half a millisecond for 640x480),
    so the cache needs no ids from its caller and cannot serve features of another image under a reused
    id."""
    arr = np.ascontiguousarray(image)
    return (arr.shape, str(arr.dtype), zlib.crc32(memoryview(arr).cast("B")))


def _nbytes(entry: Entry) -> int:
    seen: set[int] = set()
    total = 0
    for t in entry[0].values():
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:  # the same tensor under two keys (-1 and its stride) counts once
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


class FeatureCache:
    """LRU of :data:`Entry` by key, bounded in bytes; thread-safe (a prediction may read the model while
    the training thread fills it)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[Entry, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._stamp: Any = None
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def validate(self, stamp: Any) -> None:
        """Empty the cache if the frozen weights' ``stamp`` differs from the one its entries were made
        with."""
        with self._lock:
            if stamp != self._stamp:
                if self._entries:
                    self.invalidations += 1
                self._entries.clear()
                self.nbytes = 0
                self._stamp = stamp

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def get(self, key: Hashable, compute: Callable[[], Entry]) -> Entry:
        """The entry under ``key``, computed (outside the lock) and kept when it is missing."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        entry = compute()
        size = _nbytes(entry)
        with self._lock:
            if size <= self.max_bytes and key not in self._entries:
                self._entries[key] = (entry, size)
                self.nbytes += size
                while self.nbytes > self.max_bytes:
                    _, (_, freed) = self._entries.popitem(last=False)
                    self.nbytes -= freed
                    self.evictions += 1
        return entry

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self.nbytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "invalidations": self.invalidations}
