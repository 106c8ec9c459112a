"""`dora deployment` and `dora failure`: send one event to the event API.

Where and with which key come from `DORA_API_URL` and `DORA_API_KEY` only: CI
systems hand secrets over as environment variables, and a key given as a flag
would show up in process listings and shell history.

Timestamps go out as integer Unix seconds. That body is also valid for
Datadog's own DORA API (which takes integers only), its meaning is plain in a
`--dry-run`, and DORA metrics never need sub-second precision (truncating both
ends keeps their order, so a valid event stays valid).
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote

from connectors import gitinfo, settings
from connectors.client import (
    DEPLOYMENT_PATH,
    DEPLOYMENTS_PATH,
    FAILURE_PATH,
    DeliveryError,
    EventClient,
    event_body,
)
from connectors.timestamps import TimestampError, from_epoch_number, from_iso8601

_UNIX_TIME = re.compile(r"^-?\d+(\.\d+)?$")
_TIME_HELP = "Unix seconds or ISO 8601 (UTC unless it has an offset), e.g. 2025-01-31T12:00:00Z"


def _unix_seconds(text: str) -> int:
    """An argparse type: Unix time (s, ms or ns by magnitude, fractions dropped) or ISO 8601."""
    value = text.strip()
    try:
        moment = (
            from_epoch_number(int(Decimal(value)))
            if _UNIX_TIME.match(value)
            else from_iso8601(value)
        )
    except TimestampError as error:
        raise argparse.ArgumentTypeError(f"{error}, or Unix seconds") from None
    return calendar.timegm(moment.timetuple())


def _add_time_options(parser: argparse.ArgumentParser, finished_help: str) -> None:
    parser.add_argument("--started-at", required=True, type=_unix_seconds, help=_TIME_HELP)
    parser.add_argument("--finished-at", type=_unix_seconds, help=finished_help)


def _add_shared_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="environment, e.g. prod")
    parser.add_argument("--version", help="version of the service that was running")
    parser.add_argument("--id", help="event id; sending the same id again updates the event")
    git = parser.add_argument_group(
        "git", "default: CI variables (GITHUB_SHA, CI_COMMIT_SHA, ...), else the current checkout"
    )
    git.add_argument("--git-repository-url", metavar="URL", help="needs --git-commit-sha")
    git.add_argument("--git-commit-sha", metavar="SHA", help="needs --git-repository-url")
    git.add_argument("--skip-git", action="store_true", help="send no git information")
    parser.add_argument(
        "--custom-tags", nargs="+", action="extend", metavar="KEY:VALUE", help="up to 100 tags"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the JSON body instead of sending it"
    )


def register(commands: argparse._SubParsersAction) -> None:
    deployment = commands.add_parser(
        "deployment",
        help="send one deployment event",
        description="Send one deployment event to the event API (DORA_API_URL, DORA_API_KEY).",
    )
    deployment.add_argument("--service", required=True)
    _add_time_options(deployment, finished_help=f"default: now; {_TIME_HELP}")
    deployment.add_argument("--team")
    _add_shared_options(deployment)
    deployment.set_defaults(run=partial(run_deployment, deployment))

    failure = commands.add_parser(
        "failure",
        help="send one failure (incident) event",
        description="Send one failure (incident) event to the event API "
        "(DORA_API_URL, DORA_API_KEY). Send it again with --finished-at to resolve it.",
    )
    failure.add_argument(
        "--service",
        action="append",
        dest="services",
        metavar="SERVICE",
        help="an affected service; repeatable",
    )
    failure.add_argument("--team", help="the owning team; needed when no --service is given")
    _add_time_options(failure, finished_help=f"omit while unresolved; {_TIME_HELP}")
    failure.add_argument("--severity", help="e.g. SEV-1")
    failure.add_argument("--name", help="a short title")
    _add_shared_options(failure)
    failure.set_defaults(run=partial(run_failure, failure))

    change = commands.add_parser(
        "change-failure",
        help="mark a deployment as a change failure (or as stable)",
        description="Mark a deployment, by --id or as the latest of --service/--env/--version,"
        " as a change failure, with how it was remedied; --stable clears it and keeps"
        " automatic detection from marking it (DORA_API_URL, DORA_API_KEY).",
    )
    target = change.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", help="the deployment's id")
    target.add_argument("--service", help="with --version (and --env): its latest deployment")
    change.add_argument("--version", help="the version the deployment deployed (with --service)")
    change.add_argument("--env", help="environment of the deployment (with --service)")
    verdict = change.add_mutually_exclusive_group()
    verdict.add_argument("--stable", action="store_true", help="not a change failure")
    verdict.add_argument(
        "--remediation-type", choices=["rollback", "rollforward"], help="how it was remedied"
    )
    remedy = change.add_mutually_exclusive_group()
    remedy.add_argument("--remediation-id", metavar="ID", help="the remedying deployment's id")
    remedy.add_argument("--remediation-version", metavar="VERSION", help="or its version")
    change.add_argument(
        "--dry-run", action="store_true", help="print the JSON body instead of sending it"
    )
    change.set_defaults(run=partial(run_change_failure, change))


def _git_attribute(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> dict | None:
    url, sha = arguments.git_repository_url, arguments.git_commit_sha
    if arguments.skip_git:
        if url is not None or sha is not None:
            parser.error("--skip-git contradicts --git-repository-url/--git-commit-sha; drop one")
        return None
    if (url is None) != (sha is None):
        given, missing = (
            ("--git-repository-url", "--git-commit-sha")
            if sha is None
            else ("--git-commit-sha", "--git-repository-url")
        )
        parser.error(
            f"{given} needs {missing} as well; pass both, neither (read from the repository) "
            "or --skip-git"
        )
    if url is not None:
        return {"commit_sha": sha, "repository_url": url}
    try:
        found = gitinfo.detect()
    except gitinfo.GitInfoError as error:
        # The event counts in every metric without git; only the link to the code is lost.
        print(f"{parser.prog}: warning: sending without git information: {error}", file=sys.stderr)
        return None
    return {"commit_sha": found.commit_sha, "repository_url": found.repository_url}


def _optional_attributes(
    parser: argparse.ArgumentParser, arguments: argparse.Namespace, names: tuple[str, ...]
) -> dict[str, Any]:
    attributes = {name: getattr(arguments, name) for name in names}
    attributes["git"] = _git_attribute(parser, arguments)
    attributes["custom_tags"] = arguments.custom_tags
    return {name: value for name, value in attributes.items() if value is not None}


def run_deployment(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    attributes = {
        "service": arguments.service,
        "started_at": arguments.started_at,
        # Fixed once here, so every retry sends the same body and lands on the same event.
        "finished_at": (
            arguments.finished_at if arguments.finished_at is not None else int(time.time())
        ),
        **_optional_attributes(parser, arguments, ("env", "team", "version", "id")),
    }
    return _deliver(parser, arguments, DEPLOYMENT_PATH, attributes)


def run_failure(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    if not arguments.services and not arguments.team:
        parser.error("name the affected --service (repeat it for several) or the --team, or both")
    names = ("services", "team", "finished_at", "env", "severity", "name", "version", "id")
    attributes = {
        "started_at": arguments.started_at,
        **_optional_attributes(parser, arguments, names),
    }
    return _deliver(parser, arguments, FAILURE_PATH, attributes)


def run_change_failure(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    if arguments.service and not arguments.version:
        parser.error("--service needs --version: the latest deployment of that version is marked")
    if not arguments.service and (arguments.version or arguments.env):
        parser.error("--version and --env name a deployment with --service; with --id drop them")
    remedy = arguments.remediation_id or arguments.remediation_version
    if bool(arguments.remediation_type) != bool(remedy):
        parser.error(
            "a remediation needs --remediation-type and one of --remediation-id or"
            " --remediation-version"
        )
    attributes: dict[str, Any] = {"change_failure": not arguments.stable}
    if remedy:
        by = "id" if arguments.remediation_id else "version"
        attributes["remediation"] = {"type": arguments.remediation_type, by: remedy}
    if arguments.id:
        path = f"{DEPLOYMENTS_PATH}/{quote(arguments.id, safe='')}"
    else:
        path = DEPLOYMENTS_PATH
        attributes |= {"service": arguments.service, "version": arguments.version}
        if arguments.env:
            attributes["env"] = arguments.env
    return _deliver(parser, arguments, path, attributes, method="PATCH")


def _deliver(
    parser: argparse.ArgumentParser,
    arguments: argparse.Namespace,
    path: str,
    attributes: dict[str, Any],
    method: str = "POST",
) -> int:
    body = event_body(attributes)
    if arguments.dry_run:
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    try:
        max_attempts = settings.cli_max_attempts()
        backoff_seconds = settings.cli_retry_base_seconds()
    except ValueError as error:
        parser.error(str(error))
    api_key = settings.api_key()
    if not api_key:
        print(
            f"{parser.prog}: DORA_API_KEY is not set; export one of the keys in the event "
            "API's DORA_API_KEYS (or use --dry-run to only print the event)",
            file=sys.stderr,
        )
        return 1
    api_url = settings.api_url()
    try:
        with EventClient(
            api_url, api_key, max_attempts=max_attempts, backoff_seconds=backoff_seconds
        ) as client:
            event_id = client.send(path, body, method)
    except DeliveryError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 1
    print(f"{parser.prog}: accepted by {api_url} as id {event_id}")
    return 0
