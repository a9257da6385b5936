"""Test-suite wide fixtures.

Installed third-party plugins never leak into the test run: the default host only loads entry
points shipped by the ``wgfbench`` distribution itself (the built-ins). A test that wants the full
environment builds its own ``wgfbench.Host()``. Noise floors go to a per-session cache directory.
"""

from __future__ import annotations

import os

import pytest

import wgfbench
from wgfbench.host import Host, set_default_host
from wgfbench.metrics.cache import CACHE_DIR_ENV


@pytest.fixture(autouse=True, scope="session")
def builtins_only_host():
    old = set_default_host(Host(distributions={"wgfbench"}))
    yield wgfbench.default_host()
    set_default_host(old)


@pytest.fixture(autouse=True, scope="session")
def private_floor_cache(tmp_path_factory):
    """Floors computed by the tests go to a per-session directory, never the user's cache."""
    old = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("wgfbench-cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = old


@pytest.fixture(autouse=True)
def _no_env_plugin_blocking(monkeypatch):
    monkeypatch.delenv("WGFBENCH_DISABLE_PLUGINS", raising=False)
