"""/docs (Swagger UI) and /redoc (ReDoc) work without the internet: every file from the service itself (no absolute
URL in the pages, favicon included), and the pages render the operations in headless Chromium with every
non-loopback host blocked (tests/report/browser.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_adapter.service.app import create_app
from fhir_adapter.service.settings import ServiceSettings
from tests.report.browser import Browser, chromium, in_ci
from tests.service.live import serving

PATHS = ["/v1/evaluate", "/v1/feed", "/v1/jobs"]


@pytest.fixture
def app(make_settings: Callable[..., ServiceSettings]):  # -> FastAPI
    return create_app(make_settings())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_name_no_url_beyond_the_service(app, page: str) -> None:
    with TestClient(app) as client:
        html = client.get(page).text
        assert not re.search(r"(https?:)?//", html), html  # no absolute or protocol-relative URL at all
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(a.endswith("favicon.png") for a in assets) and any(a.endswith(".js") for a in assets)
        for asset in assets:
            r = client.get(asset)
            assert r.status_code == 200 and r.content, asset


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = chromium()
    if exe is None:
        if in_ci():
            pytest.fail("chromium is not installed (CI=true): .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install -y chromium): the browser test is skipped")
    b = Browser(exe)
    yield b
    b.close()


@pytest.mark.parametrize(("page", "script"), [
    ("/docs", "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent.trim())"),
    ("/redoc", "[...document.querySelectorAll('[data-section-id^=\"tag/\"] span, [data-section-id] label')]"
               ".map(e => e.textContent)"),
], ids=["swagger-ui", "redoc"])
def test_the_pages_render_the_operations_offline(app, browser: Browser, page: str, script: str) -> None:
    with serving(app) as url:
        browser.open(f"{url}{page}")
        shown: list[str] = []
        for _ in range(600):  # the page fetches /openapi.json and renders it after its load event
            text = browser.evaluate("document.body.innerText")
            if all(p in text for p in PATHS):
                break
            browser.call("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 100))",
                                              "awaitPromise": True}, session=True)
        text = browser.evaluate("document.body.innerText")
        shown = browser.evaluate(script) or []
        requests = browser.requests()
    for p in PATHS:
        assert p in text, text[:2000]
    if page == "/docs":
        assert {"/v1/evaluate", "/v1/feed", "/v1/jobs", "/v1/jobs/{job_id}"} <= set(shown)
    elsewhere = [r for r in requests if not r.startswith((f"{url}/", f"blob:{url}/", "data:"))]
    assert requests and not elsewhere, elsewhere
    assert any(r.endswith("/openapi.json") for r in requests)
