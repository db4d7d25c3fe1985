"""Helpers for testing APIs protected by scopegate (filled in by the testing-kit work)."""
