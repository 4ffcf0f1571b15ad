"""The smithy-rpc-v2-cbor protocol's body: one CBOR item (RFC 8949) decoded."""

from __future__ import annotations

import struct
from typing import Any


class CborError(ValueError):
    """A body that is not CBOR this decoder reads."""

    pass


def cbor_loads(data: bytes) -> Any:
    """Decode one CBOR item (RFC 8949): what the smithy-rpc-v2-cbor protocol sends."""
    value, _ = _CborReader(data).read(0)
    return value


#: Simple values (major type 7) that carry no bytes after the initial byte.
_SIMPLE_VALUES: dict[int, Any] = {20: False, 21: True, 22: None, 23: None}
#: Floats of major type 7 by additional information: (size in bytes, struct format or None for half).
_FLOATS: dict[int, tuple[int, str | None]] = {25: (2, None), 26: (4, ">f"), 27: (8, ">d")}


class _CborReader:
    """Reads CBOR items from ``data``; each method takes a position and returns (item, next position)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, pos: int) -> tuple[Any, int]:
        data = self.data
        if pos >= len(data):
            raise CborError("truncated CBOR")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if major == 7:
            return self._simple(info, pos)
        if info == 31 and major in (2, 3, 4, 5):
            return self._indefinite(major, pos)
        argument, pos = self._argument(info, pos)
        return self._definite(major, argument, pos)

    def _simple(self, info: int, pos: int) -> tuple[Any, int]:
        if info in _SIMPLE_VALUES:
            return _SIMPLE_VALUES[info], pos
        if info in _FLOATS:
            size, layout = _FLOATS[info]
            raw = self.data[pos : pos + size]
            return (_half(raw) if layout is None else struct.unpack(layout, raw)[0]), pos + size
        raise CborError(f"unsupported CBOR simple value {info}")

    def _argument(self, info: int, pos: int) -> tuple[int, int]:
        if info < 24:
            return info, pos
        if info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            return int.from_bytes(self.data[pos : pos + size], "big"), pos + size
        raise CborError(f"unsupported CBOR length {info}")

    def _definite(self, major: int, argument: int, pos: int) -> tuple[Any, int]:
        data = self.data
        if major == 0:
            return argument, pos
        if major == 1:
            return -1 - argument, pos
        if major == 2:
            return data[pos : pos + argument], pos + argument
        if major == 3:
            return data[pos : pos + argument].decode("utf-8", "replace"), pos + argument
        if major == 4:
            items = []
            for _ in range(argument):
                item, pos = self.read(pos)
                items.append(item)
            return items, pos
        if major == 5:
            mapping = {}
            for _ in range(argument):
                key, pos = self.read(pos)
                mapping[key], pos = self.read(pos)
            return mapping, pos
        # major 6: a tag (1 = epoch timestamp); the tagged value stands for itself here.
        return self.read(pos)

    def _indefinite(self, major: int, pos: int) -> tuple[Any, int]:
        items: list[Any] = []
        while self.data[pos] != 0xFF:
            item, pos = self.read(pos)
            items.append(item)
        pos += 1
        if major == 2:
            return b"".join(items), pos
        if major == 3:
            return "".join(items), pos
        if major == 4:
            return items, pos
        return dict(zip(items[0::2], items[1::2], strict=False)), pos


def _half(raw: bytes) -> float:
    bits = int.from_bytes(raw, "big")
    sign = -1.0 if bits & 0x8000 else 1.0
    exponent = (bits >> 10) & 0x1F
    fraction = bits & 0x3FF
    if exponent == 0:
        return sign * fraction * 2.0**-24
    if exponent == 31:
        return sign * float("inf") if fraction == 0 else float("nan")
    return sign * (1 + fraction / 1024) * 2.0 ** (exponent - 15)
