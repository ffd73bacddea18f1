"""The static site's files: every page written, results text escaped, nothing from a CDN.
(What a browser makes of them: test_site_browser.py.)"""
import re

import pytest

from grubench.history import documents, site
from grubench.history.store import Store

from .conftest import HOSTILE, STEP_CASE


@pytest.fixture
def published(history_reports, db_url, tmp_path):
    opened = Store(db_url)
    for path in documents.find([history_reports]):
        opened.add(documents.read(path))
    out = tmp_path / "site"
    site.publish(opened, out, commit_url="https://git.example/grubench/commit/{commit}")
    return out


def test_every_page_is_written_and_offline(published):
    pages = sorted(p.relative_to(published).as_posix() for p in published.rglob("*.html"))
    assert {"index.html", "gru-vs-lstm.html", "heatmap.html", "machines.html"} <= set(pages)
    assert f"cases/{site.slug(STEP_CASE)}.html" in pages
    assert sum(p.startswith("runs/") for p in pages) == 20
    for page in published.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"""(src|href)=["']https?://(?!git\.example)""", text), page
        assert "cdn." not in text, page
    assert (published / "assets/plotly.min.js").stat().st_size > 1_000_000


def test_text_from_results_is_escaped(published):
    for page in published.rglob("*.html"):
        text = page.read_text()
        assert HOSTILE not in text, page                 # never raw HTML
    index = (published / "index.html").read_text()
    assert "&lt;/script&gt;&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in index
    assert "</script><img" not in "".join(p.read_text() for p in published.rglob("*.html"))
    run = (published / "runs/11.html").read_text()
    assert "note with &lt;/script&gt;&lt;img" in run


def test_commit_links_follow_the_template(published):
    case = (published / f"cases/{site.slug(STEP_CASE)}.html").read_text()
    assert 'href="https://git.example/grubench/commit/06c0ffee06ab"' in case


def test_sparkline_points_fit_the_box():
    points = [tuple(map(float, p.split(","))) for p in site.sparkline([1, 2, 4, 2]).split()]
    assert len(points) == 4
    assert all(0 <= x <= 120 and 0 <= y <= 24 for x, y in points)
    assert points[2][1] < points[1][1] < points[0][1]     # higher values drawn higher
    assert site.slug("a b") != site.slug("a-b")
