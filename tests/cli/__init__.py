"""Tests of the scopegate command line (token sub-commands)."""
