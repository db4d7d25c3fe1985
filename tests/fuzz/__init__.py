"""Property-based fuzzing (hypothesis) of every parser that sees attacker input.

Runs in ``make test``. ``HYPOTHESIS_PROFILE=ci`` multiplies the example counts (about
58,000 examples in total); the totals per property are printed at the end of the run.
"""
