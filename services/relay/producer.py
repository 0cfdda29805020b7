"""The relay's producer: whole batches of records, per partition, acknowledged by all ISR.

kafka-python's ``KafkaProducer`` is built for one record at a time: every ``send`` takes a
lock, creates futures, estimates sizes and appends to an accumulator drained by a
background thread; at the relay's rates that machinery, not the network or the broker,
was 60-75 % of the relay's CPU time. The relay does not need it: it already has a whole
batch of events with their partitions, and it needs exactly one answer, "did the broker
acknowledge all of it". So this module keeps kafka-python for what it does well - the
connections, the broker version negotiation, the cluster metadata and the protocol
messages (``KafkaConnectionManager``, ``ProduceRequest``, ``InitProducerIdRequest``) - and
replaces the per-record path with :mod:`services.relay.records`.

:meth:`BatchProducer.publish` sends one record batch per partition (acks=-1, i.e. every
in-sync replica) in as few ProduceRequests as there are leaders, then handles each
partition's answer:

* success, or ``DUPLICATE_SEQUENCE_NUMBER`` (a retry of a batch the broker already has);
* retriable errors (not leader, unknown partition, timeouts, lost connections): refresh
  the metadata, back off (100 ms doubling to 1 s) and re-send the *same* bytes to the
  partition's current leader, until the delivery timeout;
* anything else (and the delivery timeout): :class:`PublishFailed`; the relay then drops
  this producer and starts over from its stored position with a new one.

Idempotence: the producer asks for a producer id (``InitProducerId``) and numbers each
partition's records (``baseSequence``), as the Java client's idempotent producer does, so
the broker discards a retried batch it already appended instead of storing it twice. A
partition's next batch is sent only after the previous one was acknowledged, so order per
partition needs no more than that. Sequences live only as long as this producer: after a
failure the relay uses a new producer (new id, sequences from 0) and re-sends from its
position, which may duplicate messages - at-least-once, de-duplicated by subscribers on the
CloudEvents ``id``. Brokers without ``InitProducerId`` get the same batches without a
producer id (no broker-side de-duplication of retries).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import structlog
from kafka import errors as Errors
from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.structs import TopicPartition

from services.relay.records import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, encode_records, frame

log = structlog.get_logger("arledger.relay")

#: Upper bound of one record batch: the broker's default ``message.max.bytes`` is 1 MiB.
MAX_BATCH_BYTES = 1_000_000
#: Upper bound of one ProduceRequest (several partitions' batches).
MAX_REQUEST_BYTES = 8 << 20
#: Requests to one broker at once (kafka-python pauses a connection at 5 in flight).
MAX_IN_FLIGHT = 4
ACKS_ALL = -1
SEQUENCE_MASK = 0x7FFFFFFF
#: Partition errors that mean the message is already there (an idempotent retry).
ALREADY_APPENDED = {Errors.DuplicateSequenceNumberError.errno}

Pairs = Sequence[tuple[bytes, bytes]]


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message of a batch; nothing was committed."""


class _Chunk:
    """One record batch of one partition: encoded once, framed once per producer id."""

    __slots__ = ("body", "count", "framed")

    def __init__(self, body: bytes, count: int) -> None:
        self.body, self.count, self.framed = body, count, b""


class InFlight:
    """A :meth:`BatchProducer.send` not yet acknowledged: what is left per partition,
    the requests on the wire, and the delivery deadline."""

    __slots__ = ("queues", "sent", "deadline")

    def __init__(self, queues: dict[tuple[str, int], list[_Chunk]], sent: list, deadline: float) -> None:
        self.queues, self.sent, self.deadline = queues, sent, deadline


class BatchProducer:
    def __init__(self, bootstrap_servers: list[str], client_id: str, *, timeout_ms: int = 15000, headers: bytes, idempotent: bool = True) -> None:
        self.timeout_ms = timeout_ms
        self.delivery_timeout = (2 * timeout_ms + 50) / 1000
        self.headers = headers
        config = {
            "bootstrap_servers": bootstrap_servers, "client_id": client_id, "request_timeout_ms": timeout_ms,
            "reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 1000, "socket_connection_setup_timeout_ms": min(timeout_ms, 10000),
        }
        self._net = NetworkSelector(**config)
        self._manager = KafkaConnectionManager(self._net, **config)
        self._cluster = self._manager.cluster
        # a broker may create a missing topic on a metadata request, with its own defaults:
        # the relay creates its topics itself, with the configured partitions
        self._cluster.config["allow_auto_create_topics"] = False
        self._want_idempotence = idempotent
        self.producer_id, self.producer_epoch = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        self._sequences: dict[tuple[str, int], int] = {}
        self._closed = False

    # ---- connection --------------------------------------------------------------------

    def connect(self, topics: Iterable[str]) -> None:
        """Bootstrap, load the topics' metadata and get a producer id; raises on timeout."""
        self._manager.bootstrap(self.timeout_ms)
        self._wait(self._cluster.set_topics(list(topics)), "metadata")
        if self._want_idempotence:
            self._init_producer_id()

    def _init_producer_id(self) -> None:
        request = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000, producer_id=NO_PRODUCER_ID, producer_epoch=NO_PRODUCER_EPOCH, max_version=4)
        try:
            response = self._wait(self._manager.send(request), "producer id")
        except (Errors.IncompatibleBrokerVersion, Errors.UnsupportedVersionError) as exc:
            log.warning("kafka_idempotence_unsupported", error=str(exc))
            return
        if response.error_code:
            raise PublishFailed(f"InitProducerId refused: {Errors.for_code(response.error_code).__name__}")
        self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch

    def _wait(self, future, what: str):
        self._net.poll(timeout_ms=self.timeout_ms, future=future)
        if not future.is_done:
            raise PublishFailed(f"no answer from the broker ({what}) within {self.timeout_ms} ms")
        if future.failed():
            exc = future.exception
            if isinstance(exc, Errors.UnknownTopicOrPartitionError):
                raise PublishFailed(f"{what}: a topic does not exist ({exc})") from exc
            raise exc
        return future.value

    def partition_count(self, topic: str) -> int:
        partitions = self._cluster.partitions_for_topic(topic)
        if not partitions:
            self._wait(self._cluster.add_topic(topic), f"metadata of {topic!r}")
            partitions = self._cluster.partitions_for_topic(topic)
            if not partitions:
                raise PublishFailed(f"topic {topic!r} does not exist")
        return len(partitions)

    def idle(self, seconds: float) -> None:
        """Wait up to ``seconds`` while there is nothing to send, tending the connections
        meanwhile: a broker closing an idle connection, kafka-python's own idle check and
        the periodic metadata refresh are handled now, so the next batch (say the
        overdue events of tomorrow's clock tick) goes out on a live connection instead of
        failing on a dead one and waiting for a retry."""
        self._net.poll(timeout_ms=seconds * 1000)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._manager.close()
            self._net.close()

    # ---- publishing --------------------------------------------------------------------

    def publish(self, batches: dict[tuple[str, int], Pairs]) -> None:
        """Send every partition's records (``(length-prefixed key, value)`` pairs, in
        order) and return once the broker acknowledged all of them; raises
        :class:`PublishFailed` otherwise."""
        self.wait(self.send(batches))

    def send(self, batches: dict[tuple[str, int], Pairs]) -> InFlight:
        """Encode and send the first batch of every partition; :meth:`wait` finishes.
        The caller may do other work in between (the relay reads and encodes its next
        batch), but must not send anything else to these partitions before waiting."""
        queues = {tp: self._chunks(pairs) for tp, pairs in batches.items() if pairs}
        return InFlight(queues, self._send_round(queues), time.monotonic() + self.delivery_timeout)

    def wait(self, flight: InFlight) -> None:
        """Until every record of ``flight`` is acknowledged: answers, retries, backoff."""
        queues, sent, deadline = flight.queues, flight.sent, flight.deadline
        backoff = 0.1
        while queues:
            retry = self._await(sent, queues, deadline)
            if not queues:
                return
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(queues))
                raise PublishFailed(f"broker did not acknowledge the batch within {self.delivery_timeout:.1f} s: {retry or 'no leader known'} (waiting: {waiting})")
            if retry or not sent:
                # something failed or had no leader: refresh the metadata while backing off
                self._cluster.request_update()
                wake = min(time.monotonic() + backoff, deadline)
                while (left := wake - time.monotonic()) > 0:
                    self._net.poll(timeout_ms=left * 1000)
                backoff = min(backoff * 2, 1.0)
            sent = self._send_round(queues)

    def _chunks(self, pairs: Pairs) -> list[_Chunk]:
        """The partition's records in batches of at most MAX_BATCH_BYTES, last first
        (the queue is popped from the end)."""
        chunks = [_Chunk(body, count) for body, count in encode_records(pairs, self.headers, MAX_BATCH_BYTES)]
        chunks.reverse()
        return chunks

    def _framed(self, tp: tuple[str, int], chunk: _Chunk) -> bytes:
        if not chunk.framed:
            sequence = self._sequences.get(tp, 0) if self.producer_id != NO_PRODUCER_ID else NO_SEQUENCE
            chunk.framed = frame(chunk.body, chunk.count, int(time.time() * 1000), self.producer_id, self.producer_epoch, sequence)
        return chunk.framed

    def _send_round(self, queues: dict[tuple[str, int], list[_Chunk]]) -> list[tuple[object, list[tuple[str, int]]]]:
        """Send each partition's next batch to its leader; returns (future, partitions)."""
        by_leader: dict[int, list[tuple[str, int]]] = {}
        for tp in queues:
            leader = self._cluster.leader_for_partition(TopicPartition(*tp))
            if leader is None or leader == -1:
                continue  # unknown now; the metadata refresh after this round may find it
            by_leader.setdefault(leader, []).append(tp)
        sent = []
        for leader, tps in by_leader.items():
            requests: list[list[tuple[str, int]]] = [[]]
            size = 0
            for tp in tps:
                n = len(self._framed(tp, queues[tp][-1]))
                if requests[-1] and size + n > MAX_REQUEST_BYTES:
                    if len(requests) == MAX_IN_FLIGHT:
                        break  # the rest goes in the next round
                    requests.append([])
                    size = 0
                requests[-1].append(tp)
                size += n
            for group in requests:
                sent.append((self._manager.send(self._request(group, queues), node_id=leader), group))
        return sent

    def _request(self, tps: list[tuple[str, int]], queues: dict[tuple[str, int], list[_Chunk]]) -> ProduceRequest:
        Topic = ProduceRequest.TopicProduceData
        Partition = Topic.PartitionProduceData
        topics: dict[str, list] = {}
        for tp in tps:
            topics.setdefault(tp[0], []).append(Partition(index=tp[1], records=queues[tp][-1].framed))
        return ProduceRequest(
            transactional_id=None, acks=ACKS_ALL, timeout_ms=self.timeout_ms,
            topic_data=[Topic(name=name, partition_data=parts) for name, parts in topics.items()], min_version=3, max_version=9,
        )

    def _await(self, sent, queues: dict[tuple[str, int], list[_Chunk]], deadline: float) -> str:
        """Wait for the round's answers and apply them; returns the last retriable error
        (empty when none). Non-retriable errors raise."""
        futures = [future for future, _ in sent]
        while not all(f.is_done for f in futures):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._net.poll(timeout_ms=remaining * 1000)
        retry = ""
        for future, tps in sent:
            if not future.is_done:
                retry = "no answer in time"
                continue
            if future.failed():
                exc = future.exception
                if not isinstance(exc, Errors.RetriableError):
                    raise PublishFailed(f"produce request failed: {exc!r}") from exc
                retry = f"{type(exc).__name__}: {exc}"
                continue
            for topic_response in future.value.responses:
                for answer in topic_response.partition_responses:
                    tp = (topic_response.name, answer.index)
                    if answer.error_code == 0 or answer.error_code in ALREADY_APPENDED:
                        self._acknowledged(tp, queues)
                        continue
                    error = Errors.for_code(answer.error_code)
                    detail = f"{tp[0]}[{tp[1]}]: {error.__name__}" + (f" ({answer.error_message})" if answer.error_message else "")
                    if not issubclass(error, Errors.RetriableError):
                        raise PublishFailed(f"broker refused the batch of {detail}")
                    retry = detail
        return retry

    def _acknowledged(self, tp: tuple[str, int], queues: dict[tuple[str, int], list[_Chunk]]) -> None:
        chunks = queues[tp]
        chunk = chunks.pop()
        if self.producer_id != NO_PRODUCER_ID:
            self._sequences[tp] = (self._sequences.get(tp, 0) + chunk.count) & SEQUENCE_MASK
        if not chunks:
            del queues[tp]
