"""API keys: who may call the HTTP API, under which role, as which actor.

Keys live in the ``api_keys`` table of the view database (the same database as the event
store, see :mod:`projections.db`), not in the event stream: a key is access configuration,
not a ledger fact, it must be revocable at once, and its hash has no business in the
stream that is relayed to other systems. The key's *name* is the actor recorded on every
event the key causes.

Only a SHA-256 hash of each key is stored. That is enough here, unlike for passwords,
because the key is 256 bits from :func:`secrets.token_urlsafe`: nobody can brute-force a
preimage, so a slow salted hash (bcrypt, argon2) would add ~100 ms to every request and
buy nothing. A fast unsalted hash also lets a request find its key by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import msgspec

from domain.errors import NotFound, RuleViolation
from projections.db import ViewDatabase

ROLES: tuple[str, ...] = ("sales", "credit_manager", "collector", "finance", "auditor", "admin")
PREFIX = "ark_"
#: How long a process trusts a key it has checked: revocation through this process is
#: immediate, through another one (the CLI, another worker) takes at most this long.
CACHE_SECONDS = 2.0

DDL = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    " key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,"
    " hint TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
    "CREATE INDEX IF NOT EXISTS api_keys_name ON api_keys (name)",
)


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as listed (never the secret itself)."""

    key_id: str
    name: str
    role: str
    hint: str
    created_at: str
    revoked_at: str | None = None


class Principal(msgspec.Struct, frozen=True):
    """The caller a valid key stands for."""

    name: str
    role: str
    key_id: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise RuleViolation("name", "pattern", "1-64 letters, digits and . _ - @")
    return name


class KeyStore:
    """The ``api_keys`` table. Thread-safe: the API checks keys from its worker threads."""

    def __init__(self, db: ViewDatabase) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        with self._lock, db.transaction() as tx:
            for ddl in DDL:
                tx.execute(ddl)

    @classmethod
    def open(cls, database_url: str) -> KeyStore:
        parsed = urlparse(database_url)
        if parsed.scheme == "sqlite":  # the keys may be created before anything else
            Path(unquote(parsed.path)).parent.mkdir(parents=True, exist_ok=True)
        return cls(ViewDatabase(database_url))

    def close(self) -> None:
        self.db.close()

    def create(self, name: str, role: str, *, now: datetime | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns it and the secret, which is shown once and never stored.
        One name may hold several active keys (for rotation), all with the same role."""
        name = _check_name(name)
        if role not in ROLES:
            raise RuleViolation("role", "one_of", f"must be one of {', '.join(ROLES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(key_id=uuid.uuid4().hex[:12], name=name, role=role, hint=secret[:8] + "...", created_at=(now or datetime.now(UTC)).isoformat())
        with self._lock, self.db.transaction() as tx:
            roles = {r for (r,) in tx.execute("SELECT role FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)).fetchall()}
            if roles - {role}:
                raise RuleViolation("role", "same_as_active_keys", f"{name!r} already has active keys with role {sorted(roles)[0]}; revoke them first")
            tx.execute(
                "INSERT INTO api_keys (key_id, name, role, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key.key_id, key.name, key.role, hash_key(secret), key.hint, key.created_at),
            )
        return key, secret

    def revoke(self, name_or_id: str, *, now: datetime | None = None) -> int:
        """Revoke one key by id, or every active key of a name; returns how many."""
        stamp = (now or datetime.now(UTC)).isoformat()
        with self._lock, self.db.transaction() as tx:
            tx.execute("UPDATE api_keys SET revoked_at = ? WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL", (stamp, name_or_id, name_or_id))
            count = tx.rowcount
            self._cache.clear()
        if count == 0:
            raise NotFound("name", name_or_id, "active API key")
        return count

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self.db.query("SELECT key_id, name, role, hint, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id")
        return [ApiKey(key_id=r[0], name=r[1], role=r[2], hint=r[3], created_at=r[4], revoked_at=r[5]) for r in rows]

    def active_count(self) -> int:
        with self._lock:
            return int(self.db.query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")[0][0])

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of an active key, or None (checked at most every CACHE_SECONDS)."""
        if not secret.startswith(PREFIX) or len(secret) > 100:
            return None
        digest = hash_key(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and now - cached[0] < CACHE_SECONDS:
                return cached[1]
            rows = self.db.query("SELECT name, role, key_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (digest,))
            principal = Principal(*rows[0]) if rows else None
            if len(self._cache) > 10_000:  # bounded: unknown keys are cached too
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal
