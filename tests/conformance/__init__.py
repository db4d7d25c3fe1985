"""The examples contract (shared/contract/EXAMPLES.md), checked against every example."""
