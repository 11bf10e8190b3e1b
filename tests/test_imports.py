"""The import contract in pyproject.toml ([tool.importlinter]) holds, and would catch a breach.

Data flows one way (DESIGN.md): entrypoints -> workflows -> outbox, queue, dispatcher ->
channel senders. CI runs the suite, so this keeps `make lint`'s `lint-imports` enforced.
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
    """The contract is not vacuous: a channel sender that imports a workflow is refused."""
    copy = tmp_path / "gomflow_messaging"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "locales"))
    pacing = copy / "channels" / "pacing.py"
    pacing.write_text(
        pacing.read_text() + "\nfrom gomflow_messaging.workflows import notify  # noqa\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "Channel senders import no workflow and no route BROKEN" in result.stdout
