"""``python -m roomsvc``: the same as the ``roomsvc`` command."""

from roomsvc.cli.main import main

raise SystemExit(main())
