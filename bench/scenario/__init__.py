"""Scenario files: the step model, loading and validation, running the steps on a board."""
