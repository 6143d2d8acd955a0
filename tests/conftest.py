pytest_plugins = [
    "tests.support.containerd_fixtures",
    "tests.support.registry_fixtures",
    "tests.support.image_fixtures",
    "tests.support.real_image_fixtures",
    "tests.support.net_fixtures",
    "tests.support.lazy_fixtures",
    "tests.support.tool_fixtures",
]

import pytest  # noqa: E402

from tests.support.cli import run_tool  # noqa: E402


@pytest.fixture
def ctk(containerd, ctd):
    """Run ctk-pull against the test's containerd and namespace: ``ctk("images") -> Result``."""
    def run(*args, **kw):
        return run_tool("ctk-pull", *args, address=containerd.address, namespace=ctd.namespace, **kw)
    return run
