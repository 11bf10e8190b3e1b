"""The chat bots' brain, by concern: one channel-agnostic bot for every chat platform.

`types` (what chats send and get back), `router` (the `Bot`: parsing, group rules,
dispatch), `conversation` (state in Redis), `buyer`, `preferences`, `linking`, `gom` (the
commands), `text` (shared wording and formatting).
"""
