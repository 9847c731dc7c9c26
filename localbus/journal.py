"""SQLite (WAL) mirror of the store: what must survive a crash of the broker.

Writes are collected in memory and applied in one transaction by ``commit`` (group commit). Locks are not
persisted: after a restart every message that was locked is available again.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from pathlib import Path
from typing import Protocol

from .entities import State, StoredMessage

class Journal(Protocol):
    """Durable mirror of the store. Writes are buffered until ``commit``."""

    def load(self) -> tuple[list[StoredMessage], dict[tuple[str, str], tuple[bytes | None, float]], list[tuple[str, str, float]], dict[str, int]]: ...
    def put(self, message: StoredMessage, fresh: bool = False) -> None: ...
    def delete(self, message: StoredMessage) -> None: ...
    def put_session_state(self, queue: str, session_id: str, state: bytes | None, updated_at: float) -> None: ...
    def put_dedup(self, queue: str, message_id: str, expires_at: float) -> None: ...
    def put_next_seq(self, queue: str, next_seq: int) -> None: ...
    def prune_dedup(self, now: float) -> None: ...
    def pending(self) -> bool: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class MemoryJournal:
    """Keeps nothing: the in-memory mode."""

    def load(self):
        return [], {}, [], {}

    def put(self, message, fresh=False): pass
    def delete(self, message): pass
    def put_session_state(self, queue, session_id, state, updated_at): pass
    def put_dedup(self, queue, message_id, expires_at): pass
    def put_next_seq(self, queue, next_seq): pass
    def prune_dedup(self, now): pass
    def pending(self): return False
    def commit(self): pass
    def close(self): pass



_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL,
    message_id TEXT,
    session_id TEXT,
    enqueued_at REAL NOT NULL,
    expires_at REAL,
    scheduled_at REAL,
    delivery_count INTEGER NOT NULL,
    dl_reason TEXT,
    dl_description TEXT,
    dl_source TEXT,
    payload BLOB NOT NULL,
    PRIMARY KEY (queue, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_state (
    queue TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    updated_at REAL,
    PRIMARY KEY (queue, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequence (
    queue TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
) WITHOUT ROWID;
"""


class DataDirInUse(RuntimeError):
    """Another broker process already owns the data directory."""


class SqliteJournal:
    """Durable journal in ``<data_dir>/localbus.sqlite3``; one broker per data directory."""

    def __init__(self, data_dir: str | Path, *, synchronous: str = "NORMAL") -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        # Two brokers on one store would hand out the same messages twice. The lock dies with its process,
        # so a broker killed with SIGKILL never blocks its own restart.
        self._lock_file = open(path / "localbus.lock", "a+b")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirInUse(
                f"another localbus process uses the data directory {path}; stop it or pass a different --data-dir"
            ) from None
        self.path = path / "localbus.sqlite3"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a crash of this process (kill -9);
        # only a power loss can drop the last commits. FULL also fsyncs every commit.
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(session_state)")}
        if "updated_at" not in columns:  # a data directory from before session-state timestamps
            self.db.execute("ALTER TABLE session_state ADD COLUMN updated_at REAL")
        self._puts: dict[tuple[str, int], StoredMessage] = {}
        self._deletes: dict[tuple[str, int], None] = {}
        self._states: dict[tuple[str, str], tuple[bytes | None, float]] = {}
        self._dedup: list[tuple[str, str, float]] = []
        self._seq: dict[str, int] = {}
        self._fresh: set[tuple[str, int]] = set()
        self._last_prune = 0.0

    def load(self):
        messages = []
        for row in self.db.execute(
            "SELECT queue, seq, state, dead_lettered, message_id, session_id, enqueued_at, expires_at, scheduled_at,"
            " delivery_count, dl_reason, dl_description, dl_source, payload FROM messages ORDER BY queue, seq"
        ):
            messages.append(StoredMessage(
                queue=row[0], seq=row[1], state=State(row[2]), dead_lettered=bool(row[3]), message_id=row[4],
                session_id=row[5], enqueued_at=row[6], expires_at=float("inf") if row[7] is None else row[7],
                scheduled_at=row[8], delivery_count=row[9], dead_letter_reason=row[10],
                dead_letter_description=row[11], dead_letter_source=row[12], payload=bytes(row[13]),
            ))
        states = {(q, s): (None if v is None else bytes(v), at or 0.0)
                  for q, s, v, at in self.db.execute("SELECT queue, session_id, state, updated_at FROM session_state")}
        now = time.time()
        dedup = list(self.db.execute("SELECT queue, message_id, expires_at FROM dedup WHERE expires_at > ?", (now,)))
        seqs = dict(self.db.execute("SELECT queue, next_seq FROM sequence"))
        return messages, states, dedup, seqs

    def put(self, m: StoredMessage, fresh: bool = False) -> None:
        key = (m.queue, m.seq)
        self._deletes.pop(key, None)
        self._puts[key] = m
        if fresh:
            self._fresh.add(key)

    def delete(self, m: StoredMessage) -> None:
        key = (m.queue, m.seq)
        self._puts.pop(key, None)
        if key in self._fresh:
            # Inserted and removed within one commit: the row never needs to exist.
            self._fresh.discard(key)
            return
        self._deletes[key] = None

    def put_session_state(self, queue: str, session_id: str, state: bytes | None, updated_at: float) -> None:
        self._states[(queue, session_id)] = (state, updated_at)

    def put_dedup(self, queue: str, message_id: str, expires_at: float) -> None:
        self._dedup.append((queue, message_id, expires_at))

    def put_next_seq(self, queue: str, next_seq: int) -> None:
        self._seq[queue] = next_seq

    def prune_dedup(self, now: float) -> None:
        if now - self._last_prune > 60:
            self._last_prune = now
            self.db.execute("DELETE FROM dedup WHERE expires_at <= ?", (now,))

    def pending(self) -> bool:
        return bool(self._puts or self._deletes or self._states or self._dedup or self._seq)

    def commit(self) -> None:
        if not self.pending():
            return
        puts, deletes, states, dedup, seqs = self._puts, self._deletes, self._states, self._dedup, self._seq
        db = self.db
        db.execute("BEGIN")
        try:
            if deletes:
                db.executemany("DELETE FROM messages WHERE queue = ? AND seq = ?", list(deletes))
            if puts:
                db.executemany(
                    "INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (m.queue, m.seq, int(m.state), int(m.dead_lettered), m.message_id, m.session_id,
                         m.enqueued_at, None if m.expires_at == float("inf") else m.expires_at, m.scheduled_at,
                         m.delivery_count, m.dead_letter_reason, m.dead_letter_description, m.dead_letter_source,
                         m.payload)
                        for m in puts.values()
                    ],
                )
            if states:
                db.executemany(
                    "INSERT OR REPLACE INTO session_state VALUES (?,?,?,?)",
                    [(q, s, v, at) for (q, s), (v, at) in states.items() if v is not None],
                )
                db.executemany(
                    "DELETE FROM session_state WHERE queue = ? AND session_id = ?",
                    [(q, s) for (q, s), (v, _) in states.items() if v is None],
                )
            if dedup:
                db.executemany("INSERT OR REPLACE INTO dedup VALUES (?,?,?)", dedup)
            if seqs:
                db.executemany("INSERT OR REPLACE INTO sequence VALUES (?,?)", list(seqs.items()))
            db.execute("COMMIT")
        except BaseException:
            # Keep the buffered writes: nothing that waits for this commit is acknowledged until it succeeds.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._puts, self._deletes, self._states, self._dedup, self._seq = {}, {}, {}, [], {}
        self._fresh = set()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.db.close()
            self._lock_file.close()
