"""The project's own promises: the README's two commands, the pins, and CI reading the README."""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M)
    assert match, "README.md has no ```bash block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_opens_with_setup_and_test_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    # only the title and a short description come before the two commands
    assert first_block < 800
    setup, test = _readme_commands()
    assert "pip install -r requirements.txt" in setup
    assert "jupyter-book build . -W" in setup
    assert "pytest" in test


def test_ci_script_runs_exactly_the_readme_commands():
    script = (ROOT / ".ci" / "run").read_text()
    # .ci/run extracts the block with this awk program; check it yields the same two commands
    awk = re.search(r"awk '([^']*)' README.md", script)
    assert awk, ".ci/run no longer reads the commands from README.md"
    out = subprocess.run(
        ["awk", awk.group(1), str(ROOT / "README.md")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == _readme_commands()


def test_requirements_pin_cpu_torch_and_jupyter_book_1():
    lines = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
    ]
    assert "torch==2.13.0" in lines
    jb = [line for line in lines if line.startswith("jupyter-book")]
    assert jb and "<2" in jb[0], jb


def test_pyproject_keeps_torch_loose_so_colab_never_reinstalls_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = meta["project"]["dependencies"]
    torch_dep = [d for d in deps if d.replace(" ", "").startswith("torch")]
    assert torch_dep == ["torch>=2.2"], torch_dep
    assert not any("==" in d for d in deps), deps
