"""The publish workflow (.github/workflows/book.yml): valid for actionlint, running the README's
two commands verbatim, caching the runner's results, and deploying to Pages from main only.

It cannot run here; these checks are what can be known without GitHub.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _readme_commands() -> list[str]:
    # the same block that tests/test_project.py and .ci/run read
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M)
    assert match, "README.md has no ```bash block"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _actionlint() -> str:
    here = Path(sys.executable).parent / "actionlint"  # installed by requirements.txt into the venv
    found = str(here) if here.exists() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: .venv/bin/pip install -r requirements.txt")
    return found


def test_actionlint_finds_nothing():
    proc = subprocess.run([_actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_is_not_blind():
    # the same binary rejects a broken copy (an unknown expression context and a bad `runs-on`)
    broken = WORKFLOW.read_text().replace("${{ github.ref }}", "${{ gitbub.ref }}").replace("runs-on: ubuntu-latest", "runs-on: 42", 1)
    proc = subprocess.run([_actionlint(), "-no-color", "-"], input=broken, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "gitbub" in proc.stdout, proc.stdout + proc.stderr


def test_workflow_runs_exactly_the_readme_commands(workflow):
    steps = workflow["jobs"]["build"]["steps"]
    runs = [s["run"].strip() for s in steps if "run" in s]
    setup, test = _readme_commands()
    assert setup in runs and test in runs, (runs, setup, test)
    assert runs.index(setup) < runs.index(test)
    # nothing else builds the book or runs pytest in another way
    others = [r for r in runs if r not in (setup, test)]
    assert not [r for r in others if "pytest" in r or "jupyter-book" in r or "pip install" in r], others


def test_triggers_and_python(workflow):
    on = workflow["on"]
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    build = workflow["jobs"]["build"]
    assert build["container"]["image"].startswith("python:3.11-"), "Python 3.11, as the README's python3.11"
    assert build["container"]["image"].endswith("-bookworm"), "Debian bookworm: the Chromium the browser tests use"
    assert build["env"]["ISOPLAST_REQUIRE_HTML"] == "1", "built-HTML and browser tests must fail, not skip"
    assert build["env"]["MPLBACKEND"] == "Agg", "the build proves figures survive a non-interactive backend"
    assert "export MPLBACKEND=Agg" in (ROOT / ".ci" / "run").read_text()
    install = " ".join(s.get("run", "") for s in build["steps"])
    assert "apt-get install" in install and "chromium" in install


def test_the_runner_cache_is_kept_between_runs(workflow):
    caches = [s for s in workflow["jobs"]["build"]["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
    runner = [s for s in caches if s["with"]["path"] == "~/.cache/isoplast"]
    assert runner, "the runner's cache (~/.cache/isoplast, run.default_cache_dir) is not cached"
    key = runner[0]["with"]["key"]
    assert "hashFiles('isoplast_lite/**/*.py', 'notebooks/*.md')" in key and runner[0]["with"]["restore-keys"]
    steps = workflow["jobs"]["build"]["steps"]
    setup = _readme_commands()[0]
    assert steps.index(runner[0]) < [i for i, s in enumerate(steps) if s.get("run", "").strip() == setup][0]
    # the path is the runner's default cache folder as the build sees it (HOME unchanged)
    assert "ISOPLAST_CACHE" not in workflow["jobs"]["build"].get("env", {})


def test_deploys_to_pages_from_main_only(workflow):
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    upload = [s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-pages-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html"
    main_only = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert upload[0]["if"] == main_only and deploy["if"] == main_only
    assert deploy["needs"] == "build"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert workflow["permissions"] == {"contents": "read"}, "least privilege outside the deploy job"


def _evaluate_on(expression, ref: str, event: str):
    """The value of a `cancel-in-progress` for a run on ``ref``: a literal, or the one
    comparison this workflow uses (``${{ github.ref != 'refs/heads/X' }}``)."""
    if isinstance(expression, bool):
        return expression
    match = re.fullmatch(r"\$\{\{\s*github\.ref\s*(!=|==)\s*'([^']+)'\s*\}\}", str(expression).strip())
    assert match, f"cancel-in-progress: unexpected expression {expression!r}"
    return (ref != match.group(2)) if match.group(1) == "!=" else (ref == match.group(2))


def test_a_deploy_of_main_is_never_cancelled(workflow):
    # the run-level group: a push to main never cancels main's running build (it ends in the
    # Pages upload that the deploy job needs); a pull request's newer push does cancel
    top = workflow["concurrency"]
    assert _evaluate_on(top["cancel-in-progress"], "refs/heads/main", "push") is False
    assert _evaluate_on(top["cancel-in-progress"], "refs/pull/7/merge", "pull_request") is True
    assert workflow["jobs"]["deploy"]["concurrency"]["cancel-in-progress"] is False
    assert "concurrency" not in workflow["jobs"]["build"], "a job-level group could cancel the build of main"


def test_the_saved_runner_cache_is_bounded(workflow):
    steps = workflow["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    prune = [i for i, r in enumerate(runs) if "tools/prune_cache.py" in r]
    assert len(prune) == 1, "a step must bound ~/.cache/isoplast before the cache is saved"
    step = steps[prune[0]]
    match = re.search(r"tools/prune_cache\.py\s+~/\.cache/isoplast\s+--max-mb\s+(\d+)", step["run"])
    assert match and 0 < int(match.group(1)) <= 1000, step["run"]
    assert prune[0] > runs.index(_readme_commands()[1]), "after the tests (they write the cache)"
    assert step.get("if") == "always()", "a failing test must not skip the bound"
    # the step runs the tool that tests/test_prune_cache.py tests
    assert (ROOT / "tools" / "prune_cache.py").is_file()
