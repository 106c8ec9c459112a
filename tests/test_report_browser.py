"""The HTML report in a real headless browser (Debian's chromium; `.ci/run` installs it).

Chromium is pointed at a recording proxy on loopback for every scheme and host, so any
request the page makes (a CDN script, a web font, an image) reaches the proxy and is
recorded; the report must make none. A page that does fetch something proves the
proxy sees it. The screenshot goes to the test's temporary folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from incremental_support import refresh_all
from PIL import Image
from test_summary import TEAMS, land

from connectors.cli import main
from connectors.config import DoraConfig
from connectors.events.store import EventStore
from connectors.warehouse import open_warehouse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed; .ci/run installs Debian's chromium"
)
# Chromium's own traffic (network time, component updates, sign-in) is switched off or
# sent nowhere, so whatever reaches the proxy came from the page.
NOWHERE = "http://127.0.0.1:9"
QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    # PreconnectToSearch and the Google base URL: Chromium 150 preconnects to the default
    # search engine and asks www.google.com about its AI mode at start-up.
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,"
    "PreconnectToSearch",
    f"--gaia-url={NOWHERE}",
    f"--lso-url={NOWHERE}",
    f"--google-apis-url={NOWHERE}",
    f"--google-base-url={NOWHERE}",
    f"--component-updater=url-source={NOWHERE}",
]


class RecordingProxy:
    """Accepts connections on loopback, keeps each request line, answers 502."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    first_line = connection.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first_line = b"?"
                self.requests.append(first_line.decode(errors="replace"))
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recording = RecordingProxy()
    yield recording
    recording.close()


def chromium(page: Path, proxy: RecordingProxy, profile: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [
            str(CHROMIUM),
            *QUIET,
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            "--proxy-bypass-list=<-loopback>",
            "--virtual-time-budget=3000",
            *arguments,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout


def test_the_report_renders_offline_with_every_team(
    tmp_path: Path, sqlite_url: str, proxy: RecordingProxy, monkeypatch
) -> None:
    monkeypatch.setenv("DORA_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("DORA_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text(
        "services: {checkout: {team: payments}, billing: {team: payments},"
        " search: {team: discovery}}\n"
    )
    engine = open_warehouse(sqlite_url)
    land(EventStore(engine))
    refresh_all(engine, DoraConfig(service_teams=TEAMS))
    engine.dispose()
    report = tmp_path / "report.html"
    assert main(["report", "--out", str(report), "--window-days", "14"]) == 0

    dom = chromium(report, proxy, tmp_path / "profile-dom", "--dump-dom")
    screenshot = tmp_path / "report.png"
    chromium(
        report,
        proxy,
        tmp_path / "profile-shot",
        "--window-size=1400,1800",
        f"--screenshot={screenshot}",
    )

    assert proxy.requests == []
    for team in ("payments", "discovery", "platform"):
        assert f"Team {team}" in dom
    assert dom.count("<svg") >= 4
    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    # Not blank: text, rules, level badges and chart lines in many shades.
    assert colours is not None and len(colours) > 50


def test_the_proxy_does_see_a_page_that_fetches(tmp_path: Path, proxy: RecordingProxy) -> None:
    page = tmp_path / "fetches.html"
    page.write_text('<!doctype html><img src="http://cdn.example.invalid/logo.png">')
    chromium(page, proxy, tmp_path / "profile", "--dump-dom")
    assert any("cdn.example.invalid" in line for line in proxy.requests)
