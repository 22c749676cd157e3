"""Fixtures of the replication tests: a primary with a streaming standby (tests/harness/replpair.py)."""

import pytest

from tests.harness.replpair import ReplPair


@pytest.fixture
def pair():
    with ReplPair() as built:
        yield built


@pytest.fixture
def sync_pair():
    with ReplPair(sync=True) as built:
        yield built
