"""Test harness: throwaway PostgreSQL clusters for engine and module tests."""

import os

# The checkout's root (where galaxy.yml is), for tests that read its files.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
