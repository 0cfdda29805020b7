"""Verification of the audit trail against the event store's raw rows.

The store's rows and the trail's rows are walked together in position order (a merge
join), and every position is checked locally, so that the first bad position is named
exactly and later, independent problems are still listed:

* ``altered``: the stored bytes no longer hash to the trail's ``event_sha256``;
  ``reordered`` when those bytes are found at another trail position (rows swapped);
* ``metadata_altered``: the row's topic, originator id or version columns differ from
  what the trail recorded from the event;
* ``removed``: the trail has a position the store no longer has;
* ``inserted``: the store has a position inside the trail's range that the trail never saw;
* ``trail_altered``: a trail row differs from what the projection writes for the stored
  event (a column such as the actor edited in the view) or does not chain to the row before;
* ``version_gap`` / ``version_order``: an aggregate's versions in stream order are not
  1, 2, 3... (an event removed or moved, even if the trail was rewritten too);
* ``anchor_mismatch``: the chain hash at an externally recorded position differs
  (``--expect-head HASH@POSITION``: catches a consistent rewrite of store *and* trail).

If every position passes, the chain recomputed from the store's bytes equals the
trail's chain row by row (by induction from GENESIS), so the head is proven too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from projections.audit_store import StoredRows
from projections.audit_trail import COLUMNS, GENESIS, chain_step, trail_row
from services.persistence import decode_event

MAX_PROBLEMS = 100


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    kind: str
    detail: str


class Anchor(msgspec.Struct, frozen=True):
    chain_hash: str
    position: int

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``HASH@POSITION`` as printed by ``arledger audit anchor``."""
        digest, sep, position = text.partition("@")
        if not sep or len(digest) != 64 or not position.isdigit():
            raise ValueError(f"expected HASH@POSITION (64 hex digits @ a stream position), got {text!r}")
        return cls(digest.lower(), int(position))

    def __str__(self) -> str:
        return f"{self.chain_hash}@{self.position}"


class Report(msgspec.Struct, kw_only=True):
    intact: bool
    store_head: int
    trail_position: int
    verified_events: int
    unverified_events: int
    head: Anchor | None
    first_bad_position: int | None
    problems: list[Problem]
    problem_count: int
    elapsed_s: float
    events_per_s: float


_TRAIL_SQL = f"SELECT {', '.join(COLUMNS)} FROM audit_trail WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"


_LINKS_SQL = (
    "SELECT position, invoice_number FROM audit_trail_invoices WHERE position <= ?"
    " AND (position > ? OR (position = ? AND invoice_number > ?)) ORDER BY position, invoice_number LIMIT ?"
)


def _link_rows(db: Any, upto: int, batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
    """The invoice index in (position, invoice) order, paged on both keys."""
    after: tuple[int, str] = (0, "")
    while True:
        rows = db.query(_LINKS_SQL, (upto, after[0], after[0], after[1], batch))
        if not rows:
            return
        yield from rows
        after = rows[-1]


def _trail_rows(db: Any, upto: int, batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
    after = 0
    while True:
        rows = db.query(_TRAIL_SQL, (after, upto, batch))
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


class _Walk:
    """State of one verification pass."""

    def __init__(self, links: Iterator[tuple[Any, ...]] | None = None) -> None:
        self.links = links
        self.link = next(links, None) if links is not None else None
        self.problems: list[Problem] = []
        self.count = 0
        self.versions: dict[str, int] = {}
        self.mismatched: dict[str, int] = {}  # stored sha -> position, to spot swapped rows

    def add(self, position: int, kind: str, detail: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(position=position, kind=kind, detail=detail))

    def version(self, position: int, originator: str, version: int) -> None:
        last = self.versions.get(originator, 0)
        if version != last + 1:
            kind = "version_gap" if version > last + 1 else "version_order"
            self.add(position, kind, f"aggregate {originator} has version {version} after version {last} in stream order")
        self.versions[originator] = version

    def chained(self, prev: bytes, t: tuple[Any, ...]) -> None:
        """The trail row links to the one before it (checked when the store can't help)."""
        if chain_step(prev, bytes.fromhex(t[15]), t[0]).hex() != t[16]:
            self.add(t[0], "trail_altered", f"trail row of {_name(t)} does not chain to the row before it")

    def rederive(self, prev: bytes, t: tuple[Any, ...], state: bytes) -> set[str] | None:
        """The trail row equals what the projection writes for these stored bytes: every
        column (actor, customer, dates, ids, hashes) and the link to the row before.
        Returns the invoices the event touches (``None`` if it cannot be decoded)."""
        try:
            event = decode_event(t[3], state)
        except Exception:  # noqa: BLE001 - a topic edited in the trail; metadata check reports it
            return None
        expected, linked, _ = trail_row(t[0], t[3], state, event, prev)
        if expected != t:
            changed = [f"{c}={t[i]!r} (event says {expected[i]!r})" for i, c in enumerate(COLUMNS) if expected[i] != t[i]]
            self.add(t[0], "trail_altered", "trail row differs from the stored event: " + ", ".join(changed))
        return linked

    def invoice_links(self, position: int, expected: set[str] | None) -> None:
        """The invoice index rows of ``position`` are exactly the invoices its event touches
        (so the ``--invoice`` export filter can neither hide nor add events)."""
        if self.links is None:
            return
        found: set[str] = set()
        while self.link is not None and self.link[0] <= position:
            if self.link[0] < position:
                self.add(self.link[0], "trail_altered", f"the invoice index has {self.link[1]!r} at a position the trail does not have")
            else:
                found.add(self.link[1])
            self.link = next(self.links, None)
        if expected is not None and found != expected:
            self.add(position, "trail_altered", f"the invoice index lists {sorted(found)}, the event touches {sorted(expected)}")


def _name(t: tuple[Any, ...]) -> str:
    return f"{t[2]} {t[1]} (v{t[6]} of {t[5]})"


def verify(stored: StoredRows, db: Any, trail_position: int, anchor: Anchor | None = None, *, deep: bool = True) -> Report:
    """Check every stored event against the trail up to ``trail_position`` (the audit
    projection's position); stored events after it are checked for version order only.
    ``deep=False`` checks hashes, links, row metadata and versions but does not decode
    events to re-derive the descriptive columns (actor, customer, dates...): faster."""
    started = time.perf_counter()
    store_head = stored.max_position()
    walk = _Walk(_link_rows(db, trail_position) if deep else None)
    sha256 = hashlib.sha256
    prev_trail = GENESIS
    head: Anchor | None = None
    verified = unverified = 0
    store_iter = stored.scan(0, store_head)
    trail_iter = _trail_rows(db, trail_position)
    s = next(store_iter, None)
    t = next(trail_iter, None)
    while s is not None or t is not None:
        if t is None or (s is not None and s[0] < t[0]):
            position, originator, version, topic, _ = s  # type: ignore[misc]
            walk.version(position, originator, version)
            if position <= trail_position:
                walk.add(position, "inserted", f"stored {topic} v{version} of {originator} is not in the audit trail")
            else:
                unverified += 1
            s = next(store_iter, None)
            continue
        position, trail_sha, trail_chain = t[0], t[15], t[16]
        linked: set[str] | None = None
        if s is None or position < s[0]:
            walk.chained(prev_trail, t)
            walk.add(position, "removed", f"the store has no event at this position; the trail recorded {_name(t)}")
        else:
            _, originator, version, topic, state = s
            if topic != t[3] or originator != t[5].replace("-", "") or version != t[6]:
                walk.add(position, "metadata_altered", f"stored row says {topic} v{version} of {originator}; the trail recorded {t[3]} v{t[6]} of {t[5]}")
            walk.version(position, originator, version)
            digest = sha256(state).hexdigest()
            if digest != trail_sha:
                walk.chained(prev_trail, t)
                if len(walk.mismatched) < MAX_PROBLEMS:
                    walk.mismatched.setdefault(digest, position)
                walk.add(position, "altered", f"stored bytes hash {digest}, the trail recorded {trail_sha} for {_name(t)}")
            elif deep:
                linked = walk.rederive(prev_trail, t, state)
            else:
                walk.chained(prev_trail, t)
            s = next(store_iter, None)
        walk.invoice_links(position, linked)
        prev_trail = bytes.fromhex(trail_chain)
        head = Anchor(trail_chain, position)
        verified += 1
        if anchor is not None and position == anchor.position and trail_chain != anchor.chain_hash:
            walk.add(position, "anchor_mismatch", f"chain hash here is {trail_chain}, the anchor recorded {anchor.chain_hash}")
        t = next(trail_iter, None)
    walk.invoice_links(trail_position + 1, None)  # index rows after the last trail row
    _check_anchor(walk, db, anchor, trail_position)
    _name_swaps(walk, db)
    walk.problems.sort(key=lambda p: p.position)
    elapsed = time.perf_counter() - started
    return Report(
        intact=walk.count == 0, store_head=store_head, trail_position=trail_position, verified_events=verified,
        unverified_events=unverified, head=head, first_bad_position=walk.problems[0].position if walk.problems else None,
        problems=walk.problems, problem_count=walk.count, elapsed_s=round(elapsed, 3),
        events_per_s=round((verified + unverified) / elapsed) if elapsed > 0 else 0.0,
    )


def _check_anchor(walk: _Walk, db: Any, anchor: Anchor | None, trail_position: int) -> None:
    if anchor is None:
        return
    if anchor.position > trail_position:
        walk.add(anchor.position, "anchor_mismatch", f"the anchor is beyond the audit trail (at {trail_position}); catch it up first")
    elif not db.query("SELECT 1 FROM audit_trail WHERE position = ?", (anchor.position,)):
        walk.add(anchor.position, "anchor_mismatch", "the anchored position is no longer in the audit trail")


def _name_swaps(walk: _Walk, db: Any) -> None:
    """An altered row whose bytes belong to another trail position was moved, not edited."""
    if not walk.mismatched:
        return
    digests = list(walk.mismatched)
    rows = db.query(f"SELECT position, event_sha256 FROM audit_trail WHERE event_sha256 IN ({', '.join('?' * len(digests))})", digests)
    moved = {sha: int(position) for position, sha in rows}
    for i, problem in enumerate(walk.problems):
        if problem.kind != "altered":
            continue
        source = next((moved[sha] for sha, pos in walk.mismatched.items() if pos == problem.position and sha in moved), None)
        if source is not None and source != problem.position:
            walk.problems[i] = Problem(position=problem.position, kind="reordered", detail=f"the bytes stored here are the event the trail recorded at position {source}; {problem.detail}")
