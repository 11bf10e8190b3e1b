"""HTTP entrypoints: thin routes that verify, parse and call a workflow."""
