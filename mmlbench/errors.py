"""The one exception type the CLI turns into a one-line message and an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# The exit code of bad input (an unknown run, a bad --where, no matching runs): 1 is kept for a
# run that failed and for a regression the gate found, so a script can tell them apart.
INPUT_ERROR = 2


class MMLBenchError(Exception):
    """A problem the user can fix; shown as one line, never as a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid choice nearest to a mistyped name, if any is reasonably close, case aside
    (FP32 is nearest to fp32, not to tf32)."""
    by_folded = {choice.casefold(): choice for choice in choices}
    matches = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.5)
    return by_folded[matches[0]] if matches else None


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> MMLBenchError:
    """Error for an unknown registry key: names the valid keys and the closest one."""
    valid = sorted(choices)
    hint = closest(name, valid)
    suggestion = f" Did you mean '{hint}'?" if hint else ""
    return MMLBenchError(f"unknown {kind} '{name}'.{suggestion} Valid: {', '.join(valid)}.")
