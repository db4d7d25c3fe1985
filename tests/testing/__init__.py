"""Tests of scopegate.testing (the kit) and its pytest plugin."""
