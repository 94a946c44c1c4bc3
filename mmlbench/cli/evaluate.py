"""`mmlbench evaluate` (placeholder until the engine lands)."""

from mmlbench.errors import MMLBenchError

NAME = "evaluate"
NO_ARGS_IS_HELP = False


def command() -> None:
    """Re-score a stored run checkpoint (not implemented yet)."""
    raise MMLBenchError("evaluate is not implemented yet", exit_code=2)
