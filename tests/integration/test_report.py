"""report.html per slide and per cohort: self-contained, every section, every picture embedded."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from histobatch.report import slide_warnings
from tests.integration.test_interop import finished  # noqa: F401  (a finished slide folder)

SLIDE_SECTIONS = {"warnings", "overview", "crops", "composition", "morphology", "run"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.sections: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src", ""))
        elif tag == "section":
            self.sections.add(attributes.get("id"))
        elif tag in ("a", "link", "script"):
            self.links.append(attributes.get("href") or attributes.get("src") or "")


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_slide_report_is_self_contained(finished):  # noqa: F811
    page = _parse(finished / "report.html")
    assert page.sections == SLIDE_SECTIONS
    # overview, composition, morphology and one or two full-resolution crops (a small slide: one)
    assert 4 <= len(page.images) <= 5
    assert all(src.startswith("data:image/") for src in page.images)
    assert not [link for link in page.links if link.startswith(("http:", "https:", "//"))]
    text = (finished / "report.html").read_text()
    assert "epithelial" in text and "inflammatory" in text and "µm/px" in text


def test_cohort_report_links_the_slide_reports(finished, tmp_path):  # noqa: F811
    from histobatch.aggregate import aggregate

    out = tmp_path / "out"
    shutil.copytree(finished.parent, out)
    cohort = aggregate(out)
    page = _parse(out / "report.html")
    assert page.sections == {"composition", "slides"}
    assert all(src.startswith("data:image/png;base64,") for src in page.images) and page.images
    assert page.links == [f"{finished.name}/report.html"]
    assert cohort.finished == 1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"tissue_area_mm2": 0.1}, "Little tissue"),
        ({"nucleus_density_per_mm2": 120.0}, "Few nuclei"),
        ({"mpp_source": "--mpp"}, "was given with --mpp"),
        ({"stain": {"hematoxylin_od": 0.03, "eosin_od": 0.0}}, "Odd stain"),
    ],
)
def test_warnings(change, words):
    summary = {
        "tissue_area_mm2": 5.0,
        "nucleus_density_per_mm2": 4000.0,
        "mpp": 0.25,
        "mpp_source": "metadata",
        "stain": {"hematoxylin_od": 0.03, "eosin_od": 0.02},
    }
    assert slide_warnings(summary, summary["stain"]) == []
    summary.update(change)
    warnings = slide_warnings(summary, summary["stain"])
    assert len(warnings) == 1 and words in warnings[0]


def test_headless_chromium_renders_the_report(finished, tmp_path):  # noqa: F811
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium here (apt-get install chromium)")
    script = Path(__file__).resolve().parents[2] / "examples" / "screenshot_report.sh"
    shot = tmp_path / "report.png"
    subprocess.run([str(script), str(finished / "report.html"), str(shot)], check=True, timeout=120)
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.std() > 10  # something was drawn, not a blank page
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["nucleus_count"] > 0
