"""The host test bench for the intrathecal pump firmware. Not for clinical use."""
