"""`dora deployment` and `dora failure`, run as real processes against real HTTP servers.

The live event API runs under uvicorn on loopback over a fresh warehouse
(SQLite and PostgreSQL); the retry tests use a tiny scripted FastAPI server that
answers with a planned sequence of statuses. Retries are kept short with
`DORA_CLI_RETRY_BASE_SECONDS`; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from api_support import API_KEY, FINISHED, SHA, STARTED, count_rows, free_port
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.api.app import ApiSettings, create_app
from connectors.gitinfo import CI_VARIABLES, normalize_repository_url
from connectors.serving import serve_in_thread
from connectors.warehouse.schema import api_deployments, api_failure_services, api_failures

# The smallest deployment the CLI sends: the rest comes from flags a test adds.
DEPLOYMENT = ("deployment", "--service=shop", f"--started-at={STARTED}")


def dora(
    *arguments: str, api_url: str | None = None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `dora` in a fresh interpreter with no CI variables unless the test sets them."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in CI_VARIABLES and not name.startswith("DORA_")
    }
    environment |= {"DORA_API_KEY": API_KEY, "DORA_CLI_RETRY_BASE_SECONDS": "0.01"}
    if api_url is not None:
        environment["DORA_API_URL"] = api_url
    environment |= env
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    return lines[0]


def accepted_id(result: subprocess.CompletedProcess[str]) -> str:
    """The id at the end of the one line a successful send prints."""
    assert result.returncode == 0, result.stderr
    return one_line(result.stdout).rsplit(" ", 1)[-1]


@pytest.fixture
def api(warehouse: sa.Engine) -> Iterator[str]:
    """The real event API over a fresh warehouse, accepting only `API_KEY`."""
    with serve_in_thread(create_app(warehouse, ApiSettings(api_keys=[API_KEY]))) as base_url:
        yield base_url


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: the port was bound once, then released."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def git_repository(tmp_path: Path) -> tuple[Path, str]:
    """A real repository with one commit and an SSH-style `origin`; returns (path, HEAD)."""
    repository = tmp_path / "shop"
    repository.mkdir()
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]

    def git(*arguments: str) -> str:
        completed = subprocess.run(
            ["git", *identity, *arguments], cwd=repository, capture_output=True, text=True
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout.strip()

    git("init", "-q")
    (repository / "README").write_text("shop\n")
    git("add", "README")
    git("commit", "-q", "-m", "first")
    git("remote", "add", "origin", "git@github.com:acme/shop.git")
    return repository, git("rev-parse", "HEAD")


# --- deployments against the live API ------------------------------------------------


def test_deployment_reads_git_from_the_working_copy_and_stores_one_row(
    api: str, warehouse: sa.Engine, git_repository: tuple[Path, str]
) -> None:
    repository, head = git_repository
    arguments = (
        "deployment",
        "--service=shop",
        "--started-at=2025-01-31T12:00:00Z",
        "--finished-at=2025-01-31T13:05:00+01:00",
        "--env=prod",
        "--team=payments",
        "--version=1.2.3",
        "--custom-tags",
        "region:eu",
        "tier:1",
    )
    event_id = accepted_id(dora(*arguments, api_url=api, cwd=repository))
    # Sent again (a CI job re-run): the same deployment, not a second row.
    assert accepted_id(dora(*arguments, api_url=api, cwd=repository)) == event_id

    with warehouse.connect() as connection:
        rows = connection.execute(sa.select(api_deployments)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["deployment_id"] == event_id
    assert (row["service"], row["env"], row["team"], row["version"]) == (
        "shop",
        "prod",
        "payments",
        "1.2.3",
    )
    assert row["commit_sha"] == head
    assert row["repository_url"] == "https://github.com/acme/shop"
    assert (row["started_at"].isoformat(), row["finished_at"].isoformat()) == (
        "2025-01-31T12:00:00",
        "2025-01-31T12:05:00",
    )
    assert sorted(json.loads(row["custom_tags"])) == ["region:eu", "tier:1"]

    read_back = httpx.get(
        f"{api}/api/v2/dora/deployments/{event_id}", headers={"DD-API-KEY": API_KEY}
    )
    assert read_back.status_code == 200


def test_dry_run_prints_the_exact_body_and_stores_nothing(api: str, warehouse: sa.Engine) -> None:
    result = dora(
        *DEPLOYMENT,
        "--finished-at=2025-01-31T12:05:00Z",
        "--id=deploy-42",
        f"--git-commit-sha={SHA}",
        "--git-repository-url=https://github.com/acme/shop",
        "--dry-run",
        api_url=api,
    )
    expected = {
        "data": {
            "attributes": {
                "finished_at": FINISHED,
                "git": {"commit_sha": SHA, "repository_url": "https://github.com/acme/shop"},
                "id": "deploy-42",
                "service": "shop",
                "started_at": STARTED,
            }
        }
    }
    assert result.returncode == 0, result.stderr
    assert result.stdout == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    assert count_rows(warehouse, api_deployments) == 0


def test_wrong_key_exits_1_naming_dora_api_key(api: str, warehouse: sa.Engine) -> None:
    result = dora(*DEPLOYMENT, "--skip-git", api_url=api, DORA_API_KEY="not-the-key")
    assert result.returncode == 1
    reason = one_line(result.stderr)
    assert "HTTP 401" in reason or "HTTP 403" in reason
    assert "DORA_API_KEY" in reason
    assert "not-the-key" not in result.stdout + result.stderr
    assert count_rows(warehouse, api_deployments) == 0


def test_rejected_event_exits_1_quoting_the_server(api: str, warehouse: sa.Engine) -> None:
    result = dora(
        "deployment",
        "--service=shop",
        f"--started-at={FINISHED}",
        f"--finished-at={STARTED}",
        "--skip-git",
        api_url=api,
    )
    assert result.returncode == 1
    reason = one_line(result.stderr)
    assert "HTTP 400" in reason
    assert "/data/attributes/" in reason
    assert "finished_at" in reason
    assert count_rows(warehouse, api_deployments) == 0


def test_unreachable_server_exits_1_naming_dora_api_url(closed_port_url: str) -> None:
    result = dora(*DEPLOYMENT, "--skip-git", api_url=closed_port_url, DORA_CLI_MAX_ATTEMPTS="2")
    assert result.returncode == 1
    reason = one_line(result.stderr)
    assert closed_port_url in reason
    assert "after 2 attempts" in reason
    assert "DORA_API_URL" in reason
    assert "dora api" in reason


def test_missing_api_key_exits_1_before_sending(closed_port_url: str) -> None:
    result = dora(*DEPLOYMENT, "--skip-git", api_url=closed_port_url, DORA_API_KEY="")
    assert result.returncode == 1
    assert "DORA_API_KEY is not set" in one_line(result.stderr)


# --- failures against the live API ---------------------------------------------------


def test_failure_with_several_services_is_resolved_by_sending_it_again(
    api: str, warehouse: sa.Engine
) -> None:
    arguments = (
        "failure",
        "--service=checkout",
        "--service=search",
        "--team=payments",
        "--env=prod",
        "--severity=SEV-2",
        "--name=database down",
        f"--started-at={STARTED}",
        "--skip-git",
    )
    opened = accepted_id(dora(*arguments, api_url=api))
    # Without an id, the API matches the failure on (env, services, started_at): one failure.
    assert accepted_id(dora(*arguments, f"--finished-at={FINISHED}", api_url=api)) == opened

    with warehouse.connect() as connection:
        failures = connection.execute(sa.select(api_failures)).mappings().all()
        services = connection.execute(sa.select(api_failure_services.c.service)).scalars().all()
    assert len(failures) == 1
    failure = failures[0]
    assert (failure["team"], failure["env"], failure["severity"], failure["name"]) == (
        "payments",
        "prod",
        "SEV-2",
        "database down",
    )
    assert failure["started_at"].isoformat() == "2025-01-31T12:00:00"
    assert failure["finished_at"].isoformat() == "2025-01-31T12:05:00"
    assert sorted(services) == ["checkout", "search"]


def test_team_only_failure_is_stored_open(api: str, warehouse: sa.Engine) -> None:
    result = dora(
        "failure",
        "--team=platform",
        "--started-at=2025-01-31T13:00:00+01:00",
        "--skip-git",
        api_url=api,
    )
    assert result.returncode == 0, result.stderr
    with warehouse.connect() as connection:
        failure = connection.execute(sa.select(api_failures)).mappings().one()
        services = connection.execute(sa.select(api_failure_services.c.service)).scalars().all()
    assert failure["team"] == "platform"
    assert failure["started_at"].isoformat() == "2025-01-31T12:00:00"
    assert failure["finished_at"] is None
    assert services == [""]


# --- argument errors: exit 2, nothing sent --------------------------------------------


@pytest.mark.parametrize(
    ("git_flags", "complaint"),
    [
        ([f"--git-commit-sha={SHA}"], "--git-commit-sha needs --git-repository-url"),
        (["--git-repository-url=https://github.com/acme/shop"], "needs --git-commit-sha"),
        (["--skip-git", f"--git-commit-sha={SHA}"], "--skip-git contradicts"),
    ],
)
def test_git_flags_must_come_as_a_pair(
    git_flags: list[str], complaint: str, closed_port_url: str, git_repository: tuple[Path, str]
) -> None:
    # Inside a repository, so nothing could silently fill in the missing half.
    repository, _head = git_repository
    result = dora(*DEPLOYMENT, *git_flags, api_url=closed_port_url, cwd=repository)
    assert result.returncode == 2
    assert complaint in result.stderr


def test_failure_needs_a_service_or_a_team(closed_port_url: str) -> None:
    result = dora("failure", f"--started-at={STARTED}", "--skip-git", api_url=closed_port_url)
    assert result.returncode == 2
    assert "--service" in result.stderr and "--team" in result.stderr


@pytest.mark.parametrize(
    "started_at",
    [
        str(STARTED),
        f"{STARTED}.9",  # fractions of a second are dropped
        "2025-01-31T12:00:00Z",
        "2025-01-31T14:00:00+02:00",
        "2025-01-31T14:00:00+0200",
        "2025-01-31T12:00Z",
        "2025-01-31T12:00:00",  # no offset: UTC, the warehouse's time
    ],
)
def test_times_are_unix_seconds_or_iso_8601(started_at: str, closed_port_url: str) -> None:
    result = dora(
        "deployment",
        "--service=shop",
        f"--started-at={started_at}",
        f"--finished-at={FINISHED}",
        "--skip-git",
        "--dry-run",
        api_url=closed_port_url,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["attributes"]["started_at"] == STARTED


def test_a_time_that_is_neither_says_what_is_accepted(closed_port_url: str) -> None:
    result = dora("deployment", "--service=shop", "--started-at=yesterday", api_url=closed_port_url)
    assert result.returncode == 2
    assert "ISO 8601" in result.stderr and "Unix seconds" in result.stderr


def test_outside_a_repository_it_sends_without_git_and_says_how_to_attach_it(
    tmp_path: Path, api: str, warehouse: sa.Engine
) -> None:
    result = dora(
        *DEPLOYMENT,
        api_url=api,
        cwd=tmp_path,
        GIT_CEILING_DIRECTORIES=str(tmp_path.parent),
    )
    accepted_id(result)
    assert "not inside a git repository" in result.stderr
    assert "--skip-git" in result.stderr
    with warehouse.connect() as connection:
        assert connection.execute(sa.select(api_deployments.c.commit_sha)).scalar_one() is None


# --- git inference ----------------------------------------------------------------------


def test_github_actions_variables_win_over_the_checkout(
    git_repository: tuple[Path, str], closed_port_url: str
) -> None:
    repository, _head = git_repository
    result = dora(
        *DEPLOYMENT,
        "--dry-run",
        api_url=closed_port_url,
        cwd=repository,
        GITHUB_SHA=SHA,
        GITHUB_REPOSITORY="acme/storefront",
        GITHUB_SERVER_URL="https://github.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["attributes"]["git"] == {
        "commit_sha": SHA,
        "repository_url": "https://github.example.com/acme/storefront",
    }


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:acme/shop.git", "https://github.com/acme/shop"),
        ("ssh://git@gitlab.example.com:2222/acme/shop.git", "https://gitlab.example.com/acme/shop"),
        (
            "https://ci-token:secret@gitlab.example.com/acme/shop.git",
            "https://gitlab.example.com/acme/shop",
        ),
        ("http://git.local:3000/acme/shop/", "http://git.local:3000/acme/shop"),
        ("https://github.com/acme/shop", "https://github.com/acme/shop"),
        ("/srv/git/shop.git", "/srv/git/shop.git"),
    ],
)
def test_repository_urls_are_normalized_without_credentials(remote: str, expected: str) -> None:
    assert normalize_repository_url(remote) == expected


# --- retries against a scripted server ------------------------------------------------


def scripted_api(statuses: list[int]) -> tuple[FastAPI, list[dict]]:
    """An app answering each POST with the next planned status (the last one repeats)."""
    app = FastAPI()
    received: list[dict] = []

    @app.post("/api/v2/dora/deployment")
    async def deployment(request: Request) -> JSONResponse:
        received.append({"body": await request.json(), "key": request.headers.get("dd-api-key")})
        status = statuses[min(len(received), len(statuses)) - 1]
        if status == 202:
            return JSONResponse(
                {"data": {"id": "dep-scripted", "type": "dora_deployment"}}, status_code=202
            )
        problem = {"status": str(status), "title": "scripted", "detail": "scripted answer"}
        return JSONResponse({"errors": [problem]}, status_code=status, headers={"Retry-After": "0"})

    return app, received


@pytest.mark.parametrize(
    ("statuses", "exit_code", "requests", "message"),
    [
        ([503, 503, 202], 0, 3, "dep-scripted"),
        ([429, 500, 502, 504, 202], 0, 5, "dep-scripted"),
        ([503], 1, 5, "HTTP 503 to all 5 attempts"),
        ([429], 1, 5, "rate limiting"),
        ([401], 1, 1, "DORA_API_KEY"),
        ([400], 1, 1, "scripted answer"),
        ([404], 1, 1, "DORA_API_URL"),
        ([413], 1, 1, "HTTP 413"),
    ],
)
def test_transient_answers_are_retried_and_final_ones_are_not(
    statuses: list[int], exit_code: int, requests: int, message: str
) -> None:
    app, received = scripted_api(statuses)
    with serve_in_thread(app) as base_url:
        result = dora(*DEPLOYMENT, "--skip-git", api_url=base_url)
    assert result.returncode == exit_code, result.stderr
    assert message in one_line(result.stdout if exit_code == 0 else result.stderr)
    assert len(received) == requests
    # Every attempt carries the key and the identical body, so the API lands one event.
    assert all(request == received[0] for request in received)
    assert received[0]["key"] == API_KEY


# --- change failures -----------------------------------------------------------------


def test_change_failure_marks_by_id_or_by_version_and_clears_with_stable(
    api: str, warehouse: sa.Engine
) -> None:
    for identifier, version in (("d-1", "1.0"), ("d-2", "1.1")):
        accepted_id(
            dora(
                *DEPLOYMENT, f"--id={identifier}", f"--version={version}", "--skip-git", api_url=api
            )
        )
    by_id = dora(
        "change-failure",
        "--id=d-1",
        "--remediation-type=rollforward",
        "--remediation-version=1.1",
        api_url=api,
    )
    assert accepted_id(by_id) == "d-1"
    by_version = dora("change-failure", "--service=shop", "--version=1.1", api_url=api)
    assert accepted_id(by_version) == "d-2"
    assert accepted_id(dora("change-failure", "--id=d-1", "--stable", api_url=api)) == "d-1"
    with warehouse.connect() as connection:
        rows = connection.execute(
            sa.select(
                api_deployments.c.deployment_id,
                api_deployments.c.change_failure,
                api_deployments.c.remediation_by,
            ).order_by(api_deployments.c.deployment_id)
        ).all()
    assert [tuple(row) for row in rows] == [("d-1", False, None), ("d-2", True, None)]
    unknown = dora("change-failure", "--service=shop", "--version=9", api_url=api)
    assert unknown.returncode == 1
    assert "9" in one_line(unknown.stderr)


def test_change_failure_flags_must_name_one_deployment_and_a_whole_remedy(
    closed_port_url: str,
) -> None:
    for arguments in (
        ("--service=shop",),
        ("--id=d-1", "--version=1"),
        ("--id=d-1", "--remediation-type=rollback"),
        ("--id=d-1", "--remediation-id=d-2"),
    ):
        result = dora("change-failure", *arguments, api_url=closed_port_url)
        assert result.returncode == 2, arguments
        assert "change-failure" in result.stderr
    dry = dora(
        "change-failure",
        "--id=d-1",
        "--remediation-type=rollback",
        "--remediation-id=d-0",
        "--dry-run",
        api_url=closed_port_url,
    )
    assert json.loads(dry.stdout) == {
        "data": {
            "attributes": {
                "change_failure": True,
                "remediation": {"id": "d-0", "type": "rollback"},
            }
        }
    }
