"""Button labels in the catalogues: mark them for translators, warn on ones too long.

Chats cut a button's title at 20 characters (Messenger, WhatsApp Cloud API buttons), so a
text written with `label(...)` (gomflow_messaging.i18n, workflows/chat/text.py) must fit in
every language.

    i18n_labels.py pot NEW CURRENT   mark the label msgids of the freshly extracted NEW
                                     template; replace CURRENT with it only when more than
                                     its POT-Creation-Date changed (`make i18n` leaves the
                                     tree clean when no text changed)
    i18n_labels.py check             print a warning for every label msgid longer than 20
                                     characters in English or in a .po (`make i18n-check`);
                                     exit status 0, the tests hold the catalogues to it
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gomflow_messaging"
LOCALES_DIR = PACKAGE / "locales"
MAX_LABEL = 20
NOTE = f"Translators: a button label, at most {MAX_LABEL} characters."
_DATE = re.compile(rb'^"POT-Creation-Date: [^"]*"\n', re.MULTILINE)


def label_ids() -> set[str]:
    """The msgids written as ``label(<locale or ctx>, "...")`` anywhere in the package."""
    found = extract_from_dir(
        str(PACKAGE), method_map=[("**.py", "python")], keywords={"label": (2,)}
    )
    return {str(message) for _file, _line, message, _comments, _context in found}


def mark(new: Path, current: Path) -> None:
    labels = label_ids()
    with new.open("rb") as handle:
        template = read_po(handle)
    for message in template:
        if message.id in labels and NOTE not in message.auto_comments:
            message.auto_comments.append(NOTE)
    out = io.BytesIO()
    write_po(out, template, omit_header=False, sort_output=True, include_lineno=False)
    fresh = out.getvalue()
    old = current.read_bytes() if current.exists() else b""
    if _DATE.sub(b"", fresh) != _DATE.sub(b"", old):
        current.write_bytes(fresh)
    new.unlink()


def too_long() -> list[str]:
    labels = label_ids()
    problems = [
        f"en: {text!r} ({len(text)} characters)" for text in sorted(labels) if len(text) > MAX_LABEL
    ]
    for po in sorted(LOCALES_DIR.glob("*/LC_MESSAGES/messages.po")):
        locale = po.parent.parent.name
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        for message in catalog:
            text = message.string
            if message.id in labels and isinstance(text, str) and len(text) > MAX_LABEL:
                problems.append(f"{locale}: {message.id!r} -> {text!r} ({len(text)} characters)")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["pot"] and len(argv) == 3:
        mark(Path(argv[1]), Path(argv[2]))
        return 0
    if argv == ["check"]:
        for problem in too_long():
            print(f"warning: button label longer than {MAX_LABEL} characters: {problem}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
