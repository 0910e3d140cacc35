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

PAGE = "notebooks/08-reproducing-benchmarks.html"
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


def _view_with_signal(page, name: str) -> int:
    """Index in ``window.isoplastVegaViews`` of the one chart that has the signal ``name``.

    Charts render asynchronously, so their order in the list is not the page's order, and a page
    may hold several: wait until one with the signal has rendered, then require it to be unique.
    """
    find = """(name) => (window.isoplastVegaViews || [])
        .map((v, i) => { try { v.signal(name); return i; } catch (e) { return -1; } }).filter(i => i >= 0)"""
    page.wait_for_function(f"({find})({name!r}).length > 0", timeout=60_000)
    page.wait_for_timeout(300)
    found = page.evaluate(find, name)
    assert len(found) == 1, f"expected one chart with the signal {name!r}, found {len(found)}"
    page.wait_for_function(f"window.isoplastVegaViews[{found[0]}].container().querySelector('svg') !== null", timeout=30_000)
    return found[0]


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
    view = _view_with_signal(page, "log10_lambda")
    slider = page.evaluate_handle(f"() => window.isoplastVegaViews[{view}].container()").as_element().query_selector_all("input[type=range]")
    assert len(slider) == 1, "expected one bound range slider in the chart"
    slider = slider[0]

    def state():
        # the slider's signal, the `mean` of every rendered line point (from Vega's scenegraph),
        # and the SVG markup
        return page.evaluate(
            """() => {
                const view = window.isoplastVegaViews[VIEW];
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
                        svg: view.container().querySelector('svg').outerHTML};
            }""".replace("VIEW", str(view))
        )

    before = state()
    # one text mark per panel names the selected lambda (aria-labels of the marks repeat it too)
    assert before["svg"].count(f">λ = {10 ** before['lam']:g}</text>") == n_panels, before["svg"][:2000]
    lo, hi, value = (float(v) for v in slider.evaluate("e => [e.min, e.max, e.value]"))
    assert lo < hi and before["lam"] == pytest.approx(value)
    target = lo if value != lo else hi
    slider.fill(str(target))
    page.wait_for_function(f"window.isoplastVegaViews[{view}].signal('log10_lambda') === {target}", timeout=10_000)
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


# the explorables added for issue 14: (page, the slider's signal, the marks whose data it filters)
EXPLORABLES = [
    ("notebooks/02-entk-jacobian-link.html", "task", "eig"),  # eNTK spectrum after each task
    ("notebooks/04-isometry-regularizer.html", "step", "fill"),  # a dead unit's hyperplane, isometry steps
]


@pytest.mark.parametrize("page_path, signal, what", EXPLORABLES, ids=[p.split("/")[-1][:2] for p, _, _ in EXPLORABLES])
def test_explorable_slider_moves_the_frame(server, browser, page_path, signal, what):
    require((HTML / page_path).exists(), f"{HTML / page_path} is not built")
    page, errors, external = _open(browser, f"{server}/{page_path}")
    view = _view_with_signal(page, signal)
    inputs = page.evaluate_handle(f"() => window.isoplastVegaViews[{view}].container()").as_element().query_selector_all("input[type=range]")
    assert len(inputs) == 1, "expected one bound range slider in the chart"
    slider = inputs[0]

    def state():
        # the slider's signal; the frame value of every rendered mark item that carries one
        # (rules, lines), the data values drawn (eigenvalues) and the fill of every point
        return page.evaluate(
            """([i, signal]) => {
                const view = window.isoplastVegaViews[i];
                const frames = [], eig = [], fill = [];
                const walk = (node) => {
                    if (!node) return;
                    for (const it of node.items || []) {
                        if (it.datum && signal in it.datum) frames.push(it.datum[signal]);
                        if (it.datum && 'eig' in it.datum) eig.push(it.datum.eig);
                        if (node.marktype === 'symbol' && it.datum && 'fires' in it.datum) fill.push(it.fill);
                        walk(it);
                    }
                };
                walk(view.scenegraph().root);
                return {value: view.signal(signal), frames: frames, eig: eig, fill: fill,
                        svg: view.container().querySelector('svg').outerHTML};
            }""",
            [view, signal],
        )

    before = state()
    lo, hi, value = (float(v) for v in slider.evaluate("e => [e.min, e.max, e.value]"))
    assert lo < hi and before["value"] == pytest.approx(value)
    # only the selected frame is drawn (the full-history curves carry the frame column too, so
    # at least one mark item shows the selected value and every filtered one shows only it)
    assert before["value"] in before["frames"]
    target = lo if value != lo else hi
    slider.fill(str(int(target)))
    page.wait_for_function(f"window.isoplastVegaViews[{view}].signal({signal!r}) === {target}", timeout=10_000)
    page.wait_for_timeout(300)
    after = state()
    assert after["value"] == pytest.approx(target) and target in after["frames"]
    assert after[what] != before[what], f"the drawn {what} did not change with the slider"
    if what == "fill":  # the toy: the dead unit fires on no point at step 0 and on some at the end
        filled = lambda st: sum(f not in ("transparent", None) for f in st["fill"])  # noqa: E731
        at_start, at_end = (before, after) if target == hi else (after, before)
        assert filled(at_start) == 0 and filled(at_end) > 0, (filled(at_start), filled(at_end))
    assert after["svg"] != before["svg"]
    assert not [u for u in external if "vega" in u], f"the chart asked the network for Vega: {external}"
    page.wait_for_timeout(300)
    assert not errors, "console errors of the chart page:\n" + "\n".join(errors)
    page.close()


TOGGLE_PAGES = ["notebooks/06-prior-methods.html", "notebooks/08-reproducing-benchmarks.html"]


@pytest.mark.parametrize("page_path", TOGGLE_PAGES, ids=[p.split("/")[-1][:2] for p in TOGGLE_PAGES])
def test_legend_click_toggles_methods(server, browser, page_path):
    require((HTML / page_path).exists(), f"{HTML / page_path} is not built")
    page, errors, external = _open(browser, f"{server}/{page_path}")
    view = _view_with_signal(page, "methods")

    def state():
        # per method: how many line items are drawn at full opacity; the selection's store
        return page.evaluate(
            """(i) => {
                const view = window.isoplastVegaViews[i];
                const full = {}, faded = {};
                const walk = (node) => {
                    if (!node) return;
                    for (const it of node.items || []) {
                        if (node.marktype === 'line' && it.datum && 'label' in it.datum) {
                            const d = it.opacity === 1 ? full : faded;
                            d[it.datum.label] = (d[it.datum.label] || 0) + 1;
                        }
                        walk(it);
                    }
                };
                walk(view.scenegraph().root);
                return {full: full, faded: faded, store: view.data('methods_store').map(t => t.values)};
            }""",
            view,
        )

    before = state()
    assert before["store"] == [] and not before["faded"] and len(before["full"]) >= 4, before
    container = page.evaluate_handle(f"() => window.isoplastVegaViews[{view}].container()").as_element()
    label = next(t for t in container.query_selector_all("g.role-legend-label text") if t.text_content() == "adamo")
    label.click()
    page.wait_for_function(f"window.isoplastVegaViews[{view}].data('methods_store').length === 1", timeout=10_000)
    page.wait_for_timeout(300)
    after = state()
    assert after["store"] == [["adamo"]], after["store"]
    assert set(after["full"]) == {"adamo"} and after["full"]["adamo"] == before["full"]["adamo"]
    assert set(after["faded"]) == set(before["full"]) - {"adamo"}
    # shift-click adds a second method
    other = next(t for t in container.query_selector_all("g.role-legend-label text") if t.text_content() == "adam")
    other.click(modifiers=["Shift"])
    page.wait_for_function(f"window.isoplastVegaViews[{view}].data('methods_store').length === 2", timeout=10_000)
    page.wait_for_timeout(300)
    assert set(state()["full"]) == {"adam", "adamo"}
    assert not [u for u in external if "vega" in u], f"the chart asked the network for Vega: {external}"
    assert not errors, "console errors of the chart page:\n" + "\n".join(errors)
    page.close()
