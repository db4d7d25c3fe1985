"""Fault injection, load and memory suites against real processes (``make stress``).

Everything listens on 127.0.0.1 only and is bounded in time; the figures (faults
injected, requests checked, memory growth) are printed at the end of the run.
"""
