"""The clock's projection runner: reads only the topics its views want.

The clock catches up ``ar_items`` and ``collections_holds`` before deciding. Its own
facts (tens of thousands a day) are not among their topics; reading the stream with a
topic filter lets the database skip them, so a repeated tick stays cheap. When a read
returns less than a batch, every projection has reached the head it saw before reading.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.catalog import all_event_types
from projections.runner import Envelope, Projection, ProjectionRunner
from services.persistence import decode_event, topic_of


def wanted_topics(projections: Iterable[Projection]) -> list[str]:
    topics: set[str] = set()
    for projection in projections:
        for cls in all_event_types():
            if projection.event_types is None or issubclass(cls, projection.event_types):
                topics.add(topic_of(cls))
    return sorted(topics)


class TopicRunner(ProjectionRunner):
    def run_once(self, names: Iterable[str] | None = None) -> int:
        selected = [self.projections[n] for n in (names or self.projections)]
        positions = {p.name: self.position(p.name) for p in selected}
        start = min(positions.values(), default=0)
        head = self.store.max_position()
        if start >= head:
            return 0
        found = self.store.recorder.select_notifications(
            start=start, limit=self.batch_size, stop=head, topics=wanted_topics(selected), inclusive_of_start=False,
        )
        last = found[-1].id if len(found) >= self.batch_size else head
        applied = 0
        for projection in selected:
            after = positions[projection.name]
            if last <= after:
                continue
            batch = [Envelope(n.id, decode_event(n.topic, n.state), n.topic, n.state)
                     for n in found if n.id > after and self._wants(projection, n.topic)]
            self._commit(projection, after, last, batch)
            applied += len(batch)
        return applied
