"""The static lambda sliders (chapters 4 and 7) work in a headless browser, without kernel or network.

Builds nothing: it opens the built pages ``_build/html/notebooks/{04,07}-*.html``
(run ``jupyter-book build . -W`` first) in headless Debian Chromium through playwright, served
from a localhost ``http.server`` thread. Every request that leaves localhost (MathJax and
similar CDN assets of the theme) is answered with an empty response, so the test behaves the
same with or without a network and proves the chart needs nothing from outside the page. It
then moves the Altair range slider and checks that the Vega view's parameter, the filtered data
and the rendered SVG all change, with no console errors and no page errors.

When ``_build/html`` is missing the test is skipped with the reason, unless
``ISOPLAST_REQUIRE_HTML=1`` (CI after a build), in which case it fails.
"""

from __future__ import annotations

import pytest
from book_browser import HTML, chromium, open_offline, require, serve

PAGE = "notebooks/07-reproducing-benchmarks.html"
# every page with a static slider: (page, number of panels the slider drives)
SLIDER_PAGES = [(PAGE, 2), ("notebooks/04-isometry-regularizer.html", 3)]
# a page of the same book without any chart: it must log no console error either (the two that
# Jupyter Book 1 logs by default, a duplicated sphinx-thebe script and an empty theme mode, are
# fixed by book/_ext/isoplast_sphinx.py and `default_mode` in _config.yml)
BASELINE_PAGE = "notebooks/05-adamo-step-by-step.html"


@pytest.fixture(scope="module")
def server():
    require((HTML / PAGE).exists(), f"{HTML / PAGE} is not built: run `.venv/bin/jupyter-book build . -W` first "
            "(set ISOPLAST_REQUIRE_HTML=1 to make this a failure)")  # fmt: skip
    with serve(HTML) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


_open = open_offline


def test_a_chapter_page_renders_math_offline_without_console_errors(server, browser):
    require((HTML / BASELINE_PAGE).exists(), f"{HTML / BASELINE_PAGE} is not built")
    page, errors, external = _open(browser, f"{server}/{BASELINE_PAGE}")
    # MathJax is served from the book's own _static (every outside request gets an empty body)
    page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=30_000)
    typeset = page.evaluate("document.querySelectorAll('mjx-container').length")
    page.wait_for_timeout(500)
    page.close()
    assert typeset >= 10, f"only {typeset} formulas typeset"
    assert not [u for u in external if "mathjax" in u.lower()], external
    assert not errors, "console errors of a plain chapter page:\n" + "\n".join(errors)


@pytest.mark.parametrize("page_path, n_panels", SLIDER_PAGES, ids=[p.split("/")[-1][:2] for p, _ in SLIDER_PAGES])
def test_static_slider_changes_the_chart(server, browser, page_path, n_panels):
    require((HTML / page_path).exists(), f"{HTML / page_path} is not built")
    page, errors, external = _open(browser, f"{server}/{page_path}")
    page.wait_for_function("window.isoplastVegaViews && window.isoplastVegaViews.length > 0", timeout=30_000)
    chart = page.locator(".isoplast-vega").first
    chart.locator("svg").first.wait_for(timeout=30_000)
    slider = chart.locator("input[type=range]")
    assert slider.count() == 1, "expected one bound range slider in the chart"

    def state():
        # the slider's signal, the `mean` of every rendered line point (from Vega's scenegraph),
        # and the SVG markup
        return page.evaluate(
            """() => {
                const view = window.isoplastVegaViews[0];
                const means = [];
                const walk = (node) => {
                    if (!node) return;
                    if (node.marktype === 'line' || node.marktype === 'symbol') {
                        for (const it of node.items || []) if (it.datum && 'mean' in it.datum) means.push(it.datum.mean);
                    }
                    for (const it of node.items || []) walk(it);
                };
                walk(view.scenegraph().root);
                return {lam: view.signal('log10_lambda'), means: means,
                        svg: document.querySelector('.isoplast-vega svg').outerHTML};
            }"""
        )

    before = state()
    # one text mark per panel names the selected lambda (aria-labels of the marks repeat it too)
    assert before["svg"].count(f">λ = {10 ** before['lam']:g}</text>") == n_panels, before["svg"][:2000]
    lo, hi, value = (float(v) for v in slider.evaluate("e => [e.min, e.max, e.value]"))
    assert lo < hi and before["lam"] == pytest.approx(value)
    target = lo if value != lo else hi
    slider.fill(str(target))
    page.wait_for_function(f"window.isoplastVegaViews[0].signal('log10_lambda') === {target}", timeout=10_000)
    page.wait_for_timeout(300)  # let the view finish re-rendering
    after = state()

    assert after["lam"] == pytest.approx(target)
    assert after["means"] != before["means"], "the filtered data did not change with the slider"
    assert after["svg"] != before["svg"], "the rendered SVG did not change with the slider"
    assert f"λ = {10 ** target:g}" in after["svg"] and f"λ = {10 ** target:g}" not in before["svg"]
    assert not [u for u in external if "vega" in u], f"the chart asked the network for Vega: {external}"
    page.wait_for_timeout(500)
    assert not errors, "console errors of the chart page:\n" + "\n".join(errors)
    page.close()
