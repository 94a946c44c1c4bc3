"""`mmlbench evaluate`: re-score a stored run at other cut-offs or on another split."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from mmlbench import api
from mmlbench.cli.options import DataDirOption, DeviceOption, EvalBatchUsersOption
from mmlbench.cli.render_train import metrics_table, print_csv, print_json
from mmlbench.console import OutputFormat, err, info, out, show_progress, warn
from mmlbench.errors import MMLBenchError

NAME = "evaluate"
NO_ARGS_IS_HELP = True


def command(
    run: Annotated[str, typer.Argument(help="Run folder, or run id (or a unique prefix) in the store.")],
    k: Annotated[str | None, typer.Option("--k", metavar="<int,...>", help="Cut-offs, e.g. 5,10,100 [default: the run's].")] = None,
    split: Annotated[str, typer.Option(help="test or valid.")] = "test",
    export_topk: Annotated[Path | None, typer.Option(help="Write each user's top-K list of unseen items (user, rank, item, score, original ids) to FILE.csv or FILE.parquet.", dir_okay=False)] = None,
    device: DeviceOption = "auto",
    eval_batch_users: EvalBatchUsersOption = None,
    data_dir: DataDirOption = None,
    results_dir: Annotated[Path | None, typer.Option(help="Run store [default: $MMLBENCH_RESULTS_DIR or ./results].")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table, or for scripts json (one document) or csv (one row) on stdout.")] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-score a stored run's checkpoint: other K, another split, top-K export.

    On the test split, metrics the run does not hold yet (newer than the run, or at other K)
    are added to it, provided the ones it holds re-score to the stored values.
    """
    split, device = split.lower(), device.lower()  # choices are case-insensitive, as everywhere
    machine = output_format is not OutputFormat.table
    with _users_bar(show_progress(quiet or machine)) as progress:
        done = api.evaluate(
            run, ks=_parse_ks(k) if k else None, split=split, device=device, data_dir=data_dir, results_dir=results_dir,
            eval_batch_users=eval_batch_users, export_topk=export_topk, progress=progress,
        )
    evaluation = done.evaluation
    if not machine:
        out.print(f"{done.run_dir.name} · {split} split · {evaluation.users:,} users · {evaluation.seconds:.2f} s", highlight=False)
        out.print(metrics_table(evaluation.metrics, done.ks))
    export = None
    if done.export is not None:
        path, rows = done.export
        k_max = max(done.ks)
        short = " (shorter for users with fewer unseen items)" if rows < evaluation.users * k_max else ""
        info(f"top-{k_max} lists of {evaluation.users:,} users ({rows:,} rows{short}) written to {path}")
        export = {"path": path, "rows": rows}
    if done.saved is not None:
        info(f"metrics saved to {done.saved}")
    if done.added:
        info(f"added to the run ({done.added_to}): {', '.join(done.added)}")
    elif done.not_added:
        warn(done.not_added)
    if done.read_only:
        warn(f"eval-{split}.parquet not saved: the run folder {done.run_dir} is read-only")
    document = {
        "command": "evaluate", "run_id": done.run_dir.name, "status": done.status, "split": split, "ks": done.ks,
        "users": evaluation.users, "eval_seconds": evaluation.seconds, "metrics": evaluation.metrics,
        "saved": done.saved, "added": done.added, "export": export,
    }  # fmt: skip
    if output_format is OutputFormat.json:
        print_json(document)
    elif output_format is OutputFormat.csv:  # one row: the metrics as columns
        print_csv([{**{key: value for key, value in document.items() if key not in ("metrics", "export")}, **evaluation.metrics}])


@contextlib.contextmanager
def _users_bar(shown: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A transient bar of users evaluated, on stderr; None (no callback at all) when not shown."""
    if not shown:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("evaluating users"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise MMLBenchError(f"--k expects comma-separated integers, got '{text}'") from None
