"""Channel-agnostic workflows: they decide what to send and write the outbox; never a channel."""
