"""The discord channel."""
