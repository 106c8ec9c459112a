"""Event API request bodies (Datadog's DORA shapes), validated into normalized events.

The pydantic models are both the validator and the OpenAPI description of the
bodies. Validation is strict (no silent coercion of `1` into `"1"`), and every
problem names its field as a JSON pointer (`/data/attributes/<field>`), so a
sender can fix the exact value. The limits also keep every accepted value
storable on both databases (column lengths, no NUL characters), which is what
makes "never a 500 for any input" hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from connectors.git.command import shown_url
from connectors.timestamps import TimestampError, parse_timestamp

MAX_CUSTOM_TAGS = 100
MAX_SERVICES = 100
_SHA = re.compile(r"^[0-9a-fA-F]{40,64}$")
_TAG = re.compile(r"^[^:]+:.+$", re.DOTALL)


# --- normalized events ----------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentEvent:
    """One deployment, as stored; `env`/`team` are '' when absent."""

    service: str
    started_at: datetime
    finished_at: datetime
    env: str = ""
    team: str = ""
    version: str | None = None
    commit_sha: str | None = None
    repository_url: str | None = None
    custom_tags: tuple[str, ...] = ()
    id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "custom_tags", tuple(self.custom_tags))


@dataclass(frozen=True)
class FailureEvent:
    """One failure (incident); it names services, a team, or both."""

    started_at: datetime
    services: tuple[str, ...] = ()
    team: str = ""
    env: str = ""
    finished_at: datetime | None = None
    name: str | None = None
    severity: str | None = None
    version: str | None = None
    commit_sha: str | None = None
    repository_url: str | None = None
    custom_tags: tuple[str, ...] = ()
    id: str | None = None

    def __post_init__(self) -> None:
        # A set of services: order and repeats carry no meaning (and must not change the id).
        object.__setattr__(self, "services", tuple(sorted(set(self.services))))
        object.__setattr__(self, "custom_tags", tuple(self.custom_tags))


@dataclass(frozen=True)
class Remediation:
    """How a change failure was remedied: rollback or roll-forward to a deployment id or version."""

    type: Literal["rollback", "rollforward"]
    ref: str
    # Whether `ref` is the remedying deployment's id or the version it deployed.
    by: Literal["id", "version"] = "id"


@dataclass(frozen=True)
class ChangeFailure:
    """The body of `PATCH /api/v2/dora/deployments/{id}`."""

    change_failure: bool
    remediation: Remediation | None = None


# --- problems -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One JSON:API error: which value (JSON pointer) is wrong and what to do about it."""

    pointer: str
    title: str
    detail: str


class InvalidRequest(ValueError):
    """A request body that cannot be accepted; `problems` name every offending field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(problem.detail for problem in problems))
        self.problems = problems


# --- field types ----------------------------------------------------------------------


def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("text", "must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("text", "must be valid Unicode (no lone surrogates)") from None
    return value


def _text(max_length: int, min_length: int = 1) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_storable),
    ]


Name = _text(255)
# `env` and `team` are stored as '' when missing, so an empty one means just that.
KeyPart = _text(255, min_length=0)
LongText = _text(1024)
Url = _text(2048)


def _commit_sha(value: str) -> str:
    if not _SHA.match(value):
        raise PydanticCustomError(
            "commit_sha", "must be a full git commit SHA: 40 to 64 hexadecimal characters"
        )
    return value.lower()


CommitSha = Annotated[str, AfterValidator(_commit_sha)]


def _custom_tag(value: str) -> str:
    if not _TAG.match(value):
        raise PydanticCustomError("custom_tag", "must be a `key:value` string, e.g. `region:eu`")
    return _storable(value)


CustomTag = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_custom_tag)
]
CustomTags = Annotated[list[CustomTag], Field(max_length=MAX_CUSTOM_TAGS)]


def _timestamp(value: object) -> datetime:
    try:
        return parse_timestamp(value)
    except TimestampError as error:
        raise PydanticCustomError("timestamp", str(error)) from None


Timestamp = Annotated[
    datetime,
    PlainValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "description": "Unix time in s, ms, µs or ns"},
                {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
            ]
        }
    ),
]


# --- request models (also the OpenAPI description) -------------------------------------


class _Strict(BaseModel):
    # Unknown fields are ignored, as Datadog does, so richer senders keep working.
    model_config = ConfigDict(strict=True, extra="ignore")


class Git(_Strict):
    commit_sha: CommitSha
    repository_url: Url


class DeploymentAttributes(_Strict):
    service: Name
    started_at: Timestamp
    finished_at: Timestamp
    env: KeyPart | None = None
    team: KeyPart | None = None
    version: Name | None = None
    id: Name | None = None
    git: Git | None = None
    custom_tags: CustomTags | None = None


class FailureAttributes(_Strict):
    started_at: Timestamp
    finished_at: Timestamp | None = None
    services: Annotated[list[Name], Field(max_length=MAX_SERVICES)] | None = None
    team: KeyPart | None = None
    env: KeyPart | None = None
    id: Name | None = None
    name: LongText | None = None
    severity: Name | None = None
    version: Name | None = None
    git: Git | None = None
    custom_tags: CustomTags | None = None


class RemediationAttributes(_Strict):
    type: Literal["rollback", "rollforward"]
    id: Name | None = None
    version: Name | None = None


class ChangeFailureAttributes(_Strict):
    change_failure: bool
    remediation: RemediationAttributes | None = None


class LatestDeploymentChangeFailureAttributes(ChangeFailureAttributes):
    """Datadog's `PATCH /api/v2/dora/deployments`: the deployment is named by what it was."""

    service: Name
    env: Name | None = None
    version: Name


class DeploymentData(_Strict):
    attributes: DeploymentAttributes


class FailureData(_Strict):
    attributes: FailureAttributes


class ChangeFailureData(_Strict):
    attributes: ChangeFailureAttributes


class DeploymentRequest(_Strict):
    data: DeploymentData


class FailureRequest(_Strict):
    data: FailureData


class LatestDeploymentChangeFailureData(_Strict):
    attributes: LatestDeploymentChangeFailureAttributes


class LatestDeploymentChangeFailureRequest(_Strict):
    data: LatestDeploymentChangeFailureData


class ChangeFailureRequest(_Strict):
    data: ChangeFailureData


# --- parsing --------------------------------------------------------------------------

_Request = TypeVar("_Request", bound=BaseModel)
_ATTRIBUTES = "/data/attributes"
_EXAMPLE = 'a JSON object such as {"data": {"attributes": {...}}}'


def _pointer(location: Iterable[int | str]) -> str:
    parts = (str(part).replace("~", "~0").replace("/", "~1") for part in location)
    return "".join(f"/{part}" for part in parts)


def _field_name(location: tuple[int | str, ...]) -> str:
    name = ""
    for part in location[2:] if location[:2] == ("data", "attributes") else location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _problem(error: Any) -> Problem:
    location = tuple(error["loc"])
    name = _field_name(location)
    if error["type"] == "json_invalid":
        return Problem("", "Malformed JSON", f"The body is not valid JSON; send {_EXAMPLE}.")
    if error["type"] == "missing":
        return Problem(_pointer(location), "Missing field", f"`{name}` is required.")
    return Problem(_pointer(location), "Invalid field", f"`{name}` {_message(error)}.")


def _message(error: Any) -> str:
    if error["type"] in ("text", "commit_sha", "custom_tag", "timestamp"):
        return str(error["msg"])
    # pydantic's own messages ("Input should be a valid string") read well after the name.
    message = str(error["msg"])
    return "is invalid: " + message[0].lower() + message[1:]


def _validate(model: type[_Request], body: bytes) -> _Request:
    if not body.strip():
        raise InvalidRequest(
            [Problem("", "Empty body", f"The request body is empty; send {_EXAMPLE}.")]
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise InvalidRequest([_problem(item) for item in error.errors()]) from None


def _check_order(started_at: datetime, finished_at: datetime | None) -> None:
    if finished_at is not None and finished_at < started_at:
        raise InvalidRequest(
            [
                Problem(
                    f"{_ATTRIBUTES}/finished_at",
                    "Invalid field",
                    f"`finished_at` ({finished_at.isoformat()}Z) is before "
                    f"`started_at` ({started_at.isoformat()}Z).",
                )
            ]
        )


def _git_fields(git: Git | None) -> dict[str, str | None]:
    # A token in the URL would otherwise reach every table and mirror name downstream.
    return {
        "commit_sha": git.commit_sha if git else None,
        "repository_url": shown_url(git.repository_url) if git else None,
    }


def parse_deployment(body: bytes) -> DeploymentEvent:
    """Validate a `POST /api/v2/dora/deployment` body."""
    attributes = _validate(DeploymentRequest, body).data.attributes
    _check_order(attributes.started_at, attributes.finished_at)
    return DeploymentEvent(
        service=attributes.service,
        started_at=attributes.started_at,
        finished_at=attributes.finished_at,
        env=attributes.env or "",
        team=attributes.team or "",
        version=attributes.version,
        custom_tags=tuple(attributes.custom_tags or ()),
        id=attributes.id,
        **_git_fields(attributes.git),
    )


def parse_failure(body: bytes) -> FailureEvent:
    """Validate a `POST /api/v2/dora/failure` body."""
    attributes = _validate(FailureRequest, body).data.attributes
    if not attributes.services and not attributes.team:
        raise InvalidRequest(
            [
                Problem(
                    f"{_ATTRIBUTES}/services",
                    "Missing field",
                    "A failure needs `services` (a list of service names) and/or `team`.",
                )
            ]
        )
    _check_order(attributes.started_at, attributes.finished_at)
    return FailureEvent(
        started_at=attributes.started_at,
        finished_at=attributes.finished_at,
        services=tuple(attributes.services or ()),
        team=attributes.team or "",
        env=attributes.env or "",
        name=attributes.name,
        severity=attributes.severity,
        version=attributes.version,
        custom_tags=tuple(attributes.custom_tags or ()),
        id=attributes.id,
        **_git_fields(attributes.git),
    )


@dataclass(frozen=True)
class DeploymentMatch:
    """The latest finished deployment of a service, env and version."""

    service: str
    env: str
    version: str


def parse_change_failure(body: bytes) -> ChangeFailure:
    """Validate a `PATCH /api/v2/dora/deployments/{id}` body."""
    return _change_failure(_validate(ChangeFailureRequest, body).data.attributes)


def parse_latest_deployment_change_failure(body: bytes) -> tuple[DeploymentMatch, ChangeFailure]:
    """Validate a `PATCH /api/v2/dora/deployments` body (service, env, version)."""
    attributes = _validate(LatestDeploymentChangeFailureRequest, body).data.attributes
    match = DeploymentMatch(attributes.service, attributes.env or "", attributes.version)
    return match, _change_failure(attributes)


def _change_failure(attributes: ChangeFailureAttributes) -> ChangeFailure:
    remediation = attributes.remediation
    if remediation is None:
        return ChangeFailure(attributes.change_failure)
    pointer = f"{_ATTRIBUTES}/remediation"
    if not attributes.change_failure:
        raise InvalidRequest(
            [
                Problem(
                    pointer,
                    "Invalid field",
                    "`remediation` applies only to a change failure; "
                    "send `change_failure: true` or leave `remediation` out.",
                )
            ]
        )
    if (remediation.id is None) == (remediation.version is None):
        raise InvalidRequest(
            [
                Problem(
                    pointer,
                    "Invalid field",
                    "`remediation` needs exactly one of `id` (the remedying deployment) "
                    "or `version`.",
                )
            ]
        )
    return ChangeFailure(
        True,
        Remediation(
            remediation.type,
            remediation.id or remediation.version or "",
            by="id" if remediation.id is not None else "version",
        ),
    )


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with `$defs` inlined, to embed in an OpenAPI operation."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
