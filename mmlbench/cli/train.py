"""`mmlbench train` (placeholder until the engine lands)."""

from mmlbench.errors import MMLBenchError

NAME = "train"
NO_ARGS_IS_HELP = False


def command() -> None:
    """Train one run or a sweep of runs (not implemented yet)."""
    raise MMLBenchError("train is not implemented yet", exit_code=2)
