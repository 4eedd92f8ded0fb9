"""The HTML report opens in a real browser (headless Chromium): its first page shows the
headline numbers and the participant flow, tables are HTML rows, and its figures load.

At 1280x800 and 1920x1080 nothing on the first page or on any table page scrolls sideways,
no table cell wraps a confidence interval, and the headline table sits above the fold.
Skipped when no Chromium is installed; .ci/run installs Debian's chromium so CI runs it.
Screenshots are kept under the run's results/screenshots/ and copied to the checkout's
results/screenshots/ (CI's artifacts; the paths are printed).
"""

import base64
import html
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import REPO, snakemake

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
    # also in the checkout's results/screenshots/, where CI keeps them as artifacts
    kept = REPO / "results" / "screenshots" / target.name
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, kept)
    print(f"screenshot: {target} (and {kept})")


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


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
def test_tables_are_html_rows_and_forest_plots_show(report, completed_run, tmp_path):
    html = report.read_text(encoding="utf-8")
    page = tmp_path / "table1.html"
    page.write_bytes(base64.b64decode(embedded(html, "table1.html").split("base64,", 1)[1]))
    dom = chromium_dom(page.as_uri(), tmp_path / "profile")
    assert len(re.findall(r"<tr[ >]", dom)) > 20 and "Age, years, mean (SD)" in dom and "Download table1.tsv" in dom
    assert not re.search(r"filename=[^;]+\.tsv;", html)  # no table is only a download any more
    shots = completed_run / "results" / "screenshots"
    forest = tmp_path / "forest.html"
    forest.write_text(
        f'<html><body><img src="{embedded(html, "employed__employed.svg")}"></body></html>', encoding="utf-8"
    )
    screenshot(forest.as_uri(), tmp_path / "profile-forest", shots / "forest_plot.png", size="1300,800")


# ------------------------------------------------------------ layout at laptop and desktop size

VIEWPORTS = {"1280x800": (1280, 800), "1920x1080": (1920, 1080)}
PUBLICATION_PAGES = ["table1.html", "table2.html", "results.html"]
# In the page: elements that scroll sideways, table cells whose CI wraps, and where things are.
MEASURE = r"""
<script>
function ipdpoolMeasure(root, doc = document) {
  const ci = /-?\d+\.\d\d \(-?\d+\.\d\d, -?\d+\.\d\d\)/;
  const scrolling = [...root.querySelectorAll("*")].filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth)
    .map(e => `${e.tagName}#${e.id}.${e.className} ${e.scrollWidth}>${e.clientWidth}`);
  const page = doc.scrollingElement;
  if (page.scrollWidth > page.clientWidth) scrolling.push(`page ${page.scrollWidth}>${page.clientWidth}`);
  const cells = [...root.querySelectorAll("td")].filter(td => ci.test(td.textContent));
  const wrapped = cells.filter(td => {
    const range = doc.createRange(); range.selectNodeContents(td);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
  }).map(td => td.textContent);
  const view = doc.defaultView;
  return {scrolling, cells: cells.length, wrapped, height: view.innerHeight, width: view.innerWidth};
}
function ipdpoolReport() {
  const out = ipdpoolMeasure(document.querySelector("div.h-screen") || document.body);
  const headline = document.getElementById("headline-0"), flow = document.querySelector('img[alt^="Participant flow"]');
  out.headline = headline ? [headline.getBoundingClientRect().top, headline.getBoundingClientRect().bottom] : null;
  out.flow = flow ? [flow.getBoundingClientRect().width, flow.naturalWidth] : null;
  out.rulegraphShown = getComputedStyle(document.getElementById("rulegraph")).display !== "none";
  const link = document.querySelector("#ipdpool-nav a");  // the rule graph's own view, as its link shows it
  new Function(decodeURIComponent(link.getAttribute("href").slice("javascript:".length)))();
  out.rulegraphView = [getComputedStyle(document.getElementById("rulegraph")).display !== "none",
                       document.getElementById("ipdpool-headline").getClientRects().length > 0];
  document.body.classList.remove("ipdpool-rulegraph");
  return out;
}
function ipdpoolFrameWidth(out) {  // the width at which the report shows a table page (its iframe)
  app.setView({content: "html", contentPath: "about:blank"});
  const width = () => document.querySelector("iframe").clientWidth;
  return new Promise(done => setTimeout(() => done({...out, frameWidth: width()}), 500));
}
window.addEventListener("load", () => setTimeout(async () => {
  const report = document.getElementById("ipdpool-headline");
  const frames = [...document.querySelectorAll("iframe[data-name]")];  // table pages, each in a frame
  const out = report ? await ipdpoolFrameWidth(ipdpoolReport())
    : Object.fromEntries(frames.map(f => [f.dataset.name, ipdpoolMeasure(f.contentDocument.body, f.contentDocument)]));
  document.body.setAttribute("data-metrics", JSON.stringify(out));
}, 1500));
</script>
"""


def measured(page, profile, size) -> dict:
    """The page's layout as Chromium lays it out at `size`, measured by MEASURE."""
    flags = [*FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "--dump-dom"]
    result = subprocess.run([BROWSER, *flags, page.as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'data-metrics="([^"]*)"', result.stdout)
    assert match, "the measuring script did not run"
    return json.loads(html.unescape(match.group(1)))


def with_measuring(source: str) -> str:
    end = source.rfind("</body>")
    return source + MEASURE if end < 0 else source[:end] + MEASURE + source[end:]


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed")
@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_first_page_and_table_pages_fit_the_window_without_wrapping_a_ci(report, completed_run, tmp_path, viewport):
    size = VIEWPORTS[viewport]
    shots = completed_run / "results" / "screenshots"
    source = report.read_text(encoding="utf-8")
    first = tmp_path / "report.html"
    first.write_text(with_measuring(source), encoding="utf-8")
    metrics = measured(first, tmp_path / "profile", size)
    assert metrics["scrolling"] == [], metrics["scrolling"]
    assert metrics["cells"] >= 3 * 8 * 2 and metrics["wrapped"] == [], metrics["wrapped"]  # one- and two-stage CIs
    top, bottom = metrics["headline"]
    # the whole headline table above the fold (the window's inner height, at most the viewport's)
    assert 0 <= top and bottom <= metrics["height"] <= size[1], (metrics["headline"], metrics["height"])
    shown, natural = metrics["flow"]
    assert shown >= natural - 1  # the flow at its own size: 9-pt text shows as 9 pt
    assert not metrics["rulegraphShown"] and metrics["rulegraphView"] == [True, False]  # a page of its own
    screenshot(report.as_uri(), tmp_path / "shot", shots / f"first_page_{viewport}.png", size=f"{size[0]},{size[1]}")

    # Every table page as the report shows it at this viewport: in a frame of the report's size.
    width, height = metrics["frameWidth"], metrics["height"]
    names = [n for n in re.findall(r"filename=([^;]+\.html);", source) if n != "landing.html"]
    assert set(PUBLICATION_PAGES) <= set(names) and len(names) >= 15
    pages = {name: base64.b64decode(embedded(source, name).split("base64,", 1)[1]).decode() for name in names}
    frames = "".join(
        f'<iframe data-name="{name}" style="width: {width}px; height: {height}px; border: 0; display: block" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
        for name, page in pages.items()
    )
    harness = tmp_path / "pages.html"
    harness.write_text(f"<html><body style='margin: 0'>{frames}{MEASURE}</body></html>", encoding="utf-8")
    tables = measured(harness, tmp_path / "profile", (width + 20, height))
    assert set(tables) == set(names)
    for name, table in tables.items():
        assert table["width"] == width and table["scrolling"] == [] and table["wrapped"] == [], (name, table)
    assert tables["results.html"]["cells"] == 2 * 24  # one- and two-stage CIs of three contrasts x 8 outcomes
    for name in PUBLICATION_PAGES if viewport == "1280x800" else []:  # the narrower is the harder
        page = tmp_path / name
        page.write_text(pages[name], encoding="utf-8")
        screenshot(page.as_uri(), tmp_path / "shot", shots / f"{name[:-5]}_{viewport}.png", size=f"{width},{size[1]}")
