"""Tests that run the example apps as real server processes."""
