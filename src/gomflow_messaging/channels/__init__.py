"""Channel adapters: one package per platform, known to the core through `registry`."""
