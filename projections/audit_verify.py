"""Verification of the audit trail against the event store's raw rows.

The store's rows and the trail's rows are walked together in position order (a merge
join), and every position is checked locally, so that the first bad position is named
exactly and later, independent problems are still listed. Each stored event is chained
onto the trail's *previous* hash and must give the trail's hash at its position:

* ``altered``: the stored bytes do not chain to the trail's hash there; ``reordered``
  when they are the bytes the trail chained at another position (rows swapped);
* ``metadata_altered``: the row's topic, originator id or version columns differ from
  what its own (verified) bytes say;
* ``removed``: the trail has a position the store no longer has;
* ``inserted``: the store has a position inside the trail's range that the trail never saw;
* ``trail_altered``: a trail row differs from what the projection writes for the stored
  event (a column such as the actor edited in the view, an invoice or time index that
  would hide it from a filtered export), or its hash was edited (the next event chains
  onto the hash the stored event gives, not onto the edited one);
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
from functools import cache
from typing import Any

import msgspec

from domain.catalog import all_event_types
from projections.audit_store import StoredRows
from projections.audit_trail import COLUMNS, GENESIS, chain_step, kind_of, row_fields
from services.persistence import class_of, topic_of

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
    """The further-invoices table in (position, invoice) order, paged on both keys."""
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
        for r in rows:
            yield (r[0], bytes(r[1]), *r[2:])
        after = rows[-1][0]


class _Ids(msgspec.Struct, gc=False):
    """What a stored row's own bytes say about its metadata columns."""

    type: str
    originator_id: str
    originator_version: int


_decode_ids = msgspec.json.Decoder(_Ids).decode


@cache
def _topic_named(type_name: str) -> str | None:
    return next((topic_of(cls) for cls in all_event_types() if cls.__name__ == type_name), None)


def _topic_says(topic: str, type_name: str) -> bool:
    """The row's topic names the class its bytes are tagged with."""
    expected = _topic_named(type_name)
    if expected is not None:
        return topic == expected
    try:
        return class_of(topic).__name__ == type_name
    except Exception:  # noqa: BLE001 - not a resolvable topic
        return False


class _Mismatch(msgspec.Struct, gc=False):
    """A position whose stored bytes do not chain: kept to tell moves from edits."""

    position: int
    prev: bytes  # the trail's hash before it
    chain: bytes  # the trail's hash at it
    digest: bytes  # what the stored bytes hash to
    problem: int  # index in the walk's problems


class _Walk:
    """State of one verification pass."""

    def __init__(self, links: Iterator[tuple[Any, ...]] | None = None, spans: list[tuple[Any, ...]] | None = None) -> None:
        self.links = links
        self.link = next(links, None) if links is not None else None
        self.spans = spans or []
        self.span = 0
        self.problems: list[Problem] = []
        self.count = 0
        self.versions: dict[str, int] = {}
        self.mismatched: list[_Mismatch] = []

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

    def metadata(self, position: int, originator: str, version: int, topic: str, state: bytes) -> None:
        """The row's columns say what its bytes say (checked once the bytes are proven)."""
        try:
            ids = _decode_ids(state)
        except msgspec.DecodeError:
            self.add(position, "metadata_altered", "the stored bytes chain but do not decode as an event: its row's columns cannot be checked")
            return
        if not _topic_says(topic, ids.type) or originator != ids.originator_id.replace("-", "") or version != ids.originator_version:
            self.add(position, "metadata_altered", f"stored row says {topic} v{version} of {originator}; its bytes are"
                                                   f" {ids.type} v{ids.originator_version} of {ids.originator_id}")

    def rederive(self, t: tuple[Any, ...], topic: str, state: bytes) -> list[str] | None:
        """The trail row's columns equal what the projection writes for these stored bytes
        (public, customer, actor, invoice) and its time span covers the event's recorded
        time. Returns the further invoices the event touches (``None`` if it cannot be
        decoded)."""
        try:
            kind = kind_of(topic)
            public, customer, actor, invoice, extra, at = row_fields(kind, kind.decode(state))
        except Exception:  # noqa: BLE001 - an edited topic: the metadata check reports it
            return None
        self.covered(t[0], at)
        expected = (t[0], t[1], public, customer, actor, invoice)
        if expected != t:
            changed = [f"{c}={t[i]!r} (event says {expected[i]!r})" for i, c in enumerate(COLUMNS) if expected[i] != t[i]]
            self.add(t[0], "trail_altered", "trail row differs from the stored event: " + ", ".join(changed))
        return extra

    def covered(self, position: int, at: str) -> None:
        """The time index has a span over ``position`` whose times include the event's
        (so the ``--from-time``/``--to-time``/``--known-at`` filters can find it)."""
        spans = self.spans
        while self.span < len(spans) and spans[self.span][1] < position:
            self.span += 1
        span = spans[self.span] if self.span < len(spans) else None
        if span is None or span[0] > position:
            self.add(position, "trail_altered", "the time index has no span over this position")
        elif not span[2] <= at <= span[3]:
            self.add(position, "trail_altered", f"the time index says {span[2]}..{span[3]} here, the event was recorded at {at}")

    def invoice_links(self, position: int, expected: list[str] | None) -> None:
        """The further-invoice rows of ``position`` are exactly those its event touches
        (so the ``--invoice`` export filter can neither hide nor add events)."""
        if self.links is None:
            return
        found: list[str] = []
        while self.link is not None and self.link[0] <= position:
            if self.link[0] < position:
                self.add(self.link[0], "trail_altered", f"the invoice index has {self.link[1]!r} at a position the trail does not have")
            else:
                found.append(self.link[1])
            self.link = next(self.links, None)
        if expected is not None and found != expected:
            self.add(position, "trail_altered", f"the invoice index lists {found} besides the row's invoice, the event touches {expected}")


def _said(t: tuple[Any, ...]) -> str:
    """What the trail row says of the event it chained (all a removed event leaves)."""
    return f"customer {t[3]!r}, actor {t[4]!r}"


def verify(stored: StoredRows, db: Any, trail_position: int, anchor: Anchor | None = None, *, deep: bool = True) -> Report:
    """Check every stored event against the trail up to ``trail_position`` (the audit
    projection's position); stored events after it are checked for version order only.
    ``deep=False`` checks hashes, row metadata and versions but does not decode events
    to re-derive the trail's filter columns and invoice index: faster."""
    started = time.perf_counter()
    store_head = stored.max_position()
    spans = db.query("SELECT first_position, last_position, earliest, latest FROM audit_trail_spans ORDER BY first_position") if deep else None
    walk = _Walk(_link_rows(db, trail_position) if deep else None, spans)
    sha256 = hashlib.sha256
    prev_trail = GENESIS
    pending: _Mismatch | None = None  # the previous trail row, when its bytes did not chain
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
        position, trail_chain = t[0], t[1]
        extra: list[str] | None = None
        mismatch: _Mismatch | None = None
        if s is None or position < s[0]:
            walk.add(position, "removed", f"the store has no event at this position; the trail chained one here ({_said(t)})")
        else:
            _, originator, version, topic, state = s
            digest = sha256(state).digest()
            if sha256(prev_trail + digest + position.to_bytes(8, "big")).digest() == trail_chain:
                walk.metadata(position, originator, version, topic, state)
                if deep:
                    extra = walk.rederive(t, topic, state)
            elif pending is not None and chain_step(chain_step(pending.prev, pending.digest, pending.position), digest, position) == trail_chain:
                _edited_hash(walk, pending)  # this event chains onto what the one before gives: that row's hash was edited
                walk.metadata(position, originator, version, topic, state)
                if deep:
                    extra = walk.rederive(t, topic, state)
            else:
                mismatch = _Mismatch(position, prev_trail, trail_chain, digest, len(walk.problems))
                walk.add(position, "altered", f"the stored bytes (sha256 {digest.hex()}) do not give the trail's chain hash here")
                if len(walk.mismatched) < MAX_PROBLEMS:
                    walk.mismatched.append(mismatch)
            walk.version(position, originator, version)
            s = next(store_iter, None)
        walk.invoice_links(position, extra)
        pending = mismatch
        prev_trail = trail_chain
        head = Anchor(trail_chain.hex(), position)
        verified += 1
        if anchor is not None and position == anchor.position and head.chain_hash != anchor.chain_hash:
            walk.add(position, "anchor_mismatch", f"chain hash here is {head.chain_hash}, the anchor recorded {anchor.chain_hash}")
        t = next(trail_iter, None)
    walk.invoice_links(trail_position + 1, None)  # index rows after the last trail row
    _check_anchor(walk, db, anchor, trail_position)
    _name_moves(walk)
    walk.problems.sort(key=lambda p: p.position)
    elapsed = time.perf_counter() - started
    return Report(
        intact=walk.count == 0, store_head=store_head, trail_position=trail_position, verified_events=verified,
        unverified_events=unverified, head=head, first_bad_position=walk.problems[0].position if walk.problems else None,
        problems=walk.problems, problem_count=walk.count, elapsed_s=round(elapsed, 3),
        events_per_s=round((verified + unverified) / elapsed) if elapsed > 0 else 0.0,
    )


def _edited_hash(walk: _Walk, m: _Mismatch) -> None:
    """The row before chained badly only because the trail's hash there was edited."""
    m.digest = b""  # not a candidate for a move any more
    if m.problem < len(walk.problems) and walk.problems[m.problem].position == m.position:
        walk.problems[m.problem] = Problem(position=m.position, kind="trail_altered",
                                           detail="the trail's chain hash here was edited: the stored event and the next one chain to another value")


def _check_anchor(walk: _Walk, db: Any, anchor: Anchor | None, trail_position: int) -> None:
    if anchor is None:
        return
    if anchor.position > trail_position:
        walk.add(anchor.position, "anchor_mismatch", f"the anchor is beyond the audit trail (at {trail_position}); catch it up first")
    elif not db.query("SELECT 1 FROM audit_trail WHERE position = ?", (anchor.position,)):
        walk.add(anchor.position, "anchor_mismatch", "the anchored position is no longer in the audit trail")


def _name_moves(walk: _Walk) -> None:
    """Bytes that do not chain where they are but chain exactly at another bad position
    were moved there (rows swapped), not edited."""
    for m in walk.mismatched:
        if not m.digest or m.problem >= len(walk.problems):
            continue
        source = next((o.position for o in walk.mismatched
                       if o is not m and hashlib.sha256(o.prev + m.digest + o.position.to_bytes(8, "big")).digest() == o.chain), None)
        if source is not None:
            problem = walk.problems[m.problem]
            walk.problems[m.problem] = Problem(position=m.position, kind="reordered",
                                               detail=f"the bytes stored here are the event the trail chained at position {source}; {problem.detail}")
