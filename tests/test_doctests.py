"""Run the docstring examples of every library module (STYLE.md rule 3: examples run)."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import isoplast_lite

pytestmark = pytest.mark.usefixtures("one_thread")  # small examples: one thread is faster

MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules(isoplast_lite.__path__, prefix="isoplast_lite.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("module_name", ["isoplast_lite", *MODULES])
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    torch.manual_seed(0)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False, report=True
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {module_name}"
