"""Where users meet the book: a Colab-like environment and a Binder environment, built from scratch.

**Colab-like.** A fresh virtual environment (no system site-packages, nothing of the development
environment) gets what Colab preinstalls, :data:`COLAB_PACKAGES` (torch 2.13, numpy, pandas,
scipy, matplotlib, seaborn, altair, ipywidgets, ipykernel, papermill; nothing of the book's
build: no myst-nb, no jupytext, no mnist1d). A wheel of this repository is built, and the
**install cell of the reader notebooks** installs it, exactly as in Colab, with only the
``git+URL@vX.Y.Z`` of its requirement replaced by the wheel's path: same extra, same checks, same
pip call. Then every reader notebook runs top to bottom from a folder outside any clone, and every
student notebook (``tools/student_edition.py``) up to its first skeleton (the first cell a
student must fill in). ``MPLBACKEND=Agg`` is set, as in many CI images: every figure of the
committed notebook must still be drawn.

**Binder.** Another fresh environment is built from ``.binder/`` alone
(``requirements.txt``, then ``postBuild`` in a copy of the repository, as repo2docker does) and
runs one chapter. What differs from real Binder: repo2docker's base image brings the Jupyter
server and ipykernel (here: ``ipykernel`` and ``nbclient``, which run the notebook, are added);
the PyTorch CPU index that the requirements name is unreachable here, so pip is given
``--retries 0 --timeout 5`` and finds the same ``torch==2.13.0+cpu`` wheel on this machine's
wheel folder (on Binder it comes from that index).

Mode. Notebooks run in FAST mode (the papermill parameter ``FAST=True``): full mode takes one to
two minutes per chapter cold, too long for CI. ``ISOPLAST_USER_ENV_FULL=1`` runs the reader
notebooks in full mode instead. ``ISOPLAST_USER_ENV_REPORT=FILE`` appends one JSON line per
notebook (environment, notebook, passed, seconds): the table of issue 21.

Wheels come from pip's cache (CI caches ``~/.cache/pip``); the environments are built once per
test session and reused by every test of this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tools_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
READER = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
#: what Colab preinstalls that the chapters use (its versions vary; these are the index's newest)
COLAB_PACKAGES = ["torch==2.13.0", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "altair", "ipywidgets",
                  "ipykernel", "papermill"]  # fmt: skip
FULL = os.environ.get("ISOPLAST_USER_ENV_FULL") == "1"
#: the chapter the Binder test runs (FAST mode)
BINDER_CHAPTER = "03-aei-groupsort"

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the user environments are Python 3.11")


def _report(env_name: str, notebook: str, passed: bool, seconds: float, mode: str) -> None:
    path = os.environ.get("ISOPLAST_USER_ENV_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"env": env_name, "notebook": notebook, "mode": mode, "passed": passed,
                                     "seconds": round(seconds, 1)}) + "\n")  # fmt: skip


def _clean_env(tmp: Path, venv: Path) -> dict:
    """The environment of a user's process: no trace of the development environment."""
    drop = ("ISOPLAST_", "PYTEST", "VIRTUAL_ENV", "PYTHONPATH", "JUPYTER", "MPLBACKEND", "COV_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    (tmp / "home").mkdir(exist_ok=True)
    env.update(HOME=str(tmp / "home"), ISOPLAST_CACHE=str(tmp / "cache"), PYTHONNOUSERSITE="1",
               PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", MPLBACKEND="Agg",
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")))  # fmt: skip
    return env


def _venv(tmp: Path, name: str) -> Path:
    venv = tmp / name
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True, cwd=tmp)
    return venv


def _pip(venv: Path, env: dict, *args: str, cwd: Path) -> None:
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _python(venv: Path, env: dict, code: str, cwd: Path) -> str:
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def _kernel(venv: Path, env: dict, cwd: Path) -> None:
    """Register the environment's own python as the kernel ``python3`` (inside the venv)."""
    subprocess.run([str(venv / "bin" / "python"), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   env=env, cwd=cwd, check=True, capture_output=True)  # fmt: skip


def _images(nb) -> list:
    """Per code cell, the number of image outputs (what a reader sees as figures)."""
    return [sum(1 for o in c.get("outputs", []) if any(k.startswith("image/") for k in o.get("data", {})))
            for c in nb.cells if c.cell_type == "code"]  # fmt: skip


def _stderr(nb) -> list:
    return [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr"]  # fmt: skip


# --------------------------------------------------------------------------- Colab-like
@pytest.fixture(scope="session")
def colab_bare(tmp_path_factory):
    """A fresh environment with Colab's preinstalled packages and no isoplast_lite."""
    tmp = tmp_path_factory.mktemp("colab")
    venv = _venv(tmp, "venv")
    env = _clean_env(tmp, venv)
    _pip(venv, env, *COLAB_PACKAGES, cwd=tmp)
    _kernel(venv, env, tmp)
    work = tmp / "work"  # where the notebooks are opened: no repository above it
    work.mkdir()
    have = _python(venv, env, "import importlib.util as u; print([m for m in ('isoplast_lite', 'myst_nb', 'jupytext', "
                              "'mnist1d') if u.find_spec(m)])", work)  # fmt: skip
    assert have == "[]", f"the Colab-like environment must not have {have}"
    return {"tmp": tmp, "venv": venv, "env": env, "work": work}


def _install_cell() -> str:
    first = nbformat.read(READER[0], as_version=4)
    return next(c for c in first.cells if c.cell_type == "code").source


def _run_cells(colab: dict, sources: list, name: str, env: "dict | None" = None) -> list:
    """Run ``sources`` as the cells of a new notebook in the Colab-like kernel; return its errors."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = colab["work"] / f"{name}.ipynb"
    nbformat.write(nb, path)
    script = ("import nbformat, sys\nfrom nbclient import NotebookClient\nnb = nbformat.read(sys.argv[1], 4)\n"
              "NotebookClient(nb, timeout=1800, kernel_name='python3', allow_errors=True).execute()\n"
              "nbformat.write(nb, sys.argv[1])\n")  # fmt: skip
    proc = subprocess.run([str(colab["venv"] / "bin" / "python"), "-c", script, str(path)], env=env or colab["env"],
                          cwd=colab["work"], capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = nbformat.read(path, as_version=4)
    return [o for c in done.cells for o in c.get("outputs", []) if o.output_type == "error"]


def test_without_a_network_the_install_cell_fails_in_one_sentence(colab_bare):
    env = dict(colab_bare["env"], PIP_NO_INDEX="1", PIP_FIND_LINKS=str(colab_bare["tmp"] / "nowhere"),
               GIT_ALLOW_PROTOCOL="file")  # pip reaches no index and git fetches nothing  # fmt: skip
    errors = _run_cells(colab_bare, [_install_cell()], "install-offline", env)
    assert len(errors) == 1 and errors[0].ename == "SetupError", errors
    assert len(errors[0].traceback) == 1 and "pip install" in errors[0].traceback[0], errors[0].traceback


@pytest.fixture(scope="session")
def colab(colab_bare):
    """The Colab-like environment after the install cell installed a wheel of this repository."""
    tmp, venv, env = colab_bare["tmp"], colab_bare["venv"], colab_bare["env"]
    dist = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(dist), str(ROOT)], cwd=tmp, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = dist.glob("isoplast_lite-*.whl")
    cell = _install_cell()
    # the requirement the cell installs, whatever it is (extras, pin), with the wheel for the URL
    (git,) = set(re.findall(r"(isoplast_lite(?:\[[\w,]+\])? @ git\+[^'\"\s]+)", cell))
    local = git.split(" @ ")[0] + f" @ {wheel.as_uri()}"
    import isoplast_lite

    version = isoplast_lite.__version__
    torch_before = _python(venv, env, "import torch, os; print(torch.__version__, os.path.getmtime(torch.__file__))",
                           colab_bare["work"])  # fmt: skip
    errors = _run_cells(colab_bare, [cell.replace(git, local)], "install")
    assert not errors, [(e.ename, e.evalue) for e in errors]
    found = json.loads(_python(venv, env, "import json, isoplast_lite, torch, os; print(json.dumps([isoplast_lite.__file__, "
                                          "isoplast_lite.__version__, f'{torch.__version__} {os.path.getmtime(torch.__file__)}']))",
                               colab_bare["work"]))  # fmt: skip
    assert Path(found[0]).is_relative_to(venv), found  # the wheel's copy, not the repository
    assert found[1] == version
    assert found[2] == torch_before, "the install cell must never touch torch"
    return colab_bare


def _execute(venv: Path, env: dict, src: Path, out: Path, fast: bool) -> dict:
    """Run one notebook with the environment's papermill: ``{"nb", "seconds", "error"}``."""
    papermill = venv / "bin" / "papermill"
    start = time.perf_counter()
    proc = subprocess.run([str(papermill), str(src), str(out), "-p", "FAST", str(fast), "-k", "python3",
                           "--cwd", str(src.parent), "--execution-timeout", "900", "--no-progress-bar"],
                          env=env, cwd=src.parent, capture_output=True, text=True, timeout=3600)  # fmt: skip
    seconds = time.perf_counter() - start
    nb = nbformat.read(out, as_version=4) if out.exists() else None
    error = None
    if proc.returncode != 0:
        errors = [f"{o.ename}: {o.evalue}" for c in (nb.cells if nb else []) if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.output_type == "error"]  # fmt: skip
        error = f"{src.name} failed after {seconds:.0f} s: {errors or proc.stderr[-3000:]}"
    if nb is not None:  # the chapter's own cells, without the one papermill adds for the parameters
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    return {"nb": nb, "seconds": seconds, "error": error}


def _student_prefix(path: Path, work: Path) -> Path:
    """The student notebook ``path`` cut before its first skeleton cell, written into ``work``."""
    nb = nbformat.read(path, as_version=4)
    first = next((i for i, c in enumerate(nb.cells) if "skeleton" in c.metadata.get("tags", [])), len(nb.cells))
    nb.cells = nb.cells[:first]
    src = work / f"student-{path.name}"
    nbformat.write(nb, src)
    return src


@pytest.fixture(scope="session")
def colab_runs(colab, tmp_path_factory):
    """Every reader notebook and every student notebook (up to its first skeleton), executed in
    the Colab-like environment, a few at a time (each kernel trains on one thread: the chapters
    call ``torch.set_num_threads(1)``). Keyed ``("reader"|"student", notebook name)``."""
    from concurrent.futures import ThreadPoolExecutor

    student_dir = tmp_path_factory.mktemp("student")
    students = load_tool("student_edition").write_student_notebooks(ROOT, student_dir)
    work = colab["work"]
    jobs = {}
    for chapter in READER:
        shutil.copy(chapter, work / chapter.name)
        jobs[("reader", chapter.name)] = (work / chapter.name, work / f"out-{chapter.name}", not FULL)
    for path in students:
        src = _student_prefix(path, work)
        jobs[("student", path.name)] = (src, work / f"out-{src.name}", True)
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(_execute, colab["venv"], colab["env"], *job) for key, job in jobs.items()}
        runs = {key: f.result() for key, f in futures.items()}
    for (kind, name), run in runs.items():
        mode = ("full" if FULL else "fast") if kind == "reader" else "fast, up to the first skeleton"
        _report("colab", f"{'student/' if kind == 'student' else ''}{name}", run["error"] is None, run["seconds"], mode)
    return runs


@pytest.mark.parametrize("chapter", READER, ids=[p.stem for p in READER])
def test_reader_notebook_runs_in_colab(colab_runs, chapter):
    run = colab_runs[("reader", chapter.name)]
    if run["error"]:
        pytest.fail(run["error"])
    committed = nbformat.read(chapter, as_version=4)
    assert _images(run["nb"]) == _images(committed), "with MPLBACKEND=Agg a figure went missing (or appeared)"
    assert not [t for t in _stderr(run["nb"]) if "findfont" in t], "font warnings on stderr"


@pytest.mark.parametrize("chapter", READER, ids=[p.stem for p in READER])
def test_student_notebook_runs_in_colab_up_to_its_first_skeleton(colab_runs, chapter):
    run = colab_runs[("student", chapter.name)]
    if run["error"]:
        pytest.fail(run["error"])
    assert any(c.cell_type == "code" and c.get("outputs") for c in run["nb"].cells), "nothing ran"


# --------------------------------------------------------------------------- Binder
@pytest.fixture(scope="session")
def binder(tmp_path_factory):
    """An environment from .binder/ alone, in a copy of the repository (what repo2docker clones)."""
    tmp = tmp_path_factory.mktemp("binder")
    clone = tmp / "repo"
    skip = {".venv", ".git", "_build", "student", ".pytest_cache", ".hypothesis", ".isoplast_cache",
            "isoplast_lite.egg-info", "__pycache__"}  # fmt: skip
    shutil.copytree(ROOT, clone, ignore=lambda d, names: [n for n in names if n in skip])
    venv = _venv(tmp, "venv")
    env = _clean_env(tmp, venv)
    # the PyTorch CPU index is unreachable here: fail fast on it, take torch from the local wheels
    _pip(venv, env, "--retries", "0", "--timeout", "5", "-r", str(clone / ".binder" / "requirements.txt"), cwd=clone)
    _pip(venv, env, "ipykernel", "nbclient", "papermill", cwd=clone)  # repo2docker's base image: the Jupyter side
    proc = subprocess.run(["bash", str(clone / ".binder" / "postBuild")], env=env, cwd=clone, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _kernel(venv, env, clone)
    return {"tmp": tmp, "venv": venv, "env": env, "clone": clone}


def test_a_chapter_runs_on_binder(binder):
    src = binder["clone"] / "notebooks" / f"{BINDER_CHAPTER}.ipynb"
    run = _execute(binder["venv"], binder["env"], src, binder["tmp"] / f"out-{src.name}", fast=True)
    _report("binder", src.name, run["error"] is None, run["seconds"], "fast")
    if run["error"]:
        pytest.fail(run["error"])
    where = _python(binder["venv"], binder["env"], "import isoplast_lite; print(isoplast_lite.__file__)", binder["tmp"])
    assert Path(where).is_relative_to(binder["clone"]), where  # postBuild's editable install of the clone
    assert _images(run["nb"]) == _images(nbformat.read(src, as_version=4)), "with MPLBACKEND=Agg a figure went missing"
