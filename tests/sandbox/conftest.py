"""A real sandbox process per test (127.0.0.1, a free port, its own store in tmp_path)."""
from __future__ import annotations

import pytest

from engine.sandbox.process import sandbox_process

TOKEN = "t-sandbox-1"


@pytest.fixture
def sandbox(tmp_path):
    with sandbox_process(tmp_path / "portal.sqlite", token=TOKEN, extra_tokens=("othercustomer:t-other-9",)) as sb:
        yield sb
