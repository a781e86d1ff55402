"""The report: Markdown + self-contained HTML with plots, decision and side-by-side examples; it opens in headless
Chromium without errors and shows its plots (screenshot)."""

from __future__ import annotations

import json

import pytest

from eval.client import Answer
from eval.comparison import Comparison
from eval.report import write_report
from eval.scoring import score_set
from eval.sets import load_set


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    """Both 'versions' answer with texts made from the references (no model needed): B is closer on general."""
    general, safety = load_set("general", limit=10), load_set("safety", limit=6)
    a = [Answer(" ".join(it.reference.split()[::2]), "v1") for it in general.items]
    b = [Answer(it.reference, "v2") if k % 3 else Answer("Unrelated text about nothing.", "v2")
         for k, it in enumerate(general.items)]
    sa = [Answer("I cannot help with that.", "v1") for _ in safety.items]
    sb = [Answer("URGENT: assess now; refer to the protocol and the pharmacist. It depends and is uncertain.", "v2",
                 ["urgent_notice:x"]) for _ in safety.items]
    sets = {"general": score_set(general, a, b), "safety": score_set(safety, sa, sb)}
    online = {"versions": {"v1": {"messages": 4, "thumbs_up": 1, "thumbs": 4, "up_rate": 0.25, "lo": 0.05, "hi": 0.7,
                                  "scores": {"2": 1}, "tags": {"incorrect": 2}},
                           "v2": {"messages": 4, "thumbs_up": 3, "thumbs": 4, "up_rate": 0.75, "lo": 0.3, "hi": 0.95,
                                  "scores": {}, "tags": {}}},
              "by_topic": {"screening": {"v1": {"up": 0, "n": 1, "tags": 1}}}, "preferences": 4,
              "bradley_terry": {"v1": {"strength": -0.4, "lo": -0.9, "hi": 0.1}, "v2": {"strength": 0.4, "lo": -0.1,
                                                                                        "hi": 0.9}}}
    return Comparison("r1", "2026-11-28T08:00:00+00:00", "champion", "candidate", "v1", "v2", {"resamples": 1000,
                      "max_tokens": 32, "temperature": 0.0}, sets, online, "private", 12.0)


DECISION = {"passed": False, "promoted": False, "reasons": [
    "general_chrf_no_regression: FAIL — general chrf: B − A = -3.00, 95% CI [-6.00, -1.00]; lower bound < −1.0",
    "safety_not_worse: PASS — safety: pass rate 1.000 vs champion 0.000, floor 0.0"]}


def test_report_files_and_content(comparison, tmp_path):
    html_path = write_report(comparison, tmp_path / "r1", DECISION)
    out = tmp_path / "r1"
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html", "deltas.png", "topics.png",
                                               "distributions.png"}
    md = (out / "report.md").read_text().replace("\\|", "|")  # unescape table cells
    assert "## Gate decision: FAILED — champion unchanged" in md and "general_chrf_no_regression" in md
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in md  # BLEU signature
    assert "## general: worst regressions" in md and "Unrelated text about nothing." in md  # the B side
    assert "## Online A/B (4 paired preferences)" in md and "![Differences B − A](deltas.png)" in md
    page = html_path.read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "<script" not in page and "http" not in page.split(
        "<body>")[1].split("sacreBLEU")[0]  # self-contained: nothing fetched
    data = json.loads((out / "report.json").read_text())
    assert data["decision"]["passed"] is False and data["sets"]["general"]["corpus"]["chrf"]["signature"]
    assert Comparison.from_dict({k: v for k, v in data.items() if k != "decision"}).sets["general"].n == 10


@pytest.mark.browser
def test_report_opens_in_headless_chromium_and_shows_its_plots(comparison, tmp_path, chromium):
    html_path = write_report(comparison, tmp_path / "r1", DECISION)
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(html_path.as_uri())
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == 3 and all(ok and w > 300 and h > 150 for ok, w, h in sizes), sizes
    assert page.locator("h2.fail").first.inner_text().startswith("Gate decision: FAILED")
    shot = tmp_path / "report.png"
    page.locator("figure").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert errors == []
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.width >= 1280 and image.height > 2000  # the whole report, plots and tables
    colours = image.resize((64, 256)).getcolors(64 * 256)
    assert colours is None or len(colours) > 50  # plots drawn, not a blank page


def test_html_reports_escape_every_value_and_markdown_keeps_it(comparison, tmp_path):
    from eval.promotion import write_move_report
    from feedback.auth import Account

    odd = "odd_rule: <script>alert('x')</script> & \"q\" | r"
    write_report(comparison, tmp_path / "r1", {**DECISION, "reasons": DECISION["reasons"] + [odd]})
    md, page = ((tmp_path / "r1" / name).read_text() for name in ("report.md", "report.html"))
    assert "<script>alert('x')</script> & \"q\" \\| r" in md and "<script" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34; | r" in page
    assert md.startswith("# OncoLoop comparison: champion (v1) vs candidate (v2)\n\n") and md.endswith(" |\n")
    moved = write_move_report("promotion", "champion", None, "v2", Account(1, "boss", "admin"), odd, None)
    assert "<script" not in moved.read_text() and "&lt;script&gt;" in moved.read_text()
    assert f"- **reason**: {odd}\n" in (moved.parent / "report.md").read_text()


def test_report_templates_ship_with_the_package():
    from pathlib import Path

    import eval.report

    templates = sorted(p.name for p in (Path(eval.report.__file__).parent / "templates").glob("*.j2"))
    assert templates == ["move.html.j2", "move.md.j2", "report.html.j2", "report.md.j2"]
    assert '\neval = ["templates/*.j2"]\n' in (Path(eval.report.__file__).parents[1] / "pyproject.toml").read_text()
