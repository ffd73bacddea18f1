"""The published site in a real browser (Debian's Chromium driven by Playwright): pages
load with no console errors, the index lists the cases, a case page draws its plot with
its points, the planted step is flagged, a click on a point opens its run, text from
results is shown, not executed. Screenshots go to the test's tmp folder and, for people,
to $GRUBENCH_SCREENSHOTS when set (e.g. reports/site-screenshots).

Skipped only when no browser is installed and CI is not set; under CI a missing browser
fails (.ci/run installs chromium)."""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from grubench.history import site

from .conftest import STEP_CASE, STEP_COMMIT_INDEX, commit_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


def chromium_or_skip():
    problem = None
    if not os.path.exists(CHROMIUM):
        problem = "no Chromium installed (apt-get install chromium chromium-driver)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[history]')"
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser tests cannot run: {problem}")
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def grubench(*argv, env):
    done = subprocess.run([sys.executable, "-m", "grubench", *argv], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def publish(reports, tmp_path):
    """`grubench history import REPORTS` then `grubench publish`, as a user runs them."""
    env = {**os.environ, "GRUBENCH_DB": str(tmp_path / "history.sqlite")}
    grubench("history", "import", str(reports), env=env)
    grubench("publish", "--out", str(tmp_path / "site"), env=env)
    return tmp_path / "site"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """Serve a folder over http on loopback, as `python -m http.server` would."""
    servers = []

    def start(folder):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


class Visit:
    """A page with its console errors and uncaught exceptions collected."""

    def __init__(self, browser, shots: Path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.requests = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.shots = shots

    def open(self, url, shot=None):
        self.page.goto(url, wait_until="load")
        assert self.errors == [], f"{url}: {self.errors}"
        if shot:
            self.screenshot(shot)
        return self.page

    def screenshot(self, name, full_page=True):
        self.page.screenshot(path=str(self.shots / name), full_page=full_page)
        wanted = os.environ.get("GRUBENCH_SCREENSHOTS")
        if wanted:
            Path(wanted).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.shots / name, Path(wanted) / name)


def test_planted_history_in_the_browser(browser, history_reports, tmp_path, serve):
    base = serve(publish(history_reports, tmp_path))
    visit = Visit(browser, tmp_path)

    index = visit.open(f"{base}/index.html", "planted-index.png")
    labels = index.locator("#cases a.case-link").all_inner_texts()
    assert len(labels) == 2 and STEP_CASE in labels
    assert index.locator("svg.sparkline polyline").count() == 8      # 2 cases x 4 series
    flagged = index.locator("tr.flagged")
    assert flagged.count() == 1 and STEP_CASE in flagged.inner_text()
    assert commit_of(STEP_COMMIT_INDEX) in flagged.locator(".step").inner_text()
    assert index.evaluate("window.__xss") is None                    # shown, not run
    assert '</script><img src=x onerror="window.__xss=1">' in index.inner_text("body")

    case = visit.open(f"{base}/cases/{site.slug(STEP_CASE)}.html")
    case.wait_for_selector("#trend .main-svg")
    traces = case.evaluate("document.getElementById('trend').data.length")
    assert traces == 4                                   # 2 backends x 2 machines
    drawn = case.locator("#trend .scatterlayer .trace .points path")
    assert drawn.count() == 40                           # every run of every series
    assert case.locator("tr.step").count() == 1
    assert commit_of(STEP_COMMIT_INDEX) in case.locator("tr.step").inner_text()
    assert case.locator("#trend .shapelayer path").count() >= 1      # the step's line
    visit.screenshot("planted-case.png")

    drawn.first.click(force=True)                        # a point opens its run
    case.wait_for_url("**/runs/*.html")
    assert "kind" in case.inner_text("table.meta")

    for page in ("gru-vs-lstm.html", "heatmap.html", "machines.html"):
        shown = visit.open(f"{base}/{page}", f"planted-{page[:-5]}.png")
        shown.wait_for_selector(".js-plotly-plot .main-svg")
    assert all(url.startswith(base) for url in visit.requests), "something left loopback"


def test_the_committed_reports_publish_to_a_working_site(browser, tmp_path, serve):
    """The first history: reports/ imported and published in a fresh database."""
    base = serve(publish(ROOT / "reports", tmp_path))
    visit = Visit(browser, tmp_path)
    index = visit.open(f"{base}/index.html")
    visit.screenshot("index.png", full_page=False)                  # 100+ cases: the top
    links = index.locator("#cases a.case-link")
    assert links.count() > 50
    assert "gru reset_after training 100,16,256,256 float32 t1" in links.all_inner_texts()
    links.filter(has_text="gru reset_after training 100,16,256,256 float32 t1").click()
    case = visit.page
    case.wait_for_selector("#trend .scatterlayer .trace .points path")
    assert visit.errors == []
    visit.screenshot("case.png")
    visit.open(f"{base}/heatmap.html").wait_for_selector(".heatmaplayer")
