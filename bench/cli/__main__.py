"""``python -m bench.cli``: the ``pumpbench`` command."""

from bench.cli.main import main

raise SystemExit(main())
