"""Running `git`: a timeout on every call, no prompts, and no credential in any message."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT_SECONDS = 300.0
# `scheme://user:secret@host` anywhere in a text: git echoes remote URLs in its errors.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class GitError(RuntimeError):
    """A git call failed or timed out; the message is free of credentials."""


def redact(text: str) -> str:
    """`text` with the user information of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def shown_url(url: str) -> str:
    """A repository URL as logs, tables and metadata may show it."""
    parts = urlsplit(url)
    if parts.scheme and parts.hostname and "@" in parts.netloc:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=host))
    return redact(url)


def run_git(
    arguments: Sequence[str],
    *,
    directory: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    input_bytes: bytes | None = None,
) -> str:
    command = ["git", *(["-C", str(directory)] if directory else []), *arguments]
    environment = {
        **os.environ,
        # Never wait for a password nobody will type; credential helpers still answer.
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        "LC_ALL": "C",
    }
    try:
        completed = subprocess.run(
            command, capture_output=True, input=input_bytes, timeout=timeout, env=environment
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {arguments[0]} timed out after {timeout:g} s") from None
    except FileNotFoundError:
        raise GitError("the git command line is not installed (or not on PATH)") from None
    stdout, stderr = (
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )
    if completed.returncode != 0:
        detail = redact(stderr.strip().splitlines()[-1] if stderr.strip() else "")
        raise GitError(f"git {arguments[0]} failed ({completed.returncode}): {detail}")
    return stdout
