"""The course guide's timings come from the measurements shipped beside it, and its warm-up works.

* ``book/course-guide.md``'s timing tables are what ``tools/course_timings.py --render`` makes
  from ``book/course-timings.json`` (never typed by hand), and that file holds a cold and a warm
  full-mode measurement of every chapter whose warm run trained nothing again.
* The lab plan assigns every exercise of the book exactly once (in class or as homework) and its
  labs are the ones ``tools/warm_cache.py --lab`` warms.
* ``tools/warm_cache.py`` fills the runner cache through a real kernel so that the next run of the
  same notebook is served from it (checked on a tiny notebook; the chapters' own check is the
  ``entries_written_by_warm_run`` of the measurements).
* The take-home command of the guide is the one whose time was measured.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from tools_loader import load_tool

timings = load_tool("course_timings")
warm_cache = load_tool("warm_cache")
GUIDE = timings.GUIDE.read_text(encoding="utf-8")
DATA = json.loads(timings.JSON.read_text())


def test_the_guide_shows_the_shipped_measurements():
    assert timings.render(GUIDE, timings.tables(DATA)) == GUIDE, "run tools/course_timings.py --render"
    for name in ("chapters", "labs", "machine", "take-home"):
        block = re.search(rf"<!-- timings:{name} -->(.*?)<!-- /timings:{name} -->", GUIDE, re.S)
        assert block and block.group(1).strip(), f"the {name} block of the guide is empty"


def test_every_chapter_was_measured_cold_and_warm_and_the_warm_run_trained_nothing():
    rows = DATA["chapters"]
    assert sorted(rows, key=int) == [str(n) for n in timings.CHAPTERS]
    for n, r in rows.items():
        assert r["cold_s"] > 0 and r["warm_s"] > 0, n
        assert r["entries_written_by_warm_run"] == 0, f"chapter {n} trained again with a warm cache"
    # chapters whose experiments go through the runner are cheaper warm
    for n, r in rows.items():
        if r["cache_entries"] > 0:
            assert r["warm_s"] < r["cold_s"], (n, r)
    assert DATA["take_home"]["tasks_20_cold_s"] > 0


def _exercise_titles(number: int) -> list:
    text = warm_cache.chapter_source(number).read_text(encoding="utf-8")
    return re.findall(r"^`{3,}\{exercise\}[ \t]*(.+?)[ \t]*$", text, re.M)


def test_the_lab_plan_assigns_every_exercise_once_and_matches_the_warm_up_labs():
    table = GUIDE[GUIDE.index("| lab | in class |"):]
    table = table[: table.index("\n\n")]
    lines = [ln for ln in table.splitlines()[2:]]
    assert len(lines) == len(warm_cache.LABS)
    assigned = []
    for lab, line in zip(sorted(warm_cache.LABS), lines):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0].startswith(f"{lab}.")
        for cell in cells[2:4]:  # in class, homework: "chapter N "Title", "Title"; chapter M ..."
            for part in filter(None, (p.strip() for p in cell.split(";"))):
                m = re.match(r"chapter (\d+) (.*)", part)
                assert m, part
                chapter = int(m.group(1))
                assert chapter in warm_cache.LABS[lab], f"lab {lab} assigns chapter {chapter}, which it does not warm"
                assigned += [(chapter, t) for t in re.findall(r"\u201c(.+?)\u201d|\"(.+?)\"", m.group(2)) for t in [t[0] or t[1]]]
    expected = [(n, t) for n in timings.CHAPTERS for t in _exercise_titles(n)]
    assert sorted(assigned) == sorted(expected)
    assert sorted(c for chs in warm_cache.LABS.values() for c in chs) == list(timings.CHAPTERS)


def test_the_take_home_command_is_the_one_measured():
    block = GUIDE[GUIDE.index("## Take-home"):]
    command = re.search(r"```\n(python -m isoplast_lite sweep .*?)```", block, re.S).group(1)
    args = shlex.split(command.replace("\\\n", " "))
    measured = [*timings.TAKE_HOME, "--tasks", "20"]
    assert args[:4] == ["python", "-m", "isoplast_lite", "sweep"] and args[4:-2] == measured and args[-2] == "--out"


TINY = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  name: python3
---

# A tiny chapter

```{code-cell} ipython3
from isoplast_lite.run import Config, run

df = run(Config("random-label-digits", "adam", seeds=1, n_tasks=2, steps_per_task=3, width=8, depth=1,
                n_train=16, probe_size=4), progress=False).rows
print(len(df))
```
'''


def test_warm_up_fills_the_cache_and_the_next_run_is_served_from_it(tmp_path):
    md = tmp_path / "tiny.md"
    md.write_text(TINY, encoding="utf-8")
    cache = tmp_path / "cache"
    assert warm_cache.cache_entries(cache) == {}
    warm_cache.run_notebook(md, cache)
    filled = warm_cache.cache_entries(cache)
    assert len(filled) == 1
    warm_cache.run_notebook(md, cache)
    assert warm_cache.cache_entries(cache) == filled  # nothing added, nothing rewritten


def test_warm_cache_refuses_an_unknown_chapter():
    with pytest.raises(ValueError, match="chapter"):
        warm_cache.chapter_source(99)


def test_every_chapter_has_its_learning_objectives():
    section = GUIDE.split("## Learning objectives", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^(\d+)\. \*\*(.+?)\*\*(.*?)(?=^\d+\. \*\*|\Z)", section, flags=re.M | re.S)
    chapters = {int(p.name[:2]): p for p in sorted(timings.ROOT.glob("notebooks/[0-9][0-9]-*.md"))}
    assert [int(n) for n, _, _ in items] == sorted(chapters), "one numbered objective per chapter, in order"
    for n, title, body in items:
        heading = re.search(r"^# (.+)$", chapters[int(n)].read_text(encoding="utf-8"), flags=re.M).group(1)
        norm = lambda t: t.replace("\u2013", "-").strip().rstrip(".").lower()  # noqa: E731
        assert norm(heading).startswith(norm(title)), (n, title, heading)  # the chapter's title (or its start)
        assert len(body.split()) >= 20, f"chapter {n}: an objective, not a title"
