"""Test-suite wide fixtures.

Installed third-party plugins never leak into the test run: the default host only loads entry
points shipped by the ``wgfbench`` distribution itself (the built-ins). A test that wants the full
environment builds its own ``wgfbench.Host()``.
"""

from __future__ import annotations

import pytest

import wgfbench
from wgfbench.host import Host, set_default_host


@pytest.fixture(autouse=True, scope="session")
def builtins_only_host():
    old = set_default_host(Host(distributions={"wgfbench"}))
    yield wgfbench.default_host()
    set_default_host(old)


@pytest.fixture(autouse=True)
def _no_env_plugin_blocking(monkeypatch):
    monkeypatch.delenv("WGFBENCH_DISABLE_PLUGINS", raising=False)
