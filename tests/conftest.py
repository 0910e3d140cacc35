"""Shared pytest fixtures (keep this file small)."""

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch.Generator: every test draws its randomness from here."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (small tensors; much faster on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
