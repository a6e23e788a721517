"""Mistakes on the command line itself: unknown commands and options, values of the wrong type, OS errors.

tyro draws its errors in a panel of many lines; the CLI turns each into one line that names the option and points
at --help. OS errors (a read-only disk, no permission, a full disk) become one line naming the path.
"""

from __future__ import annotations

import errno

import pytest
from cli_faults import assert_one_line_error

from drivestack.cli import _describe

BAD = [
    ("unknown-command", ["fly", "away"], ["unknown command"]),
    ("unknown-option", ["sim", "demo", "--nosuch", "1"], ["Unrecognized options", "--nosuch", "--help"]),
    ("not-a-number", ["sim", "demo", "--seconds", "abc"], ["--seconds", "abc", "--help"]),
    ("not-an-integer", ["eval", "policy", "--num-envs", "2.5"], ["--num-envs", "2.5"]),
    ("missing-value", ["bench", "tracking", "--detections"], ["--detections"]),
    ("bad-choice", ["train", "policy", "--algo", "sac"], ["--algo", "sac"]),
]


@pytest.mark.parametrize(("args", "contains"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_command_line_mistakes_are_one_line(run_cli, args: list[str], contains: list[str]) -> None:
    result = run_cli(*args)
    if args[0] == "fly":  # an unknown command prints the usage after its error line
        assert result.code == 2 and result.err.startswith("drivestack: error: unknown command")
        return
    assert_one_line_error(result, *contains)


def test_help_still_prints_and_exits_0(run_cli) -> None:
    result = run_cli("sim", "demo", "--help")
    assert result.code == 0 and "--seconds" in result.out


@pytest.mark.parametrize(
    ("err", "contains"),
    [
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.json"), ["/mnt/ro/out.json", "writable"]),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), ["/root/x", "permissions"]),
        (OSError(errno.ENOSPC, "No space left on device", "/data/big"), ["/data/big", "space"]),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/such"), ["/no/such"]),
        (ValueError("bad\nthing"), ["bad thing"]),
    ],
)
def test_os_errors_name_the_path_in_one_line(err: Exception, contains: list[str]) -> None:
    line = _describe(err)
    assert "\n" not in line and all(c in line for c in contains), line
