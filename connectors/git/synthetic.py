"""Build git repositories with chosen histories fast (`git fast-import`), for the demo,
the tests and the benchmark; the product never calls this."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.git.command import run_git

AUTHOR = "Demo Developer <dev@example.com>"


@dataclass(frozen=True)
class PlannedCommit:
    """A commit to create: each parent is the index of an earlier planned commit, or the
    SHA of a commit already in the repository."""

    message: str
    authored_at: dt.datetime  # aware or naive UTC
    parents: tuple[int | str, ...] = ()
    branch: str = "main"
    committed_at: dt.datetime | None = None  # default: the author time


def _seconds(moment: dt.datetime) -> int:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return int(aware.timestamp())


def _data(text: str) -> bytes:
    payload = text.encode()
    return b"data %d\n%s\n" % (len(payload), payload)


def fast_import(path: Path, plan: Sequence[PlannedCommit], bare: bool = False) -> list[str]:
    """Create (or extend) the repository at `path` with `plan`; the SHAs, in plan order."""
    path = path.resolve()
    if not (path / ("HEAD" if bare else ".git")).exists():
        run_git(["init", "--quiet", *(["--bare"] if bare else []), "-b", "main", str(path)])
    stream = bytearray()
    for index, commit in enumerate(plan, start=1):
        authored = _seconds(commit.authored_at)
        committed = _seconds(commit.committed_at or commit.authored_at)
        stream += b"commit refs/heads/%s\nmark :%d\n" % (commit.branch.encode(), index)
        stream += b"author %s %d +0000\n" % (AUTHOR.encode(), authored)
        stream += b"committer %s %d +0000\n" % (AUTHOR.encode(), committed)
        stream += _data(commit.message)
        for position, parent in enumerate(commit.parents):
            reference = f":{parent + 1}" if isinstance(parent, int) else parent
            stream += b"%s %s\n" % (b"from" if position == 0 else b"merge", reference.encode())
        stream += b"M 100644 inline changes.txt\n" + _data(f"{commit.message}\n")
        stream += b"\n"
    marks = path / ("dora-marks" if bare else ".git/dora-marks")
    run_git(
        ["fast-import", "--quiet", "--force", f"--export-marks={marks}"],
        directory=path,
        input_bytes=bytes(stream),
    )
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    if not bare:
        run_git(["checkout", "--quiet", "-f", "main"], directory=path)
    return [by_mark[f":{index}"] for index in range(1, len(plan) + 1)]
