"""`mmlbench preprocess` (placeholder until the engine lands)."""

from mmlbench.errors import MMLBenchError

NAME = "preprocess"
NO_ARGS_IS_HELP = False


def command() -> None:
    """Turn raw files into the processed Parquet format (not implemented yet)."""
    raise MMLBenchError("preprocess is not implemented yet", exit_code=2)
