"""The ``pumpbench`` command."""
