"""What workflows are given: a narrow view of the composition root, never the container.

The composition root builds one (its `Services` would fit too); a workflow names only this
protocol, so no workflow imports the composition root (nor, through it, the dispatcher).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.db import Pool
    from gomflow_messaging.queue import JobQueue
    from gomflow_messaging.settings import Settings


class Ports(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def pool(self) -> Pool: ...

    #: Jobs (SAQ) and the Redis they live in: enqueue, counters, flags.
    @property
    def queue(self) -> JobQueue: ...

    #: The enabled channels, by name (recipients are resolved only on these).
    @property
    def channels(self) -> Mapping[str, Channel]: ...
