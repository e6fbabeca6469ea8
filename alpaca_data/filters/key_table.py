"""The keys exact dedup has kept, each with a slot (where its first record is): a hash table in numpy arrays,
looked up and filled a batch at a time by a row kernel (`row_kernels.claim_keys`), in O(batch) without the GIL.
It replaced a sorted array merged per batch (searchsorted, insert, argsort: a second of the main thread at 1M)."""
from __future__ import annotations

import numpy as np

from alpaca_data.store.encode import kernels


class KeyTable:
    def __init__(self, capacity: int = 1 << 10):
        self.count = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        size = 1 << max(4, (capacity * 2 - 1).bit_length())  # at most half full
        self._keys = np.zeros(size, dtype=np.uint64)
        self._slots = np.zeros(size, dtype=np.int64)
        self._used = np.zeros(size, dtype=np.bool_)

    def __len__(self) -> int:
        return self.count

    def claim(self, keys: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """For each key in order: the slot held for it (a key seen before, earlier in this call too), or -1 when
        it is new, which stores it with its slot."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self._make_room(self.count + len(keys))
        found = np.empty(len(keys), dtype=np.int64)
        self.count += kernels().claim_keys(self._keys, self._slots, self._used, keys,
                                           np.ascontiguousarray(slots, dtype=np.int64), found)
        return found

    def _make_room(self, count: int) -> None:
        if count * 2 <= len(self._keys):
            return
        keys, slots = self._keys[self._used], self._slots[self._used]
        self._allocate(count * 2)  # doubling: a key is moved O(1) times on average
        self.count = 0
        self.claim(keys, slots)
