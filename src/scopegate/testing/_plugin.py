"""pytest plugin entry point for scopegate's fixtures."""
