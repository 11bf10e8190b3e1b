"""The import contract in pyproject.toml ([tool.importlinter]) holds, and would catch a breach.

Data flows one way (DESIGN.md): entrypoints (app, CLI, API routes, each channel's webhook)
-> workflows -> outbox, queue, dispatcher -> each channel's sender. CI runs the suite, so
this keeps `make lint`'s `lint-imports` enforced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "gomflow_messaging"


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contracts over the package found in source_root."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command;"
            " sys.exit(lint_imports_command())",
            "--no-cache",
            "--config",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contract_is_kept() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_sender_importing_a_workflow_breaks_the_contract(tmp_path: Path) -> None:
    """The contract is not vacuous: a channel's sender that imports a workflow is refused
    (found through the ``channels.*.channel`` wildcard, so a new channel is covered too)."""
    copy = tmp_path / "gomflow_messaging"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "locales"))
    sender = copy / "channels" / "telegram" / "channel.py"
    sender.write_text(
        sender.read_text() + "\nfrom gomflow_messaging.workflows import notify  # noqa\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "Channel senders import no workflow, route or entrypoint BROKEN" in result.stdout
