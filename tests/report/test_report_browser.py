"""The HTML report in a real browser: Debian's Chromium, headless, every non-loopback host blocked, driven over
the DevTools protocol. It renders, loads nothing but the file itself, and shows the expected funnel numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.browser import Browser, chromium, in_ci
from tests.report.conftest import lines_of, run_cli
from tests.report.test_report_counts import expected_screen


@pytest.fixture(scope="module")
def browser() -> Browser:
    exe = chromium()
    if exe is None:
        if in_ci():
            pytest.fail("chromium is not installed (CI=true): .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install -y chromium): the browser test is skipped")
    b = Browser(exe)
    yield b
    b.close()


def test_html_report_renders_offline_with_the_expected_funnel(browser: Browser, sample_lines: dict[str, Path],
                                                               tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    done = run_cli("report", str(sample_lines["promis"]), str(sample_lines["response"]), "--out", str(html))
    assert done.returncode == 0, done.stderr.decode()
    browser.open(html)
    assert browser.requests() == [html.resolve().as_uri()]  # no script, style, image or font from elsewhere
    resources = browser.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []
    steps = browser.evaluate("[...document.querySelectorAll('svg.funnel g.step')].map(g => "
                             "[g.dataset.step, g.dataset.remaining, g.dataset.excluded])")
    e = expected_screen(lines_of(sample_lines["promis"]))
    remaining = e["in"]
    want = [["population", str(e["population"]), "\u2013"], ["cohort", str(e["in"]), str(sum(e["out_by"].values()))]]
    study = Path(__file__).resolve().parents[2] / "studies" / "NCT07377058.json"
    for row in json.loads(study.read_text())["criteria"]:
        remaining -= e["excluded"][row["id"]]
        want.append([row["id"], str(remaining), str(e["excluded"][row["id"]])])
    want.append(["other", str(e["status"]["candidate"] + e["status"]["potential-candidate"]), str(e["other"])])
    assert steps == want
    cards = browser.evaluate("Object.fromEntries([...document.querySelectorAll('.card[data-status]')].map(c => "
                             "[c.dataset.status, c.querySelector('b').textContent]))")
    assert cards == {"population": "108", "candidate": str(e["status"]["candidate"]),
                     "potential-candidate": str(e["status"]["potential-candidate"]),
                     "ineligible": str(e["status"]["ineligible"])}
    # laid out: the funnel has a size, a worklist row's details open on a click
    box = browser.evaluate("(() => { const r = document.querySelector('svg.funnel').getBoundingClientRect();"
                           " return [r.width, r.height]; })()")
    assert box[0] > 300 and box[1] > 300
    opened = browser.evaluate("(() => { const d = document.querySelector('table.worklist details');"
                              " d.querySelector('summary').click();"
                              " return [d.open, d.querySelectorAll('tr').length]; })()")
    assert opened[0] is True and opened[1] >= 26
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_html_report_reads_on_a_phone(browser: Browser, sample_lines: dict[str, Path], tmp_path: Path) -> None:
    html = tmp_path / "share.html"
    assert run_cli("report", str(sample_lines["tofa"]), "--out", str(html), "--shareable").returncode == 0
    browser.open(html, width=390, height=844, mobile=True)
    assert browser.requests() == [html.resolve().as_uri()]
    # nothing wider than the screen except inside the scrolling table wrappers
    wide = browser.evaluate("document.documentElement.scrollWidth")
    assert wide <= 400
    browser.screenshot(tmp_path / "phone.png", height=1600, width=390)
