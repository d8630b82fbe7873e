"""Test tiers: default = fast unit tests; `slow` = real registry models; `reference` = bit-exact reference maps.

Slow and reference tests run with `--runslow` (or CROSSMODEL_SLOW=1).
"""

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow / reference")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CROSSMODEL_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="real-model test: run with --runslow or CROSSMODEL_SLOW=1")
    for item in items:
        if "slow" in item.keywords or "reference" in item.keywords:
            item.add_marker(skip)
