"""Fixtures shared by every test: each test starts from the same random state.

Without this, a test that draws with the global generators (``torch.randn``, ``np.random``,
``random``) sees whatever the tests before it left behind, so its inputs change with the test
order and a rare draw can fail it (CI once failed on ``os.urandom`` garbage). Tests that need
their own streams still pass explicit generators.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test():
    random.seed(0)
    np.random.seed(0)  # the legacy global generator: what unseeded code draws from
    torch.manual_seed(0)
    yield
