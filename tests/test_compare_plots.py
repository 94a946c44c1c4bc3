"""`compare --plot` and `--plot-curves`: real PNG, PDF or SVG files (by suffix) of a sensible size,
and what the metric plot shows, read from the figure the CLI saved (axes, texts, legend), not from pixels."""

import matplotlib.image
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.legend import Legend
from matplotlib.text import Text
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app
from mmlbench.report import plots

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIGNATURES = {".pdf": (b"%PDF",), ".svg": (b"<?xml", b"<svg")}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return cs.make_store(tmp_path_factory.mktemp("store"))


def assert_png(path, min_width, min_height):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= min_width and height >= min_height
    assert width < 4000 and height < 4000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically, no temporary left


def test_metric_against_negatives_plot(results, tmp_path):
    target = tmp_path / "negatives" / "recall.png"
    result = runner.invoke(app, ["compare", str(results), "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert_png(target, 800, 500)


@pytest.fixture
def saved(monkeypatch):
    """The figures the CLI saves, kept for inspection (they are written as usual)."""
    figures = []
    real_save = plots._save

    def keep(figure, path):
        figures.append(figure)
        real_save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def legend_texts(figure):
    return [text.get_text() for legend in figure.findobj(Legend) for text in legend.get_texts()]


def all_texts(figure):
    return " ".join(t.get_text() for t in figure.findobj(Text))


def test_the_paper_plot_shows_every_metric_n_baseline_marks_references_and_footnote(results, tmp_path, saved):
    result = runner.invoke(app, ["compare", str(results), "--preset", "paper-gowalla", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    (figure,) = saved
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == ["recall@20", "ndcg@20"]
    assert legend_texts(figure) == [
        "bpr, n=3", "ccl (baseline), n=3", "mmcl, n=3", "published: MF-CCL (800), BARS re-run (lr decay: preset bars-mf-ccl)",
        "published: MF + sampled softmax (800), BSL logs", "published: MF-BPR, BARS re-run (any negatives)",
    ]  # fmt: skip
    recall = panels[0]
    assert list(recall.get_xticks()) == [10, 100, 800]  # the published 800-negative values have their place
    crosses = [tuple(point) for c in recall.collections if isinstance(c, PathCollection) for point in c.get_offsets()]
    assert (800, 0.1837) in crosses and (800, 0.1759) in crosses
    marks = {(a.xy[0], round(a.xy[1], 6)): a.get_text() for a in recall.texts}
    mmcl_10, mmcl_100 = (cs.cell_values("mmcl", n, "recall@20").mean() for n in (10, 100))
    assert marks[(10.0, round(mmcl_10, 6))] == "*†"  # significant against ccl, as in the table
    assert (100.0, round(mmcl_100, 6)) not in marks  # equal on average: no mark
    text = " ".join(all_texts(figure).split())
    assert "recall@20, ndcg@20 vs negatives (dataset=gowalla, model=mf)" in text
    assert "protocol: test-as-validation" in text and "Holm correction per test over 8 comparisons" in text


def test_every_text_of_the_plot_lies_inside_the_figure(results, tmp_path, saved):
    runner.invoke(app, ["compare", str(results), "--preset", "paper-gowalla", "--plot", str(tmp_path / "p.png")])
    (figure,) = saved
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    width, height = figure.bbox.width, figure.bbox.height
    ticks = [t for axes in figure.axes for axis in (axes.xaxis, axes.yaxis) for t in axis.get_major_ticks()]
    tick_labels = {id(label) for tick in ticks for label in (tick.label1, tick.label2)}  # laid out by matplotlib
    for text in figure.findobj(Text):
        if text.get_visible() and text.get_text().strip() and id(text) not in tick_labels:
            box = text.get_window_extent(canvas.get_renderer())
            inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height
            assert inside, f"cut off: {text.get_text()!r} at {box.bounds} in {width}x{height}"


def test_differences_under_one_percent_are_not_magnified(tmp_path, saved):
    for loss, recall in (("ccl", 0.1800), ("mmcl", 0.1810)):
        for negatives in (10, 100):
            cs.add_run(tmp_path, loss, negatives, 0, **{"recall@20": recall})
    result = runner.invoke(app, ["compare", str(tmp_path), "--metric", "recall@20", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    (axes,) = [axes for axes in saved[0].axes if axes.get_title()]
    low, high = axes.get_ylim()
    assert low == 0 and 0.181 < high < 0.25


def test_columns_off_the_log_axis_are_left_out_with_a_note(tmp_path, saved):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "directau", 0, 0)
    result = runner.invoke(app, ["compare", str(tmp_path), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "not on the log axis, left out: negatives=0 (see the table)" in all_texts(saved[0])
    assert legend_texts(saved[0]) == ["ccl, n=1"]


def test_training_curves_plot_of_the_selected_runs(results, tmp_path):
    target = tmp_path / "curves" / "curves.png"
    result = runner.invoke(app, ["compare", str(results), "--where", "loss=mmcl", "--plot-curves", str(target)])
    assert result.exit_code == 0, result.output
    assert_png(target, 1200, 500)


def test_runs_without_curves_are_named_and_left_out(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, with_curve=False)
    target = tmp_path / "plots" / "curves.png"
    result = runner.invoke(app, ["compare", str(tmp_path), "--plot-curves", str(target)])
    assert result.exit_code == 0, result.output
    assert "left out of the plot: ccl-10-s1" in result.stderr
    assert_png(target, 1200, 500)


def test_no_curves_at_all_is_a_clear_error(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0, with_curve=False)
    result = runner.invoke(app, ["compare", str(tmp_path), "--plot-curves", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert "none of the 1 selected runs has a readable curve.parquet" in result.stderr


def test_plot_needs_numeric_columns(results, tmp_path):
    target = tmp_path / "bad.png"
    result = runner.invoke(app, ["compare", str(results), "--rows", "negatives", "--cols", "loss", "--plot", str(target)])
    assert result.exit_code == 2
    assert "--plot needs numeric --cols values on a log axis; loss has bpr, ccl, mmcl" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize("option", ["--plot", "--plot-curves"])
@pytest.mark.parametrize("suffix", [".pdf", ".svg", ".SVG"])
def test_vector_formats_follow_the_suffix(results, tmp_path, option, suffix):
    target = tmp_path / f"figure{suffix}"
    result = runner.invoke(app, ["compare", str(results), option, str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(SIGNATURES[suffix.lower()])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("option", ["--plot", "--plot-curves"])
def test_unknown_plot_suffixes_are_refused_before_any_work(tmp_path, option):
    target = tmp_path / "figure.jpg"
    result = runner.invoke(app, ["compare", str(tmp_path / "no-store"), option, str(target)])
    assert result.exit_code == 2
    assert f"{option} {target}: unknown suffix '.jpg'; use .png, .pdf or .svg" in " ".join(result.stderr.split())
    assert not target.exists()
