"""Fixtures of the refocus tests."""

from __future__ import annotations

import pytest
from refocus_cases import SimCase, make_case


@pytest.fixture(scope="session")
def sim_case() -> SimCase:
    return make_case(seed=5)
