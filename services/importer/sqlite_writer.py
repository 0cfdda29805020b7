"""The import's SQLite write transaction, held by a child process so the write runs on
the second core while this process is still parsing and checking rows.

Why a process and not a thread: ``executemany`` takes the GIL back for every row it
binds, so a writer thread and the planner thread (pure Python) slow each other down
more than they gain. A child process shares nothing but a pipe.

All or nothing, whatever happens:

* the child opens its own connection to the same database file, ``BEGIN``s at the first
  batch and inserts each batch as it arrives (the same ``INSERT`` into the recorder's
  table the in-process path runs: notification ids are the same rowids);
* it commits only on an explicit *commit* frame, sent once every row of every file
  has passed; the parent sends *nothing more* (closes the pipe) when any row is bad;
* end of input without a commit frame (the parent returned, raised or was killed),
  an error, or the child's own death all end in a rollback: nothing is recorded.

Frames on the child's stdin: a 4-byte big-endian length, then msgpack of either an
array of rows ``[originator_id_hex, originator_version, topic, state]`` or a map
``{"topics": {tag: topic}, "events": JSON array of the events}`` (the plain msgspec
mapper's case: the parent encodes a batch in one call, and this process, which has
time to spare while the parent checks rows, cuts the array into each event's stored
bytes and reads each one's originator id, version and type tag from it); length 0
means commit. The
child answers once on stdout with a msgpack map: ``status`` (``committed``,
``integrity_error``, ``error``, ``aborted``), ``message``, its ``cpu_seconds`` and the wall
seconds it spent inserting, committing and waiting for input.

The pipe is buffered at both ends: a sender thread here, a reader thread in the child,
so that neither the checking nor the inserting waits for the other batch by batch.

This file is also the child's program (``python sqlite_writer.py``): it imports only
the standard library and msgspec, so the child is up in a few tens of milliseconds.
"""

from __future__ import annotations

import gc
import os
import queue
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

import msgspec

_LENGTH = struct.Struct(">I")
COMMIT = _LENGTH.pack(0)


class WriterFailed(Exception):
    """The child could not write or commit; ``status`` says why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class SqliteWriter:
    """Parent side: start the child, stream row batches, then commit or abort.

    Frames go out through a sender thread, so the planner never waits on a full pipe
    while the child is busy inserting (the thread sleeps in ``write`` without the GIL)."""

    def __init__(self, db_name: str, table: str, lock_timeout: float, cache_kib: int) -> None:
        # -P: do not put this file's directory first on the child's sys.path
        self.process = subprocess.Popen(
            [sys.executable, "-P", __file__, db_name, table, str(lock_timeout), str(cache_kib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin: BinaryIO = self.process.stdin
        self._stdout: BinaryIO = self.process.stdout
        _widen_pipe(self._stdin)
        self._encode = msgspec.msgpack.Encoder().encode
        self.broken = False  # the child stopped reading (it failed): stop sending
        self.cpu_seconds = 0.0
        self.timings: dict[str, float] = {}  # the child's wall seconds inserting, committing, waiting for input
        self._outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._sender = threading.Thread(target=self._send_frames, name="import-writer-feed", daemon=True)
        self._sender.start()

    def send(self, rows: list[tuple[Any, ...]]) -> None:
        """A batch of rows (originator_id_hex, originator_version, topic, state)."""
        if self.broken or not rows:
            return
        self._put(self._encode(rows))

    def send_events(self, topics: dict[str, str], events_json: bytes) -> None:
        """A batch as a JSON array of events whose elements are their stored bytes
        (:func:`services.persistence.encode_events`); ``topics``: type tag -> topic."""
        if self.broken:
            return
        self._put(self._encode({"topics": topics, "events": events_json}))

    def _put(self, payload: bytes) -> None:
        self._outbox.put(_LENGTH.pack(len(payload)))
        self._outbox.put(payload)

    def _send_frames(self) -> None:
        while True:
            frame = self._outbox.get()
            if frame is None:
                return
            if self.broken:
                continue
            try:
                self._stdin.write(frame)
                if frame is COMMIT:  # a 4-byte frame stays in the pipe's write buffer: the child would wait for it until close()
                    self._stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True

    def _stop_sending(self) -> None:
        self._outbox.put(None)
        self._sender.join()

    def commit(self) -> None:
        """Ask the child to commit; raise :class:`WriterFailed` if it did not."""
        self.request_commit()
        self.wait_commit()

    def request_commit(self) -> None:
        """Send the commit frame; the caller may do other work before :meth:`wait_commit`.

        Returns once the sender thread has handed every frame to the pipe: the caller's
        next work (freeing the plan: one statement, hundreds of thousands of objects)
        holds the GIL throughout, and would otherwise keep the last frames, and so the
        child's COMMIT, waiting."""
        self._outbox.put(COMMIT)
        self._outbox.put(None)
        self._sender.join()

    def wait_commit(self) -> None:
        self._sender.join()
        self._finish(expect="committed")

    def abort(self) -> None:
        """Close the pipe without a commit frame: the child rolls back."""
        self._stop_sending()
        self._finish(expect=None)

    def _finish(self, expect: str | None) -> None:
        try:
            self._stdin.close()
        except (BrokenPipeError, OSError):
            pass
        answer = self._stdout.read()
        self.process.wait()
        try:
            reply = msgspec.msgpack.decode(answer) if answer else {}
        except msgspec.DecodeError:
            reply = {}
        self.cpu_seconds = float(reply.get("cpu_seconds", 0.0))
        self.timings = {k: float(reply.get(k, 0.0)) for k in ("insert_seconds", "commit_seconds", "idle_seconds")}
        status = reply.get("status", "died")
        if expect is not None and status != expect:
            message = reply.get("message") or f"the import's writer process ended with exit code {self.process.returncode}"
            raise WriterFailed(status, message)

    def kill(self) -> None:
        """For an exception in the parent: end the child at once (nothing is committed)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.broken = True  # the sender drains its queue without writing; a write under way fails (EPIPE)
        self._outbox.put(None)
        self._sender.join(timeout=10)
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except (BrokenPipeError, OSError):
                pass
        self.process.wait()


def _widen_pipe(stream: BinaryIO) -> None:
    """1 MiB instead of 64 KiB of pipe (Linux): fewer wake-ups per batch on both sides."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


# ---- the child ---------------------------------------------------------------------------


def _read_frames(stream: BinaryIO, frames: queue.Queue[bytes | None]) -> None:
    """Reader thread: while the main thread inserts one batch, the next one is taken off
    the pipe, so the parent is not held up by a full pipe. ``None`` = end of input
    (no commit); ``b""`` = the commit frame."""
    try:
        while True:
            header = stream.read(_LENGTH.size)
            if len(header) < _LENGTH.size:
                break
            (length,) = _LENGTH.unpack(header)
            if length == 0:
                frames.put(b"")
                return
            payload = stream.read(length)
            if len(payload) < length:
                break
            frames.put(payload)
    finally:
        frames.put(None)


class _Head(msgspec.Struct):
    """What a stored row needs from an event's JSON besides its bytes (other fields skipped)."""

    type: str
    originator_id: str
    originator_version: int


_decode_heads = msgspec.json.Decoder(list[_Head]).decode
_decode_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode


def rows_of_frame(frame: Any) -> list[tuple[Any, ...]]:
    """A decoded frame -> the rows to insert. For an events frame, each state is the
    exact span of its element in the array (a ``Raw``, bound as a BLOB), the same bytes
    the parent's mapper would have stored; the id as ``UUID.hex`` (no dashes)."""
    if not isinstance(frame, dict):
        return frame
    topics, events = frame["topics"], frame["events"]
    return [(head.originator_id.replace("-", ""), head.originator_version, topics[head.type], raw)
            for head, raw in zip(_decode_heads(events), _decode_raws(events))]


#: Bytes of the write-ahead log written since its last flush before an idle writer
#: flushes them (see :class:`_EarlyFlush`).
EARLY_FLUSH_BYTES = 16 << 20


class _EarlyFlush:
    """Flushes the write-ahead log to disk while this process waits for the next batch.

    Durability is untouched: COMMIT still fsyncs the log as it always does. But the
    pages spilled during the load are by then mostly on disk already, so that fsync,
    which nothing else can overlap (it follows the last row), has little left to do.
    Only when the log is a file SQLite named (WAL mode); any OS error just stops it."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.fd: int | None = None
        self.size = 0
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                return
            path = next((row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"), "")
            if path:
                self.fd = os.open(path + "-wal", os.O_RDONLY)
        except (OSError, sqlite3.Error):
            self.fd = None

    def __call__(self) -> None:
        if self.fd is None:
            return
        try:
            size = os.fstat(self.fd).st_size
            if size - self.size >= EARLY_FLUSH_BYTES:
                os.fdatasync(self.fd)
                self.size = size
        except OSError:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def child_main(argv: list[str]) -> int:
    db_name, table, lock_timeout, cache_kib = argv[0], argv[1], float(argv[2]), int(argv[3])
    gc.disable()  # a short-lived process that makes no reference cycles: nothing to collect
    out = sys.stdout.buffer
    started_cpu = time.process_time()
    spent = {"insert_seconds": 0.0, "commit_seconds": 0.0, "idle_seconds": 0.0}  # wall, for the report and benchmarks

    def answer(status: str, message: str = "") -> None:
        out.write(msgspec.msgpack.encode({"status": status, "message": message, "cpu_seconds": time.process_time() - started_cpu, **spent}))
        out.flush()

    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    threading.Thread(target=_read_frames, args=(sys.stdin.buffer, frames), daemon=True).start()
    decode = msgspec.msgpack.Decoder().decode
    insert = f"INSERT INTO {table} VALUES (?,?,?,?)"
    connection = sqlite3.connect(db_name, uri=True, isolation_level=None, timeout=lock_timeout)
    try:
        # The primary-key index takes random uuids: keep its pages in memory while loading.
        connection.execute(f"PRAGMA cache_size = {-cache_kib}")
        cursor = connection.cursor()
        began = False
        clock = time.perf_counter
        while True:
            waited = clock()
            frame = frames.get()
            started = clock()
            spent["idle_seconds"] += started - waited
            if frame is None:  # the parent closed the pipe without committing
                if began:
                    connection.rollback()
                answer("aborted", "the import was not committed")
                return 0
            if not began:
                cursor.execute("BEGIN")
                began = True
                flush = _EarlyFlush(connection)
            if frame == b"":
                cursor.execute("COMMIT")
                spent["commit_seconds"] = clock() - started
                answer("committed")
                return 0
            cursor.executemany(insert, rows_of_frame(decode(frame)))
            spent["insert_seconds"] += clock() - started
            if frames.empty():  # nothing to insert now: flush the log written so far
                flush()
    except sqlite3.IntegrityError as exc:
        answer("integrity_error", str(exc))
        return 1
    except sqlite3.Error as exc:
        answer("error", f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if began:
            flush.close()
        connection.close()  # without COMMIT this rolls back


if __name__ == "__main__":
    code = child_main(sys.argv[1:])
    sys.stdout.flush()
    # Leave at once: interpreter shutdown would wait on the reader thread's hold on stdin
    # when the parent is still sending (after a refused batch). The answer is written,
    # the connection closed (rolled back unless committed).
    os._exit(code)
