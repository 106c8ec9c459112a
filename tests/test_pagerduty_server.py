"""The PagerDuty-compatible server answers like api.pagerduty.com, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.serving import serve_in_thread

TOKEN = "server-test-token"
HEADERS = {"Authorization": f"Token token={TOKEN}"}
NOW = datetime(2025, 6, 15, 12, 0, 0)


@pytest.fixture
def store() -> IncidentStore:
    store = IncidentStore()
    store.add(datetime(2025, 6, 1, 8, 0, 0), title="fresh", urgency="high")
    store.add(datetime(2025, 3, 1, 8, 0, 0), title="old", urgency="low")
    resolved = store.add(datetime(2025, 6, 10, 9, 30, 0), title="resolved")
    store.resolve(resolved.id, datetime(2025, 6, 10, 10, 0, 0))
    return store


def serve(store: IncidentStore, **options: object) -> Iterator[httpx.Client]:
    app = build_app(store, ServerOptions(api_token=TOKEN, now=lambda: NOW, **options))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=HEADERS) as http:
        yield http


@pytest.fixture
def http(store: IncidentStore) -> Iterator[httpx.Client]:
    yield from serve(store)


def titles(response: httpx.Response) -> list[str]:
    return [incident["title"] for incident in response.json()["incidents"]]


def test_default_window_is_the_last_30_days_sorted_by_creation(http: httpx.Client) -> None:
    response = http.get("/incidents")
    assert response.status_code == 200
    assert titles(response) == ["fresh", "resolved"]
    assert response.json()["total"] is None
    assert response.json()["more"] is False


def test_since_until_filter_on_created_at_and_total_only_on_request(http: httpx.Client) -> None:
    params = {"since": "2025-02-01T00:00:00Z", "until": "2025-06-10T09:30:00Z", "total": "true"}
    body = http.get("/incidents", params=params).json()
    assert [i["title"] for i in body["incidents"]] == ["old", "fresh"]  # until is exclusive
    assert body["total"] == 2
    first = body["incidents"][0]
    assert first["created_at"] == "2025-03-01T08:00:00Z"
    assert first["type"] == "incident"
    assert first["service"] == {
        "id": "PSVC001",
        "type": "service_reference",
        "summary": "Checkout API",
        "self": "https://compat.pagerduty.test/api/services/PSVC001",
        "html_url": "https://compat.pagerduty.test/services/PSVC001",
    }
    assert first["resolved_at"] is None


def test_more_than_six_months_is_rejected(http: httpx.Client) -> None:
    ok = http.get("/incidents", params={"since": "2025-01-31T00:00:00Z", "until": "2025-07-31"})
    assert ok.status_code == 200
    too_long = http.get(
        "/incidents", params={"since": "2025-01-31T00:00:00Z", "until": "2025-07-31T00:00:01Z"}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == 2005


def test_offset_plus_limit_over_10000_is_error_2002(http: httpx.Client) -> None:
    assert http.get("/incidents", params={"offset": 9900, "limit": 100}).status_code == 200
    response = http.get("/incidents", params={"offset": 9901, "limit": 100})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 2002
    assert error["message"] == "Arguments Caused Error"
    assert error["errors"][0].startswith("Offset+limit exceeds maximum allowed value of 10000")


def test_filters_paging_and_sorting(http: httpx.Client) -> None:
    everything = {"date_range": "all", "sort_by": "created_at:desc"}
    assert titles(http.get("/incidents", params=everything)) == ["resolved", "fresh", "old"]
    open_only = {"date_range": "all", "statuses[]": ["triggered", "acknowledged"]}
    assert titles(http.get("/incidents", params=open_only)) == ["old", "fresh"]
    low = {"date_range": "all", "urgencies[]": "low"}
    assert titles(http.get("/incidents", params=low)) == ["old"]
    other_service = {"date_range": "all", "service_ids[]": "PSVC999"}
    assert titles(http.get("/incidents", params=other_service)) == []
    page = http.get("/incidents", params={"date_range": "all", "limit": 1, "offset": 1}).json()
    assert [i["title"] for i in page["incidents"]] == ["fresh"]
    assert page["more"] is True
    assert page["limit"] == 1
    assert page["offset"] == 1


def test_time_zone_renders_times_in_that_zone(http: httpx.Client) -> None:
    body = http.get("/incidents", params={"time_zone": "Europe/Paris"}).json()
    assert body["incidents"][0]["created_at"] == "2025-06-01T10:00:00+02:00"


def test_get_one_incident_and_unknown_id(http: httpx.Client, store: IncidentStore) -> None:
    incident = store.add(datetime(2025, 6, 2), priority=("PPRIO01", "P1"))
    store.resolve(incident.id, datetime(2025, 6, 2, 1))
    store.reopen(incident.id, datetime(2025, 6, 2, 2))
    store.resolve(incident.id, datetime(2025, 6, 2, 3))
    body = http.get(f"/incidents/{incident.id}").json()["incident"]
    assert body["status"] == "resolved"
    assert body["resolved_at"] == "2025-06-02T03:00:00Z"
    assert body["priority"] == {"id": "PPRIO01", "type": "priority", "summary": "P1"}
    assert http.get("/incidents/QNOPE").status_code == 404


def test_wrong_token_is_401_like_pagerduty(http: httpx.Client) -> None:
    response = http.get("/incidents", headers={"Authorization": "Token token=wrong"})
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "Authentication failed", "code": 2006}}


def test_rate_limit_headers_and_429(store: IncidentStore) -> None:
    for http in serve(store, rate_limit_per_minute=60, rate_limit_burst=2):
        first = http.get("/incidents")
        assert first.headers["ratelimit-limit"] == "60"
        assert first.headers["ratelimit-remaining"] == "1"
        assert http.get("/incidents").headers["ratelimit-remaining"] == "0"
        limited = http.get("/incidents")
        assert limited.status_code == 429
        assert limited.json() == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
        assert limited.headers["ratelimit-remaining"] == "0"
        assert limited.headers["ratelimit-reset"] == "1"


@pytest.mark.parametrize(
    ("kind", "status"), [("503", 503), ("429", 429), ("truncated", 200), ("timeout", 200)]
)
def test_fault_injection(store: IncidentStore, kind: str, status: int) -> None:
    for http in serve(store, fault_rate=1.0, fault_kinds=(kind,), timeout_fault_s=0.2):
        response = http.get("/incidents")
        assert response.status_code == status
        assert "ratelimit-reset" not in response.headers
        if kind == "truncated":
            with pytest.raises(ValueError):
                response.json()
        if kind == "timeout":
            with pytest.raises(httpx.ReadTimeout):
                http.get("/incidents", timeout=0.05)


def test_hook_changes_the_store_between_pages(store: IncidentStore) -> None:
    def add_one_per_page(target: IncidentStore, request_number: int) -> None:
        target.add(NOW - timedelta(minutes=request_number), title=f"new {request_number}")

    for http in serve(store, before_list_page=add_one_per_page):
        assert titles(http.get("/incidents", params={"date_range": "all"}))[-1] == "new 1"
        assert len(http.get("/incidents", params={"date_range": "all"}).json()["incidents"]) == 5


def test_generator_is_deterministic_and_spread() -> None:
    since, until = datetime(2025, 1, 1), datetime(2025, 2, 1)
    first, second = IncidentStore(), IncidentStore()
    one = first.generate(500, since, until, seed=7)
    two = second.generate(500, since, until, seed=7)
    assert [(i.created_at, i.service, i.status) for i in one] == [
        (i.created_at, i.service, i.status) for i in two
    ]
    assert all(since <= i.created_at < until for i in one)
    assert {i.service[1] for i in one} >= {"Checkout API", "Search API", "Identity"}
    assert {i.status for i in one} == {"triggered", "acknowledged", "resolved"}
    assert {i.urgency for i in one} == {"high", "low"}
