"""gomflow-messaging: GOMFLOW's buyer and GOM messaging on WhatsApp, Telegram and Discord."""

__version__ = "0.1.0"
