"""Tests of the Starlette, FastAPI, Flask and Django integrations."""
