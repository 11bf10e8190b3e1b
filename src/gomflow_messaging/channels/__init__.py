"""Channel adapters: one module per platform behind the `Channel` protocol in `base`."""
