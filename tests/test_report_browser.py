"""The HTML report opens in a real browser (headless Chromium) and its figures load.

Skipped when no Chromium is installed; .ci/run installs Debian's chromium so CI runs it.
"""

import base64
import re
import shutil
import subprocess

import pytest
from conftest import snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.browser]

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
CATEGORIES = ["Data and harmonization", "One-stage models", "Two-stage and aggregate data", "Sensitivity", "Replication"]


def chromium_dom(url: str, profile) -> str:
    """The DOM after scripts ran, as Chromium renders it (flags keep it off the network)."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom",
    ]  # fmt: skip
    result = subprocess.run([BROWSER, *flags, url], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def report(completed_run):
    result = snakemake(completed_run, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-2000:]
    return completed_run / "results" / "report.html"


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
def test_report_renders_its_categories_in_chromium(report, tmp_path):
    dom = chromium_dom(report.as_uri(), tmp_path / "profile")
    # Only what the report's JavaScript rendered counts: drop scripts (the embedded data) and styles.
    rendered = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    for category in CATEGORIES:
        assert category in rendered, category
    assert "Studies: EU6, DK, SE, NL, US." in rendered


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
def test_every_figure_in_the_report_decodes_in_chromium(report, tmp_path):
    html = report.read_text(encoding="utf-8")
    images = re.findall(r'"data_uri": "(data:image/png;[^"]*)"', html)
    names = [re.search(r"filename=([^;]+);", uri).group(1) for uri in images]
    assert "participant_flow.png" in names and "harmonization_status.png" in names
    assert sum(name.startswith("employed__") for name in names) == 8  # a forest plot per outcome
    assert all(base64.b64decode(uri.split("base64,", 1)[1])[:4] == b"\x89PNG" for uri in images)
    # A page that loads every embedded figure as the report does, and records which decoded.
    tags = "".join(f'<img src="{uri}" data-name="{name}">' for uri, name in zip(images, names))
    harness = tmp_path / "figures.html"
    harness.write_text(
        f"""<html><body>{tags}<script>
        window.addEventListener("load", () => {{
          const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.dataset.name);
          document.body.setAttribute("data-loaded", document.images.length - bad.length);
          document.body.setAttribute("data-failed", bad.join(",") || "none");
        }});
        </script></body></html>""",
        encoding="utf-8",
    )
    dom = chromium_dom(harness.as_uri(), tmp_path / "profile2")
    assert f'data-loaded="{len(images)}"' in dom and 'data-failed="none"' in dom
