"""`python -m gomflow_messaging` is the same as the `gomflow-messaging` command."""

from gomflow_messaging.cli import main

raise SystemExit(main())
