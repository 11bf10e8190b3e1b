"""`whatsapp-templates list|set|delete`: the approved Content templates used outside 24 h."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gomflow_messaging import db
from gomflow_messaging.channels.whatsapp import templates as wt
from gomflow_messaging.cli import CommandError, run

if TYPE_CHECKING:
    import argparse

    from gomflow_messaging.settings import Settings


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`whatsapp-templates list|set|delete`."""

    async def main() -> str:
        conn = await db.connect(settings.database_url)
        try:
            if args.action == "list":
                rows = await wt.list_templates(conn)
                return (
                    "\n".join(
                        f"{r['event']} {r['locale']} {r['content_sid']} "
                        + json.dumps(r["variables"])
                        for r in rows
                    )
                    or "no templates: outside 24 h WhatsApp messages are skipped"
                )
            if not args.event or not args.locale:
                raise CommandError(f"whatsapp-templates {args.action}: give EVENT and LOCALE")
            if args.action == "delete":
                if not await wt.delete_template(conn, args.event, args.locale):
                    raise CommandError(
                        f"whatsapp-templates delete: no template for {args.event} {args.locale}"
                        " (see `whatsapp-templates list`)"
                    )
                return "deleted"
            if not args.content_sid:
                raise CommandError("whatsapp-templates set: give the template's CONTENT_SID")
            await wt.set_template(
                conn,
                args.event,
                args.locale,
                args.content_sid,
                wt.parse_variables(args.var),
                settings.whatsapp_provider,
            )
            return f"saved {args.event} {args.locale} {args.content_sid}"
        except wt.TemplateError as exc:
            raise CommandError(f"whatsapp-templates {args.action}: {exc}") from None
        finally:
            await conn.close()

    print(run(main()))
    return 0
