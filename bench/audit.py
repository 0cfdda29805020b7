"""Audit trail figures on a generated SQLite ledger: rebuild, verify and export rates.

    python -m bench.audit            # --events 200000 (quick default)
    python -m bench.audit --events 2000000
    python -m bench.audit --store ledger.sqlite --handle-only   # an existing store, e.g. bench.projection_rebuild --db's

``--handle-only`` times the projection's own work alone: the stream is read and decoded
first (as the runner does, ``decode_as`` honoured), then ``handle`` runs over it in
batches of 10,000 into an empty scratch SQLite file, one transaction each, and the
secondary ``indexes`` are built; figures are per CPU-second of this process.

Events are written straight through the store's recorder in large batches (the shapes
of real ledger events, encoded by the msgspec mapper), then the ``audit_trail``
projection is rebuilt from zero, ``verify`` re-reads and re-checks every stored row,
and a full JSON-lines export (internal events included) is written to /dev/null.
Peak RSS is the process maximum (``ru_maxrss``) after each step.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from domain import events as ev
from domain.registry import ReferenceClaimed, account_id, event_id, reference_id
from projections.audit_export import ExportFilters, write_export
from projections.audit_store import StoredRows
from projections.audit_trail import AuditTrail
from projections.audit_verify import verify
from projections.db import ViewDatabase
from projections.runner import Envelope, ProjectionRunner
from services.bootstrap import bootstrap
from services.persistence import class_of, decoder_for
from services.settings import Settings


def _stamp(oid: uuid.UUID, version: int, moment: datetime, c: int) -> dict:
    return {"originator_id": oid, "originator_version": version, "event_id": event_id(oid, version), "recorded_at": moment,
            "actor": "bench", "correlation_id": uuid.UUID(int=c), "causation_id": uuid.UUID(int=c + 1)}


def _events(total: int):
    """Per customer: registration, then invoices each with its reference claim,
    and a payment allocated to every second invoice (about ``total`` events)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    produced, c = 0, 0
    while produced < total:
        cid = f"C{c:07d}"
        oid, version = account_id(cid), 1
        moment = start + timedelta(minutes=c)
        yield ev.CustomerRegistered(**_stamp(oid, version, moment, c), customer_id=cid, name=cid, currency="EUR")
        produced += 1
        for i in range(20):
            number = f"INV-{c:07d}-{i:02d}"
            issued = date(2026, 1, 1) + timedelta(days=i * 7)
            version += 1
            yield ev.InvoiceIssued(**_stamp(oid, version, moment, c), customer_id=cid, invoice_number=number, currency="EUR",
                                   amount_minor=10_000 + i, issue_date=issued, due_date=issued + timedelta(days=30),
                                   installments=(ev.Installment(number=1, due_date=issued + timedelta(days=30), amount_minor=10_000 + i),))
            yield ReferenceClaimed(**_stamp(reference_id("invoice", number), 1, moment, c), kind="invoice", reference=number, customer_id=cid)
            produced += 2
            if i % 2 == 0:
                version += 1
                yield ev.PaymentAllocated(**_stamp(oid, version, moment, c), customer_id=cid, payment_id=f"P-{number}", invoice_number=number,
                                          installment=1, currency="EUR", amount_minor=10_000 + i, value_date=issued + timedelta(days=20))
                produced += 1
        c += 1


def generate(store, total: int, batch: int = 5_000) -> int:
    mapper, recorder, pending, count = store.mapper, store.recorder, [], 0
    for event in _events(total):
        pending.append(mapper.to_stored_event(event))
        if len(pending) >= batch:
            recorder.insert_events(pending)
            count += len(pending)
            pending = []
    if pending:
        recorder.insert_events(pending)
        count += len(pending)
    return count


def read_envelopes(store, projection) -> list[Envelope]:
    """The whole stream as a runner hands it to ``projection``: every stored row, decoded
    into the class its ``decode_as`` names (read here with the audit's own raw scan, so
    that the figure does not depend on the runner's internals)."""
    targets: dict[str, object] = {}
    out = []
    for position, _, _, topic, state in StoredRows(store.recorder).scan(0, store.max_position()):
        decode = targets.get(topic)
        if decode is None:
            cls = class_of(topic)
            decode = targets[topic] = decoder_for(projection.decode_as.get(cls, cls)).decode
        out.append(Envelope(position, decode(state), topic, state))
    return out


def handle_only(store, batch: int = 10_000) -> None:
    """CPU cost of ``AuditTrail.handle`` (and its index build) per event, nothing else."""
    projection = AuditTrail()
    cpu = time.process_time()
    envelopes = read_envelopes(store, projection)
    cpu = time.process_time() - cpu
    count = len(envelopes)
    print(f"read and decoded {count:,} events: {cpu / count * 1e6:.2f} us per event (CPU; not part of the figures below)")
    gc.freeze()  # the whole stream held at once: keep the collector from re-walking it during the timing
    with tempfile.TemporaryDirectory() as tmp:
        db = ViewDatabase(f"sqlite:///{Path(tmp) / 'views.sqlite'}")
        with db.transaction() as tx:
            projection.create(tx)
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, count, batch):
            with db.transaction() as tx:
                projection.handle(tx, envelopes[i : i + batch])
        handled, handled_cpu = time.perf_counter() - started, time.process_time() - cpu
        for ddl in projection.indexes:
            index_cpu = time.process_time()
            with db.transaction() as tx:
                tx.execute(ddl)
            print(f"  {ddl.split(' ON ')[0].split()[-1]}: {(time.process_time() - index_cpu) / count * 1e6:.2f} us per event (CPU)")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        db.close()
    print(f"audit_trail handle: {handled_cpu / count * 1e6:.2f} us per event (CPU; wall {handled / count * 1e6:.2f} us);"
          f" with indexes {cpu / count * 1e6:.2f} us per event = {count / cpu:,.0f} events per CPU-second"
          f" (wall {count / elapsed:,.0f} events/s); view file {size / count:.0f} bytes per event;"
          f" load average {os.getloadavg()[0]:.1f}")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--database-url", help="an empty store to fill (default: a temporary SQLite file)")
    parser.add_argument("--store", metavar="SQLITE_FILE", help="time an existing SQLite store instead of generating one")
    parser.add_argument("--handle-only", action="store_true", help="time the projection's handle (and index build) alone")
    args = parser.parse_args()
    if args.handle_only:
        if not args.store:
            parser.error("--handle-only needs --store (e.g. the file of bench.projection_rebuild --db)")
        app = bootstrap(Settings.from_env({}, database_url=f"sqlite:///{Path(args.store).resolve()}", log_level="WARNING"))
        handle_only(app.store)
        app.close()
        return
    total = 20_000 if args.quick else args.events
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'ledger.sqlite'}"
        app = bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"))
        db = ViewDatabase(url)
        started = time.perf_counter()
        count = generate(app.store, total)
        print(f"generated {count:,} stored events in {time.perf_counter() - started:.1f} s")
        runner = ProjectionRunner(app.store, db, [AuditTrail()], batch_size=5_000)
        runner.setup()
        started, cpu = time.perf_counter(), time.process_time()
        runner.rebuild("audit_trail")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"audit_trail rebuild: {count / elapsed:,.0f} events/s ({elapsed:.1f} s wall, {count / cpu:,.0f} events per CPU-second),"
              f" peak RSS {peak_mb():,.0f} MB")
        for deep in (True, False):
            cpu = time.process_time()
            report = verify(StoredRows(app.store.recorder), db, runner.position("audit_trail"), deep=deep)
            cpu = time.process_time() - cpu
            assert report.intact, report.problems[:3]
            print(f"audit verify{'' if deep else ' --fast'}: {report.events_per_s:,.0f} events/s ({report.elapsed_s:.1f} s wall,"
                  f" {count / cpu:,.0f} events per CPU-second), peak RSS {peak_mb():,.0f} MB")
        started = time.perf_counter()
        with open("/dev/null", "wb") as sink:
            summary = write_export(db, StoredRows(app.store.recorder), sink, fmt="jsonl", filters=ExportFilters(include_internal=True),
                                   trail_position=runner.position("audit_trail"))
        elapsed = time.perf_counter() - started
        print(f"audit export (jsonl): {summary['rows'] / elapsed:,.0f} rows/s ({elapsed:.1f} s), peak RSS {peak_mb():,.0f} MB")
        db.close()
        app.close()


if __name__ == "__main__":
    main()
