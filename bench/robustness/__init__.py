"""The long robustness runs (docs/robustness.md): link fuzzing, power loss, link faults."""
