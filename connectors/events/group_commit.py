"""Group commit: one writer thread turns many concurrent writes into one durable commit.

With durable commits (SQLite `synchronous=FULL`, PostgreSQL's fsync) a transaction per
request caps throughput at the disk's flush rate. The writer instead takes every write
waiting in its queue, applies them in arrival order in ONE transaction (so two upserts
of the same id behave as if sent one after the other), commits once, and only then
answers each request. Under load, batches grow on their own while a commit is flushing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from typing import Any

from connectors.events.store import EventStore, Write, settle

_Pending = tuple[Write, asyncio.Future[Any], asyncio.AbstractEventLoop]
_STOP = None
# How often, while nothing else comes, the writer retries applying spooled events: jobs
# leave the lock free for at least 25 ms between their writes (`WriteTurns`).
SPOOL_RETRY_S = 0.005


class GroupCommitWriter:
    """Applies writes submitted from any event loop; the thread starts on first use."""

    def __init__(self, store: EventStore, max_batch: int = 2000) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, write: Write) -> Any:
        """Apply `write`; returns its result once the transaction holding it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._start()
        self._queue.put((write, future, loop))
        return await future

    async def settle(self) -> None:
        """Wait until every event the spool holds is in the warehouse (for a read)."""
        spool = self._store.spool
        if spool is not None and not spool.is_empty():
            await self.submit(settle())

    def close(self, timeout: float = 30) -> None:
        """Finish what was submitted, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="event-group-commit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                # While events wait in the spool, try the warehouse's lock now and then.
                first = self._queue.get(timeout=SPOOL_RETRY_S if self._store.spooling else None)
            except queue.Empty:
                self._store.take_up_spool()
                continue
            if first is _STOP:
                return
            batch, stopping = [first], False
            while len(batch) < self._max_batch:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is _STOP:
                    stopping = True
                    break
                batch.append(pending)
            results = self._store.write_batch([write for write, _, _ in batch])
            _answer(batch, results)
            if stopping:
                return


def _answer(batch: list[_Pending], results: list[Any]) -> None:
    # One wake-up per event loop per batch, not one per request.
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = defaultdict(
        list
    )
    for (_, future, loop), result in zip(batch, results, strict=True):
        by_loop[loop].append((future, result))
    for loop, answers in by_loop.items():
        # A closed loop (its server stopped) has nobody waiting for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, answers)


def _resolve(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in answers:
        if future.done():  # the request was cancelled (client went away); the write stands
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
