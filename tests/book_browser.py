"""What the browser tests of the built book share: the build folder, a localhost server, Chromium.

Imported by ``tests/test_static_slider.py`` and ``tests/test_accessibility.py`` (like
``tools_loader``, a plain module beside the tests). Debian's Chromium drives the pages through
playwright, never playwright's own browser download; every request that leaves localhost is
answered empty and recorded, so the tests also prove that the book works offline.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("ISOPLAST_HTML_DIR", ROOT / "_build" / "html"))  # override: another build
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def require(condition: bool, reason: str) -> None:
    """Skip (or, with ``ISOPLAST_REQUIRE_HTML=1`` as in CI, fail) unless ``condition``."""
    if condition:
        return
    if os.environ.get("ISOPLAST_REQUIRE_HTML") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path.split("?")[0] == "/favicon.ico":  # Chromium asks for it on its own
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@contextlib.contextmanager
def serve(directory: Path = HTML):
    """Serve ``directory`` on a free localhost port; yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=5)


@contextlib.contextmanager
def chromium():
    """Debian's headless Chromium through playwright (skipped or failed, by ``require``, if absent)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    require(Path(CHROMIUM).exists() or shutil.which("chromium") is not None, f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_offline(browser, url):
    """Open ``url`` in a new page; returns ``(page, console_errors, outside_requests)``.

    Requests that leave localhost are answered with an empty body and recorded.
    """
    page = browser.new_page()
    errors, external = [], []
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    def route(r):
        host = urlparse(r.request.url).hostname
        if host in ("127.0.0.1", "localhost") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.fulfill(status=200, body="", content_type="text/plain")

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, errors, external
