"""Fast, exact ``uuid.uuid5``: a tick names tens of thousands of facts, and the stdlib
builds each UUID through a validating constructor that costs more than the hash. This
builds the same value (checked against ``uuid.uuid5`` in the unit tests) directly."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID, SafeUUID

_new = object.__new__
_set = object.__setattr__
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_SET = (0x8000 << 48) | (5 << 76)


def _uuid_from_int(value: int) -> UUID:
    u = _new(UUID)
    _set(u, "int", value)
    _set(u, "is_safe", SafeUUID.unknown)
    return u


def uuid5(namespace: UUID, name: str) -> UUID:
    digest = sha1(namespace.bytes + name.encode()).digest()
    return _uuid_from_int((int.from_bytes(digest[:16], "big") & _CLEAR) | _SET)
