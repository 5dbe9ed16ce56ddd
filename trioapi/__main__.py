"""``python -m trioapi``: the same as the ``trioapi`` command."""

from trioapi.cli import main

raise SystemExit(main())
