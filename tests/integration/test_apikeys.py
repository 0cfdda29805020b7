"""The API key store on SQLite and PostgreSQL: hashed keys, roles, rotation, revocation."""

from __future__ import annotations

import pytest

from domain.errors import NotFound, RuleViolation
from services import apikeys
from services.apikeys import KeyStore, hash_key


@pytest.fixture
def keys(database_url):
    store = KeyStore.open(database_url)
    yield store
    store.close()


def test_a_key_authenticates_as_its_name_and_role_and_only_its_hash_is_stored(keys):
    key, secret = keys.create("jane", "finance")
    principal = keys.authenticate(secret)
    assert (principal.name, principal.role, principal.key_id) == ("jane", "finance", key.key_id)
    rows = keys.db.query("SELECT key_hash, hint FROM api_keys")
    assert rows == [(hash_key(secret), secret[:8] + "...")]
    assert keys.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert keys.authenticate("not-a-key") is None


def test_one_name_may_rotate_keys_but_not_hold_two_roles(keys):
    _, first = keys.create("svc", "sales")
    _, second = keys.create("svc", "sales")
    assert keys.authenticate(first).name == keys.authenticate(second).name == "svc"
    with pytest.raises(RuleViolation) as refused:
        keys.create("svc", "admin")
    assert refused.value.rule == "same_as_active_keys"
    with pytest.raises(RuleViolation):
        keys.create("svc", "emperor")
    with pytest.raises(RuleViolation):
        keys.create("bad name!", "sales")


def test_revocation_by_id_or_name_and_across_processes(keys, database_url, monkeypatch):
    one, first = keys.create("svc", "sales")
    _, second = keys.create("svc", "sales")
    assert keys.revoke(one.key_id) == 1
    assert keys.authenticate(first) is None and keys.authenticate(second) is not None
    other_process = KeyStore.open(database_url)
    try:
        assert other_process.revoke("svc") == 1
        assert keys.authenticate(second) is not None  # trusted for CACHE_SECONDS
        monkeypatch.setattr(apikeys, "CACHE_SECONDS", 0.0)
        assert keys.authenticate(second) is None
        with pytest.raises(NotFound):
            other_process.revoke("svc")
    finally:
        other_process.close()
    assert [k.revoked_at is not None for k in keys.list()] == [True, True]
