"""``python -m bench.benchmarks``: the figures ``make bench`` prints."""

from bench.benchmarks.figures import main

raise SystemExit(main())
