"""The HTML report opens in a real browser (headless Chromium): its first page shows the
headline numbers and the participant flow, tables are HTML rows, and its figures load.

Skipped when no Chromium is installed; .ci/run installs Debian's chromium so CI runs it.
Screenshots are kept under the run's results/screenshots/ (the path is printed).
"""

import base64
import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.browser]

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
CATEGORIES = [
    "Summary",
    "Data and harmonization",
    "One-stage models",
    "Forest plots",
    "Two-stage and aggregate data",
    "Sensitivity",
    "Replication",
]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--virtual-time-budget=20000",
]  # fmt: skip


def chromium_dom(url: str, profile) -> str:
    """The DOM after scripts ran, as Chromium renders it (flags keep it off the network)."""
    result = subprocess.run(
        [BROWSER, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True, text=True, timeout=180
    )
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
    images = re.findall(r'"data_uri": "(data:image/svg\+xml;[^"]*)"', html)
    names = [re.search(r"filename=([^;]+);", uri).group(1) for uri in images]
    assert "participant_flow.svg" in names and "harmonization_status.svg" in names
    assert sum(name.startswith("employed__") for name in names) == 8  # a forest plot per outcome
    assert all(base64.b64decode(uri.split("base64,", 1)[1]).startswith(b"<?xml") for uri in images)
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


def screenshot(url: str, profile, target, size: str = "1400,1000") -> None:
    """A PNG of the page as Chromium draws it, kept as a test artifact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = [*FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={target}"]
    result = subprocess.run([BROWSER, *flags, url], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and target.read_bytes()[:4] == b"\x89PNG", result.stderr[-2000:]
    print(f"screenshot: {target}")


def embedded(html: str, name: str) -> str:
    """The data URI of an embedded result file, by file name."""
    return re.search(r'"data_uri": "(data:[^"]*filename=' + re.escape(name) + r';[^"]*)"', html).group(1)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
def test_first_page_shows_the_headline_numbers_and_the_flow(report, completed_run, tmp_path):
    dom = chromium_dom(report.as_uri(), tmp_path / "profile")
    rendered = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    one_stage = pd.read_csv(completed_run / "results" / "tables" / "one_stage.tsv", sep="\t")
    for term in ("employed", "ips", "ips:employed"):
        row = one_stage[(one_stage["outcome"] == "functioning") & (one_stage["term"] == term)].iloc[0]
        assert f"{row['estimate']:.2f} ({row['ci_low']:.2f}, {row['ci_high']:.2f})" in rendered, (
            term
        )  # as text, in a table row
    headline = re.search(r'<div id="ipdpool-headline">.*?</div>', rendered, flags=re.S).group(0)
    assert headline.count("<tr>") >= 3 * 8 and "0.59 (0.42, 0.77)" in headline  # beside the published value
    assert 'alt="Participant flow, all studies"' in headline
    screenshot(
        report.as_uri(), tmp_path / "profile-shot", completed_run / "results" / "screenshots" / "report_first_page.png"
    )


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
def test_tables_are_html_rows_and_forest_plots_show(report, completed_run, tmp_path):
    html = report.read_text(encoding="utf-8")
    page = tmp_path / "table1.html"
    page.write_bytes(base64.b64decode(embedded(html, "table1.html").split("base64,", 1)[1]))
    dom = chromium_dom(page.as_uri(), tmp_path / "profile")
    assert dom.count("<tr>") > 20 and "Age, years, mean (SD)" in dom and "Download table1.tsv" in dom
    assert not re.search(r"filename=[^;]+\.tsv;", html)  # no table is only a download any more
    shots = completed_run / "results" / "screenshots"
    screenshot(page.as_uri(), tmp_path / "profile-t1", shots / "table1.png")
    forest = tmp_path / "forest.html"
    forest.write_text(
        f'<html><body><img src="{embedded(html, "employed__employed.svg")}"></body></html>', encoding="utf-8"
    )
    screenshot(forest.as_uri(), tmp_path / "profile-forest", shots / "forest_plot.png", size="1300,800")
