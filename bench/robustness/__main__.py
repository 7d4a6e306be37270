"""``python -m bench.robustness``: the long robustness runs (``make bench``)."""

from bench.robustness.campaigns import main

raise SystemExit(main())
