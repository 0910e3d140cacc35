"""Colab and Binder open one notebook, outside any clone: the chapters must run from the wheel alone.

A wheel of the package is built and installed into a fresh virtual environment in a temporary
folder that holds no repository; the reader notebooks are copied there and executed top to
bottom (FAST mode) by that environment's Python. So every file a chapter needs (the shipped
results, the vendored JavaScript) must travel inside the package.

To keep the test offline and quick, the new environment borrows the *dependencies* (torch,
pandas, Jupyter, ...) from the development environment through a path entry; the package itself
comes only from the wheel (checked: ``isoplast_lite.__file__`` lies in the temporary folder).

The same environment, before the wheel is installed, checks the chapters' bad-input path: the
install cell, when pip cannot install the package, ends in one sentence (no traceback).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))

RUNNER = textwrap.dedent(
    """
    import json, os, sys, nbformat
    from nbclient import NotebookClient
    path, mode = sys.argv[1], sys.argv[2]
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute(env={**os.environ, "ISOPLAST_FAST": "1" if mode == "fast" else "0"})
    errors = [dict(ename=o.ename, evalue=o.evalue, traceback=o.traceback)
              for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    print(json.dumps(errors))
    """
)


def _python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _run_notebook(python: Path, nb_path: Path, env: dict, mode: str = "fast") -> list:
    runner = nb_path.parent / "_run_notebook.py"
    runner.write_text(RUNNER)
    proc = subprocess.run([str(python), str(runner), str(nb_path), mode], env=env, cwd=nb_path.parent,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A new virtual environment outside the repository: dependencies borrowed, no isoplast_lite."""
    tmp = tmp_path_factory.mktemp("colab")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, cwd=tmp)
    target = subprocess.run([str(_python(env_dir)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    # a plain path entry: the development environment's packages are importable, but its .pth
    # files (the editable install of isoplast_lite) are not processed
    Path(target, "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISOPLAST_", "PYTEST", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp / "home"), ISOPLAST_CACHE=str(tmp / "cache"), PYTHONNOUSERSITE="1",
               PATH=f"{env_dir / 'bin'}:{env.get('PATH', '')}")  # fmt: skip
    (tmp / "home").mkdir()
    work = tmp / "work"  # where the notebooks are opened: no repository above it
    work.mkdir()
    return {"tmp": tmp, "python": _python(env_dir), "env": env, "work": work}


def test_without_the_package_the_install_cell_fails_in_one_sentence(fresh_env):
    python, env = fresh_env["python"], dict(fresh_env["env"])
    probe = subprocess.run([str(python), "-c", "import importlib.util; print(importlib.util.find_spec('isoplast_lite'))"],
                           env=env, capture_output=True, text=True, check=True, cwd=fresh_env["work"])  # fmt: skip
    assert probe.stdout.strip() == "None", "the fresh environment must not see isoplast_lite yet"
    first = nbformat.read(CHAPTERS[0], as_version=4)
    install = next(c for c in first.cells if c.cell_type == "code")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(install.source)])
    path = fresh_env["work"] / "install-only.ipynb"
    nbformat.write(nb, path)
    # pip may not reach any index, and git may not fetch over the network: the install must fail
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(fresh_env["tmp"]), GIT_ALLOW_PROTOCOL="file")
    errors = _run_notebook(python, path, env)
    assert len(errors) == 1 and errors[0]["ename"] == "SetupError", errors
    assert len(errors[0]["traceback"]) == 1, errors[0]["traceback"]  # one sentence, no traceback
    assert "pip install" in errors[0]["traceback"][0]


@pytest.fixture(scope="module")
def installed(fresh_env):
    """Build the wheel and install it (alone, no dependencies) into the fresh environment."""
    dist = fresh_env["tmp"] / "dist"
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "-w", str(dist), str(ROOT)],
                   check=True, cwd=fresh_env["tmp"])  # fmt: skip
    wheels = list(dist.glob("isoplast_lite-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([str(fresh_env["python"]), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheels[0])], check=True, env=fresh_env["env"])  # fmt: skip
    where = subprocess.run([str(fresh_env["python"]), "-c", "import isoplast_lite; print(isoplast_lite.__file__)"],
                           env=fresh_env["env"], capture_output=True, text=True, check=True, cwd=fresh_env["work"])  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(fresh_env["tmp"]), where.stdout
    return fresh_env


def test_wheel_carries_the_shipped_results(installed):
    code = ("from isoplast_lite import results; import json; "
            "print(json.dumps({g: sorted(results.manifest(g)) for g in results.GROUPS}))")  # fmt: skip
    out = subprocess.run([str(installed["python"]), "-c", code], env=installed["env"], capture_output=True,
                         text=True, check=True, cwd=installed["work"])  # fmt: skip
    from isoplast_lite import results

    assert json.loads(out.stdout) == {g: sorted(results.manifest(g)) for g in results.GROUPS}


def test_missing_shipped_results_say_so_in_one_sentence(installed):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from isoplast_lite import results\nresults.load('random-label-digits')")])  # fmt: skip
    path = installed["work"] / "missing-data.ipynb"
    nbformat.write(nb, path)
    env = dict(installed["env"], ISOPLAST_RESULTS=str(installed["tmp"] / "nowhere"))
    errors = _run_notebook(installed["python"], path, env)
    assert len(errors) == 1 and errors[0]["ename"] == "MissingResultsError", errors
    assert len(errors[0]["traceback"]) == 1 and "reinstall" in errors[0]["traceback"][0]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_from_the_wheel_outside_a_clone(installed, chapter):
    path = installed["work"] / chapter.name
    shutil.copy(chapter, path)
    errors = _run_notebook(installed["python"], path, installed["env"])
    assert not errors, [(e["ename"], e["evalue"]) for e in errors]
