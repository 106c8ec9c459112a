"""Holding SQLite's write lock from another connection, as a job's write does."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def lock_held(path: Path, release_after_s: float | None = None) -> Iterator[None]:
    """Another connection holds the write lock: until the block ends, or for
    `release_after_s` in a thread."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(release_after_s, holder.rollback) if release_after_s else None
    if release:
        release.start()
    try:
        yield
    finally:
        if release:
            release.join()
        else:
            holder.rollback()
        holder.close()
