import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine.demo import generate  # noqa: E402 (after the path above, as the test modules import)


@pytest.fixture(scope="module")
def generated_erp(tmp_path_factory) -> Path:
    """The demo ERP (size S, seed 7) that the Cloud Connect stand-in serves (cloud_connect.py),
    generated once per test module."""
    path = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    generate(f"sqlite:///{path}", size="S", seed=7)
    return path


@pytest.fixture
def erp(request, generated_erp: Path, tmp_path: Path) -> Path:
    """The module's demo ERP (generated_erp), shared by its tests, which only read it. A module
    whose tests change the ERP parametrises `erp` indirectly with "copy"
    (`pytestmark = pytest.mark.parametrize("erp", ["copy"], indirect=True)`): each test gets a
    copy of its own."""
    if getattr(request, "param", None) != "copy":
        return generated_erp
    path = tmp_path / "erp.sqlite"
    shutil.copyfile(generated_erp, path)
    return path
