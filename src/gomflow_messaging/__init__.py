"""gomflow-messaging: GOMFLOW's buyer and GOM messaging in the chats they use (see channels/)."""

__version__ = "0.1.0"
