"""`mmlbench download` (placeholder until the engine lands)."""

from mmlbench.errors import MMLBenchError

NAME = "download"
NO_ARGS_IS_HELP = False


def command() -> None:
    """Download and verify registered datasets (not implemented yet)."""
    raise MMLBenchError("download is not implemented yet", exit_code=2)
