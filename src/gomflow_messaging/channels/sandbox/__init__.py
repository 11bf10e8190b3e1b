"""The sandbox channel."""
