"""Fast, exact ``uuid.uuid5``: a tick names tens of thousands of facts, and the stdlib
builds each UUID through a validating constructor that costs more than the hash. This
builds the same value (checked against ``uuid.uuid5`` in the unit tests) directly."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID, SafeUUID

_new = object.__new__
_set = object.__setattr__
_UNKNOWN = SafeUUID.unknown
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_SET = (0x8000 << 48) | (5 << 76)


def _uuid5_int(namespace: bytes, name: str) -> int:
    digest = sha1(namespace + name.encode()).digest()
    return (int.from_bytes(digest[:16], "big") & _CLEAR) | _SET


def _uuid(value: int) -> UUID:
    u = _new(UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u


def uuid5(namespace: UUID, name: str) -> UUID:
    return _uuid(_uuid5_int(namespace.bytes, name))


def fact_ids(namespace: bytes, name: str) -> tuple[UUID, UUID]:
    """(aggregate id of a one-event fact, its event id = uuid5(aggregate id, "1")), inlined:
    this runs once per fact of a tick."""
    oid = (int.from_bytes(sha1(namespace + name.encode()).digest()[:16], "big") & _CLEAR) | _SET
    eid = (int.from_bytes(sha1(oid.to_bytes(16, "big") + b"1").digest()[:16], "big") & _CLEAR) | _SET
    first, second = _new(UUID), _new(UUID)
    _set(first, "int", oid)
    _set(first, "is_safe", _UNKNOWN)
    _set(second, "int", eid)
    _set(second, "is_safe", _UNKNOWN)
    return first, second
