"""`mmlbench evaluate`: re-score a stored run at other cut-offs or on another split."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmlbench.cli.render_train import ResultFormat, metrics_table, print_json
from mmlbench.console import err, info, out, show_progress, warn
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import writable_folder
from mmlbench.paths import results_home

if TYPE_CHECKING:
    from mmlbench.runs.rescore import Rescored

NAME = "evaluate"
NO_ARGS_IS_HELP = True


def command(
    run: Annotated[str, typer.Argument(help="Run folder, or run id (or a unique prefix) in the store.")],
    k: Annotated[str | None, typer.Option("--k", metavar="<int,...>", help="Cut-offs, e.g. 5,10,100 [default: the run's].")] = None,
    split: Annotated[str, typer.Option(help="test or valid.")] = "test",
    export_topk: Annotated[Path | None, typer.Option(help="Write each user's top-K list of unseen items (user, rank, item, score, original ids) to FILE.csv or FILE.parquet.", dir_okay=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    eval_batch_users: Annotated[int | None, typer.Option(help="Users per evaluation batch.", min=1)] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data home [default: $MMLBENCH_DATA_DIR or ./datasets].")] = None,
    results_dir: Annotated[Path | None, typer.Option(help="Run store [default: $MMLBENCH_RESULTS_DIR or ./results].")] = None,
    output_format: Annotated[ResultFormat, typer.Option("--format", help="table, or json: one document on stdout for scripts.")] = ResultFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-score a stored run's checkpoint: other K, another split, top-K export.

    On the test split, metrics the run does not hold yet (newer than the run, or at other K)
    are added to it, provided the ones it holds re-score to the stored values.
    """
    from mmlbench import store  # pandas, and torch below: not at `--help`
    from mmlbench.runs.rescore import add_to_run, check_top_k_path, rescore, save_evaluation
    from mmlbench.store.listing import find_run

    split, device = split.lower(), device.lower()  # choices are case-insensitive, as everywhere
    if export_topk is not None:
        check_top_k_path(export_topk)
    ks = _parse_ks(k) if k else None
    run_dir = find_run(results_home(results_dir), run)
    can_save = writable_folder(run_dir)  # a read-only store still serves metrics and exports
    with _users_bar(show_progress(quiet or output_format is ResultFormat.json)) as progress:
        result = rescore(
            run_dir, ks=ks, split=split, device=device, data_dir=data_dir,
            eval_batch_users=eval_batch_users, keep_top=export_topk is not None, progress=progress,
        )
    ks = ks or result.config.ks
    evaluation = result.evaluation
    if output_format is ResultFormat.table:
        out.print(f"{run_dir.name} · {split} split · {evaluation.users:,} users · {evaluation.seconds:.2f} s", highlight=False)
        out.print(metrics_table(evaluation.metrics, ks))
    export = _export(export_topk, result, max(ks)) if export_topk is not None else None
    saved, added = None, []
    if can_save:
        saved = save_evaluation(run_dir, split, ks, evaluation, device)
        info(f"metrics saved to {saved}")
        if split == "test":  # the run row's metrics are test metrics
            added, why_not = add_to_run(run_dir, evaluation)
            if added:
                info(f"added to the run ({store.RUN_FILE}, per-user ones to {store.PER_USER_FILE}): {', '.join(added)}")
            elif why_not:
                warn(why_not)
    else:
        warn(f"eval-{split}.parquet not saved: the run folder {run_dir} is read-only")
    if output_format is ResultFormat.json:
        print_json({
            "command": "evaluate", "run_id": run_dir.name, "status": result.status, "split": split, "ks": ks,
            "users": evaluation.users, "eval_seconds": evaluation.seconds, "metrics": evaluation.metrics,
            "saved": saved, "added": added, "export": export,
        })  # fmt: skip


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


def _export(path: Path, result: Rescored, k: int) -> dict[str, Any]:
    from mmlbench.runs.rescore import write_top_k

    evaluation = result.evaluation
    rows = write_top_k(path, evaluation, k, result.originals)
    short = " (shorter for users with fewer unseen items)" if rows < evaluation.users * k else ""
    info(f"top-{k} lists of {evaluation.users:,} users ({rows:,} rows{short}) written to {path}")
    return {"path": path, "rows": rows}


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise MMLBenchError(f"--k expects comma-separated integers, got '{text}'") from None
