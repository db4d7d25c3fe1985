"""Tests of scopegate.presets (provider configurations)."""
