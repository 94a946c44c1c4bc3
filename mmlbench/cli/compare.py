"""`mmlbench compare` (placeholder until the engine lands)."""

from mmlbench.errors import MMLBenchError

NAME = "compare"
NO_ARGS_IS_HELP = False


def command() -> None:
    """Compare stored runs, with significance tests and a CI gate (not implemented yet)."""
    raise MMLBenchError("compare is not implemented yet", exit_code=2)
