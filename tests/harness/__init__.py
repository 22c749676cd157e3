"""Test harness: throwaway PostgreSQL clusters for engine and module tests."""
