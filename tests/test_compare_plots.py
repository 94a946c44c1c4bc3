"""`compare --plot` and `--plot-curves`: real PNG, PDF or SVG files (by suffix) of a sensible size."""

import matplotlib.image
import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app

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
