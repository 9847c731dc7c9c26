"""The operators' tool explains itself: every command has a --help, and the runbook shows each one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = ["list", "show", "replay", "repair", "discard"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dead_letter_admin", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_overview_names_every_command_with_an_example() -> None:
    overview = run("--help")
    assert overview.returncode == 0
    for command in COMMANDS:
        assert f"\n  {command} " in overview.stdout, command
    assert "--dry-run" in overview.stdout and "Examples:" in overview.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_and_a_runbook_section(command: str) -> None:
    help_text = run(command, "--help")
    assert help_text.returncode == 0 and f"usage: python -m dead_letter_admin {command}" in help_text.stdout
    runbook = (ROOT / "docs" / "dead-letters.md").read_text()
    assert f"python -m dead_letter_admin {command}" in runbook, f"docs/dead-letters.md shows no `{command}`"


def test_a_missing_command_says_which_exist() -> None:
    missing = run()
    assert missing.returncode == 2 and "COMMAND" in missing.stderr


def test_a_bulk_replay_needs_a_filter_and_the_rate_is_bounded() -> None:
    no_filter = run("--token", "t", "--api", "http://127.0.0.1:9/api", "replay", "--yes", "--why", "x")
    assert no_filter.returncode == 1 and "say which dead letters to replay" in no_filter.stderr
    too_fast = run("replay", "--reason", "X", "--rate", "5000")
    assert too_fast.returncode == 2 and "at most 500 replays per second" in too_fast.stderr
