"""The commit and repository an event is about: CI variables first, else the working copy.

CI systems check out a detached HEAD (sometimes a shallow or synthetic merge
commit) and often a remote URL with an embedded token, so their own variables
describe the build better than `git` does. Outside CI the working copy answers.
URLs are normalized to credential-free `https://host/org/repo` so the same
repository reads the same whether it was cloned over SSH or HTTPS.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

GIT_FLAGS_HINT = "pass --git-repository-url and --git-commit-sha, or --skip-git"


class GitInfoError(RuntimeError):
    """The commit or repository could not be determined; the message says what to pass instead."""


@dataclass(frozen=True)
class GitInfo:
    commit_sha: str
    repository_url: str


# (commit variable, repository variable), checked in order; a pair counts only when both are set.
# GitLab's CI_REPOSITORY_URL embeds a job token, so its project URL is used instead.
_CI_PAIRS = (
    ("DD_GIT_COMMIT_SHA", "DD_GIT_REPOSITORY_URL"),  # Datadog's own convention
    ("GITHUB_SHA", "GITHUB_REPOSITORY"),  # GitHub Actions: org/repo on GITHUB_SERVER_URL
    ("CI_COMMIT_SHA", "CI_PROJECT_URL"),  # GitLab
    ("BUILDKITE_COMMIT", "BUILDKITE_REPO"),
    ("CIRCLE_SHA1", "CIRCLE_REPOSITORY_URL"),
    ("BITBUCKET_COMMIT", "BITBUCKET_GIT_HTTP_ORIGIN"),
    ("BUILD_SOURCEVERSION", "BUILD_REPOSITORY_URI"),  # Azure Pipelines
    ("DRONE_COMMIT_SHA", "DRONE_GIT_HTTP_URL"),
    ("GIT_COMMIT", "GIT_URL"),  # Jenkins
)
CI_VARIABLES = frozenset({name for pair in _CI_PAIRS for name in pair} | {"GITHUB_SERVER_URL"})


def from_ci_variables(env: Mapping[str, str]) -> GitInfo | None:
    """The first CI system's commit and repository found in `env`, else None."""
    for sha_variable, url_variable in _CI_PAIRS:
        commit_sha, url = env.get(sha_variable, "").strip(), env.get(url_variable, "").strip()
        if commit_sha and url:
            if url_variable == "GITHUB_REPOSITORY":
                server = env.get("GITHUB_SERVER_URL") or "https://github.com"
                url = f"{server.rstrip('/')}/{url}"
            return GitInfo(commit_sha, normalize_repository_url(url))
    return None


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!/).+)$")


def normalize_repository_url(url: str) -> str:
    """`git@host:org/repo.git`, `ssh://git@host:22/org/repo` and `https://user:token@host/org/repo.git`
    all become `https://host/org/repo`; local paths and other schemes are kept as given."""
    text = url.strip()
    scp = _SCP_LIKE.match(text) if "://" not in text else None
    if scp:
        scheme, host, path = "https", scp["host"], scp["path"]
    else:
        parts = urlsplit(text)
        if parts.scheme not in {"http", "https", "ssh", "git", "git+ssh"} or not parts.hostname:
            return text
        scheme = "http" if parts.scheme == "http" else "https"
        # An SSH port says nothing about the web port, so only HTTP(S) ports are kept.
        keep_port = parts.port and parts.scheme in {"http", "https"}
        host = f"{parts.hostname}:{parts.port}" if keep_port else parts.hostname
        path = parts.path
    return f"{scheme}://{host}/{path.strip('/').removesuffix('.git')}"


def _git(arguments: list[str], cwd: Path | None) -> str | None:
    """The command's output, or None when git says no (not a repository, no such remote)."""
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise GitInfoError(f"git is not installed; {GIT_FLAGS_HINT}") from None
    return completed.stdout.strip() if completed.returncode == 0 else None


def from_working_copy(cwd: Path | None = None) -> GitInfo:
    """HEAD and the `origin` remote of the repository containing `cwd`."""
    commit_sha = _git(["rev-parse", "--verify", "HEAD"], cwd)
    if not commit_sha:
        raise GitInfoError(
            f"cannot tell the commit: {(cwd or Path.cwd()).resolve()} is not inside a git "
            f"repository with a commit, and no CI variables (GITHUB_SHA, CI_COMMIT_SHA, ...) "
            f"are set; {GIT_FLAGS_HINT}"
        )
    remote = _git(["remote", "get-url", "origin"], cwd)
    if not remote:
        raise GitInfoError(
            "cannot tell the repository URL: the git repository has no `origin` remote; "
            f"add one (git remote add origin URL) or {GIT_FLAGS_HINT}"
        )
    return GitInfo(commit_sha, normalize_repository_url(remote))


def detect(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> GitInfo:
    """The build's commit and repository URL: CI variables when present, else `git`."""
    return from_ci_variables(os.environ if env is None else env) or from_working_copy(cwd)
