"""Every warehouse table, as SQLAlchemy Core metadata (the Alembic migrations create them).

Landing tables hold what the connectors received, close to the source. The
`dora_*` tables are the downstream contract of DESIGN.md: their names and
columns are fixed. `service`, `team` and `env` are `''` rather than NULL so
that they can be real primary-key columns that group the same everywhere.
The `*_day` columns are the UTC day of a timestamp, stored so that metric
queries group and filter on an indexed column instead of a per-row function.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _key(name: str) -> sa.Column:
    return sa.Column(name, sa.String(255), nullable=False, server_default="")


def _optional(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=True)


def _deployment() -> list[sa.Column]:
    """What a deployment is, in landing and normalized form alike."""
    return [
        sa.Column("deployment_id", sa.String(255), primary_key=True),
        _key("service"),
        _key("team"),
        _key("env"),
        _optional("version"),
        _optional("commit_sha", 64),
        _optional("repository_url", 2048),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    ]


# --- landing: event API ---------------------------------------------------------------

api_deployments = sa.Table(
    "api_deployments",
    metadata,
    *_deployment(),
    sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("change_failure", sa.Boolean, nullable=False, server_default=sa.false()),
    _optional("remediation_type", 32),
    _optional("remediation_ref"),
    # 'id' or 'version': what `remediation_ref` names.
    _optional("remediation_by", 16),
    # When a PATCH last said change failure or stable; NULL: never patched (left to detection).
    sa.Column("patched_at", sa.DateTime, nullable=True),
    sa.Column("deleted_at", sa.DateTime, nullable=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)

api_failures = sa.Table(
    "api_failures",
    metadata,
    sa.Column("failure_id", sa.String(255), primary_key=True),
    _key("team"),
    _key("env"),
    _optional("name", 1024),
    _optional("severity"),
    _optional("version"),
    _optional("commit_sha", 64),
    _optional("repository_url", 2048),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("deleted_at", sa.DateTime, nullable=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)

# One row per service a failure names; a team-only failure has one row with service ''.
api_failure_services = sa.Table(
    "api_failure_services",
    metadata,
    sa.Column(
        "failure_id",
        sa.String(255),
        sa.ForeignKey("api_failures.failure_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("service", sa.String(255), primary_key=True),
)

# --- landing: PagerDuty ---------------------------------------------------------------


def _incident_state() -> list[sa.Column]:
    """What one observation of a PagerDuty incident records, by pull or by webhook."""
    return [
        sa.Column("incident_id", sa.String(64), primary_key=True),
        sa.Column("incident_number", sa.Integer, nullable=True),
        _optional("title", 1024),
        sa.Column("status", sa.String(32), nullable=False),
        _optional("urgency", 32),
        _optional("priority"),
        _optional("service_id", 64),
        _optional("service_name"),
        sa.Column("teams", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        _optional("html_url", 2048),
        sa.Column("observed_at", sa.DateTime, nullable=False),
    ]


# `observed_at` is when the pull read the incident: the change marker `dora_incidents` reads.
pagerduty_incidents = sa.Table(
    "pagerduty_incidents",
    metadata,
    *_incident_state(),
    sa.Column("created_day", sa.Date, nullable=False, index=True),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Index("ix_pagerduty_incidents_observed_at", "observed_at"),
)

pagerduty_webhook_deliveries = sa.Table(
    "pagerduty_webhook_deliveries",
    metadata,
    sa.Column("webhook_id", sa.String(255), primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("incident_id", sa.String(64), nullable=True, index=True),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
)

# Incident state folded from webhook deliveries (latest event by occurred_at wins).
pagerduty_webhook_incidents = sa.Table(
    "pagerduty_webhook_incidents",
    metadata,
    *_incident_state(),
    # When the fold last wrote the row: the change marker `dora_incidents` reads.
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)

# Watermarks of incremental readers (e.g. which landed events were already taken up).
ingest_state = sa.Table(
    "ingest_state",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


# --- git ---------------------------------------------------------------------------------

git_repositories = sa.Table(
    "git_repositories",
    metadata,
    sa.Column("repository_url", sa.String(2048), primary_key=True),
    sa.Column("synced_at", sa.DateTime, nullable=True, doc="Last successful clone or fetch."),
    sa.Column("error", sa.Text, nullable=True, doc="Why the last attempt failed (no secrets)."),
    sa.Column("attempted_at", sa.DateTime, nullable=False),
    sa.Column("shallow", sa.Boolean, nullable=False, server_default=sa.false()),
)

git_commits = sa.Table(
    "git_commits",
    metadata,
    sa.Column("repository_url", sa.String(2048), primary_key=True),
    sa.Column("commit_sha", sa.String(64), primary_key=True),
    sa.Column("parents", sa.Text, nullable=False, doc="Parent SHAs, space-separated."),
    sa.Column("authored_at", sa.DateTime, nullable=False, doc="Author date (UTC)."),
    sa.Column("committed_at", sa.DateTime, nullable=False, doc="Committer date (UTC)."),
    sa.Column(
        "generation",
        sa.Integer,
        nullable=False,
        doc="1 + the largest generation of its parents (1 for a root or a shallow boundary).",
    ),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
)

# --- normalized: the downstream contract ----------------------------------------------

dora_deployments = sa.Table(
    "dora_deployments",
    metadata,
    *_deployment(),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("change_failure", sa.Boolean, nullable=False, server_default=sa.false()),
    _optional("remediation_type", 32),
    sa.Column("ingested_at", sa.DateTime, nullable=False),
    sa.Column("finished_day", sa.Date, nullable=False),
    sa.Column(
        "change_failure_reason",
        sa.String(16),
        nullable=True,
        doc="Why it is a change failure: manual, rollback, rollforward or incident (first wins).",
    ),
    sa.Column(
        "is_rollback",
        sa.Boolean,
        nullable=False,
        server_default=sa.false(),
        doc="It redeployed what an earlier deployment did (or a PATCH named it a rollback).",
    ),
    sa.Column(
        "is_rollforward",
        sa.Boolean,
        nullable=False,
        server_default=sa.false(),
        doc="Its version or a tag matches a rollforward pattern (or a PATCH named it one).",
    ),
    sa.Column(
        "remediation_deployment_id",
        sa.String(255),
        nullable=True,
        doc="The rollback, rollforward or PATCH-named deployment that remedied this failure.",
    ),
    sa.Column(
        "recovered_at",
        sa.DateTime,
        nullable=True,
        doc="When the failure was remedied; NULL while not recovered.",
    ),
    sa.Column("recovered_day", sa.Date, nullable=True, doc="UTC day of recovered_at (indexed)."),
    # The PATCH as landed (JSON), an input of the classification; NULL: never patched.
    sa.Column("change_failure_patch", sa.Text, nullable=True),
    sa.Index("ix_dora_deployments_finished_day", "finished_day", "service", "team", "env"),
    sa.Index("ix_dora_deployments_recovered_day", "recovered_day", "service", "team", "env"),
    sa.Index("ix_dora_deployments_sequence", "service", "env"),
    sa.Index("ix_dora_deployments_ingested_at", "ingested_at"),
    # Partial: only the rows the change-failure checks can name (revision 0007).
    *(
        sa.Index(name, *columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))
        for name, columns, where in (
            (
                "ix_dora_deployments_recovered_before_finished",
                ["deployment_id"],
                "recovered_at < finished_at",
            ),
            (
                "ix_dora_deployments_change_failure_reason",
                ["change_failure_reason", "remediation_deployment_id"],
                "change_failure_reason IS NOT NULL",
            ),
            (
                "ix_dora_deployments_without_sha_or_version",
                ["service"],
                "commit_sha IS NULL AND version IS NULL",
            ),
        )
    ),
)

dora_incidents = sa.Table(
    "dora_incidents",
    metadata,
    sa.Column("incident_id", sa.String(255), primary_key=True),
    sa.Column("service", sa.String(255), primary_key=True, server_default=""),
    _key("team"),
    _key("env"),
    _optional("severity"),
    _optional("name", 1024),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("source", sa.String(32), nullable=False),
    _optional("source_url", 2048),
    _optional("commit_sha", 64),
    _optional("version"),
    sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("ingested_at", sa.DateTime, nullable=False),
    sa.Column("started_day", sa.Date, nullable=False),
    sa.Column("finished_day", sa.Date, nullable=True),
    sa.Index("ix_dora_incidents_started_day", "started_day", "service", "team", "env"),
    sa.Index("ix_dora_incidents_finished_day", "finished_day", "service", "team", "env"),
    sa.Index("ix_dora_incidents_sequence", "service", "env"),
)

# Which deployment each incident (per affected service) is attributed to.
dora_incident_deployments = sa.Table(
    "dora_incident_deployments",
    metadata,
    sa.Column("incident_id", sa.String(255), primary_key=True),
    sa.Column("service", sa.String(255), primary_key=True, index=True),
    sa.Column(
        "deployment_id",
        sa.String(255),
        nullable=False,
        index=True,
        doc="The deployment of the incident's service and env it is attributed to.",
    ),
    sa.Column(
        "method",
        sa.String(16),
        nullable=False,
        doc="commit (same SHA), version (same version) or preceding (within the window).",
    ),
    sa.Column(
        "lag_seconds",
        sa.Float,
        nullable=False,
        doc="Incident start minus deployment finish.",
    ),
)

# (service, env) sequences whose deployments or incidents changed since they were last
# classified (see dora_assets.change_failures).
dora_deployment_commits = sa.Table(
    "dora_deployment_commits",
    metadata,
    sa.Column("deployment_id", sa.String(255), primary_key=True),
    sa.Column("commit_sha", sa.String(64), primary_key=True),
    sa.Column("repository_url", sa.String(2048), nullable=False),
    sa.Column("authored_at", sa.DateTime, nullable=False, doc="Author date: survives rebases."),
    sa.Column(
        "lead_time_seconds",
        sa.Float,
        nullable=False,
        doc="The deployment's finished_at - authored_at.",
    ),
)

# What each deployment with git resolved to, and why none when none (see
# dora_assets.lead_time.evaluate): the warning checks and the retries read it.
deployment_commit_ranges = sa.Table(
    "deployment_commit_ranges",
    metadata,
    sa.Column("deployment_id", sa.String(255), primary_key=True),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("env", sa.String(255), nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=False),
    sa.Column("repository_url", sa.String(2048), nullable=True),
    sa.Column("previous_deployment_id", sa.String(255), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False, index=True),
    sa.Column("commits", sa.Integer, nullable=False),
    sa.Column("finished_day", sa.Date, nullable=False),
    sa.Column("evaluated_at", sa.DateTime, nullable=False),
)

changed_sequences = sa.Table(
    "changed_sequences",
    metadata,
    sa.Column("service", sa.String(255), primary_key=True),
    sa.Column("env", sa.String(255), primary_key=True),
    sa.Column("changed_at", sa.DateTime, nullable=False),
)

# Metric days whose inputs changed since they were last built (see dora_assets.changed_days).
metric_changed_days = sa.Table(
    "metric_changed_days",
    metadata,
    sa.Column("metric", sa.String(255), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("changed_at", sa.DateTime, nullable=False),
)

# --- metrics --------------------------------------------------------------------------


def _metric_keys() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
    ]


dora_change_failure_rate_daily = sa.Table(
    "dora_change_failure_rate_daily",
    metadata,
    *_metric_keys(),
    sa.Column("deployments", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("change_failure_rate", sa.Float, nullable=True),
)

dora_time_to_restore_daily = sa.Table(
    "dora_time_to_restore_daily",
    metadata,
    *_metric_keys(),
    sa.Column("resolved_incidents", sa.Integer, nullable=False),
    sa.Column("total_seconds", sa.Float, nullable=False),
    sa.Column("mean_seconds", sa.Float, nullable=False),
    sa.Column("median_seconds", sa.Float, nullable=False),
    sa.Column("p90_seconds", sa.Float, nullable=False),
    sa.Column("max_seconds", sa.Float, nullable=False),
)


dora_change_failures_daily = sa.Table(
    "dora_change_failures_daily",
    metadata,
    *_metric_keys(),
    sa.Column("deployments", sa.Integer, nullable=False, doc="Deployments finished that day."),
    sa.Column("change_failures", sa.Integer, nullable=False, doc="Of those, change failures."),
    sa.Column("rollbacks", sa.Integer, nullable=False, doc="Of those, rollbacks."),
    sa.Column("rollforwards", sa.Integer, nullable=False, doc="Of those, rollforwards."),
    sa.Column(
        "change_failure_rate",
        sa.Float,
        nullable=True,
        doc="change_failures / deployments; NULL without deployments.",
    ),
    sa.Column(
        "change_failure_rate_excluding_rollbacks",
        sa.Float,
        nullable=True,
        doc="change_failures / (deployments - rollbacks), Datadog's earlier denominator.",
    ),
    sa.Column(
        "rework_rate",
        sa.Float,
        nullable=True,
        doc="Deployments that were a rollback or a rollforward / deployments (DORA 2024).",
    ),
)

dora_failed_deployment_recovery_daily = sa.Table(
    "dora_failed_deployment_recovery_daily",
    metadata,
    *_metric_keys(),
    sa.Column(
        "recovered_failures",
        sa.Integer,
        nullable=False,
        doc="Failed deployments recovered that UTC day; recovery = recovered_at - finished_at.",
    ),
    sa.Column("total_seconds", sa.Float, nullable=False),
    sa.Column("mean_seconds", sa.Float, nullable=False),
    sa.Column("median_seconds", sa.Float, nullable=False),
    sa.Column("p90_seconds", sa.Float, nullable=False),
    sa.Column("max_seconds", sa.Float, nullable=False),
)

dora_change_lead_time_daily = sa.Table(
    "dora_change_lead_time_daily",
    metadata,
    *_metric_keys(),
    sa.Column(
        "deployments_with_commits",
        sa.Integer,
        nullable=False,
        doc="Deployments finished that UTC day that shipped at least one commit.",
    ),
    sa.Column("commits", sa.Integer, nullable=False, doc="Commits they shipped."),
    sa.Column("total_seconds", sa.Float, nullable=False, doc="Sum of the commits' lead times."),
    sa.Column("mean_seconds", sa.Float, nullable=False),
    sa.Column("median_seconds", sa.Float, nullable=False, doc="Over commits."),
    sa.Column("p90_seconds", sa.Float, nullable=False, doc="Over commits."),
    sa.Column(
        "median_deployment_seconds",
        sa.Float,
        nullable=False,
        doc="Median over deployments of each one's mean commit lead time (as Datadog).",
    ),
)

# --- report ---------------------------------------------------------------------------


def _level(name: str, of: str) -> sa.Column:
    return sa.Column(
        name,
        sa.String(16),
        nullable=True,
        doc=f"elite|high|medium|low for {of} under `benchmark`; NULL without data.",
    )


dora_summary = sa.Table(
    "dora_summary",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True, doc="org, team or service."),
    sa.Column("name", sa.String(255), primary_key=True, doc="The team or service; '' for the org."),
    sa.Column("window_start", sa.Date, nullable=False, doc="First UTC day of the window."),
    sa.Column("window_end", sa.Date, nullable=False, doc="Last UTC day of the window."),
    sa.Column("benchmark", sa.String(32), nullable=False, doc="dora-2023 or dora-2021."),
    sa.Column("deployments", sa.Integer, nullable=False, doc="Deployments finished in the window."),
    sa.Column("deployments_per_week", sa.Float, nullable=False, doc="deployments / (days / 7)."),
    sa.Column(
        "deployment_days_per_week",
        sa.Float,
        nullable=False,
        doc="Distinct UTC days with a deployment / (days / 7); rates deployment frequency.",
    ),
    sa.Column(
        "median_lead_time_seconds",
        sa.Float,
        nullable=True,
        doc="Median over the commits shipped by deployments finished in the window.",
    ),
    sa.Column(
        "change_failure_rate",
        sa.Float,
        nullable=True,
        doc="sum(change_failures) / sum(deployments) of dora_change_failures_daily.",
    ),
    sa.Column(
        "incident_change_failure_rate",
        sa.Float,
        nullable=True,
        doc="sum(failures) / sum(deployments) of dora_change_failure_rate_daily.",
    ),
    sa.Column(
        "rework_rate",
        sa.Float,
        nullable=True,
        doc="Deployments that were a rollback or a rollforward / deployments.",
    ),
    sa.Column(
        "median_recovery_seconds",
        sa.Float,
        nullable=True,
        doc="Median over failed deployments recovered in the window.",
    ),
    sa.Column(
        "median_time_to_restore_seconds",
        sa.Float,
        nullable=True,
        doc="Median over incidents resolved in the window (each incident once per scope).",
    ),
    _level("deployment_frequency_level", "deployment_days_per_week"),
    _level("lead_time_level", "median_lead_time_seconds"),
    _level("change_failure_rate_level", "change_failure_rate"),
    _level("recovery_level", "median_recovery_seconds"),
    _level("time_to_restore_level", "median_time_to_restore_seconds"),
    _level("rework_rate_level", "rework_rate (no published levels: always NULL)"),
)
