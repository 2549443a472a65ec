"""Shared pytest fixtures and marker skips."""
import shutil

import pytest

from moevit.config import preset


@pytest.fixture(scope="session")
def edge_cfg():
    return preset("edge-moe")


@pytest.fixture(scope="session")
def tiny_cfg():
    return preset("tiny")


def pytest_collection_modifyitems(config, items):
    have_gpp = shutil.which("g++") is not None
    for item in items:
        if "hls" in item.keywords and not have_gpp:
            item.add_marker(pytest.mark.skip(reason="g++ not installed (needed for ap_fixed C++)"))
