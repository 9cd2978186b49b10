"""Constant arrays of the generated C, stored once each: identical contents (the unrolled GRU's
repeated weights, equal multiplier tables) share one array."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

CTYPES = {"int8_t": np.int8, "int32_t": np.int32, "uint8_t": np.uint8}


@dataclasses.dataclass
class ConstArray:
    name: str
    ctype: str
    values: np.ndarray       # 1-D
    comment: str

    @property
    def nbytes(self) -> int:
        return int(self.values.size * np.dtype(CTYPES[self.ctype]).itemsize)


class ConstPool:
    def __init__(self, prefix: str = "rfe_c"):
        self.prefix = prefix
        self.arrays: list[ConstArray] = []
        self._by_key: dict[tuple, ConstArray] = {}
        self.requests = 0            # how many arrays were asked for (before sharing)
        self.requested_bytes = 0

    def add(self, values, ctype: str, comment: str = "") -> str:
        v = np.ascontiguousarray(np.asarray(values).reshape(-1).astype(CTYPES[ctype]))
        key = (ctype, v.size, hashlib.sha256(v.tobytes()).hexdigest())
        self.requests += 1
        self.requested_bytes += v.nbytes
        hit = self._by_key.get(key)
        if hit is not None:
            return hit.name
        arr = ConstArray(f"{self.prefix}{len(self.arrays)}", ctype, v, comment)
        self.arrays.append(arr)
        self._by_key[key] = arr
        return arr.name

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)
