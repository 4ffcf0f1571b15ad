"""stepml.charts: standalone, accessible, escaped SVG with the values where they belong."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from stepml import charts
from stepml.charts import Frame, Series

SVG = "{http://www.w3.org/2000/svg}"
NASTY = '<script>alert("x")</script> & "tenure"'


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == f"{SVG}svg"
    return root


def assert_accessible(root: ET.Element, title: str) -> None:
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    [title_element] = [e for e in root.iter(f"{SVG}title") if e.get("id") == title_id]
    [desc_element] = [e for e in root.iter(f"{SVG}desc") if e.get("id") == desc_id]
    assert title_element.text == title
    assert desc_element.text
    # Sized by its viewBox, no style attribute anywhere (the CSP needs to allow nothing).
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert all(element.get("style") is None for element in root.iter())
    assert not list(root.iter(f"{SVG}script"))


def texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def test_a_line_chart_places_points_on_its_frame_and_draws_each_series() -> None:
    points = [(0.0, 0.0), (0.25, 0.5), (1.0, 1.0)]
    markup = charts.line_chart(
        "ROC curve",
        "desc",
        [Series("this model", points), Series("production", [(0.0, 0.0), (None, 0.3), (1.0, 1.0)], dashed=True)],
        x_label="false positive rate",
        y_label="true positive rate",
        x_range=(0, 1),
        y_range=(0, 1),
        diagonal=True,
    )
    root = parse(markup)
    assert_accessible(root, "ROC curve")
    ours, theirs = root.iter(f"{SVG}polyline")
    # The frame of line_chart: left 56, top 12, 300 wide, 220 high; y grows downwards.
    assert ours.get("points") == "56.0,232.0 131.0,122.0 356.0,12.0"
    assert theirs.get("points") == "56.0,232.0 356.0,12.0"  # a point with a None coordinate is skipped
    assert theirs.get("stroke-dasharray")
    assert {"false positive rate", "true positive rate", "this model", "production"} <= set(texts(root))


def test_the_frame_maps_a_range_to_pixels_and_a_constant_range_does_not_divide_by_zero() -> None:
    frame = Frame(10, 20, 100, 50, (2.0, 4.0), (-1.0, 1.0))
    assert (frame.x(2.0), frame.x(3.0), frame.x(4.0)) == (10.0, 60.0, 110.0)
    assert (frame.y(-1.0), frame.y(0.0), frame.y(1.0)) == (70.0, 45.0, 20.0)
    assert Frame(0, 0, 10, 10, (1.0, 1.0), (0.0, 1.0)).x(1.0) == 0.0


def test_a_matrix_chart_numbers_every_cell_and_shades_the_largest_darkest() -> None:
    root = parse(
        charts.matrix_chart(
            "Confusion matrix", "d", ["no", "yes"], [[50, 3], [7, 40]], row_axis="actual", column_axis="predicted"
        )
    )
    assert_accessible(root, "Confusion matrix")
    assert [t for t in texts(root) if t.isdigit()] == ["50", "3", "7", "40"]
    fills = {rect.get("fill") for rect in root.iter(f"{SVG}rect")}
    assert "#0969da" in fills  # the peak (50) at full colour
    assert {"actual", "predicted", "no", "yes"} <= set(texts(root))


def test_bars_are_as_long_as_their_values() -> None:
    root = parse(charts.bar_chart("Importance", "d", ["a", "b"], [10.0, 2.5], value_label="gain"))
    widths = [float(r.get("width")) for r in root.iter(f"{SVG}rect") if r.get("fill") == charts.BLUE]
    assert widths == [300.0, 75.0]
    assert "10" in texts(root) and "2.5" in texts(root)


def test_a_histogram_has_a_bar_per_bin_and_the_zero_marker() -> None:
    root = parse(charts.histogram("Residuals", "d", [-2.0, -1.0, 0.0, 1.0, 2.0], [1, 4, 2, 0], x_label="r", marker=0.0))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == charts.BLUE]
    assert [b.find(f"{SVG}title").text for b in bars] == ["1", "4", "2", "0"]
    assert float(bars[1].get("height")) == 200.0  # the tallest bin fills the frame
    markers = [line for line in root.iter(f"{SVG}line") if line.get("stroke") == charts.ORANGE]
    assert [m.get("x1") for m in markers] == ["206.0"]  # zero, half-way across 56..356


def test_a_grid_chart_draws_only_the_occupied_cells() -> None:
    counts = [[0, 2], [5, 0]]
    root = parse(charts.grid_chart("Scores", "d", [0.0, 0.5, 1.0], [0.0, 0.5, 1.0], counts, x_label="x", y_label="y"))
    cells = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert sorted(c.find(f"{SVG}title").text for c in cells) == ["2", "5"]


def test_paired_bars_show_both_shares_per_bin_and_red_on_drift() -> None:
    root = parse(
        charts.paired_bars(
            "plan", "d", ["basic", "pro"], [0.6, 0.4], [0.2, 0.8], names=("training", "test"), alert=True
        )
    )
    titled = [r.find(f"{SVG}title").text for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert titled == ["basic: 60.0%", "basic: 20.0%", "pro: 40.0%", "pro: 80.0%"]
    assert charts.RED in {r.get("fill") for r in root.iter(f"{SVG}rect")}


@pytest.mark.parametrize(
    "draw",
    [
        lambda: charts.bar_chart(NASTY, NASTY, [NASTY], [1.0], value_label=NASTY),
        lambda: charts.matrix_chart(NASTY, NASTY, [NASTY, "b"], [[1, 2], [3, 4]], row_axis=NASTY, column_axis="p"),
        lambda: charts.paired_bars(NASTY, NASTY, [NASTY], [0.5], [0.5], names=(NASTY, "t")),
        lambda: charts.line_chart(NASTY, NASTY, [Series(NASTY, [(0, 0), (1, 1)])], x_label=NASTY, y_label=NASTY),
    ],
)
def test_names_from_the_dataset_are_escaped(draw) -> None:
    markup = draw()
    assert "<script" not in markup
    root = parse(markup)  # well-formed: nothing unescaped broke the XML
    assert not list(root.iter(f"{SVG}script"))
    shown = [t for t in [*texts(root), root.find(f"{SVG}title").text] if "tenure" in t or "alert" in t]
    assert shown and all("<script>" in t or t.endswith("…") for t in shown)


def test_the_drawn_elements_are_bounded_by_the_inputs_not_by_rows() -> None:
    curve = [(i / 100, (i / 100) ** 0.5) for i in range(101)]
    markup = charts.line_chart("ROC", "d", [Series("m", curve)], x_label="x", y_label="y")
    [line] = parse(markup).iter(f"{SVG}polyline")
    assert len(line.get("points").split()) == 101
    assert (
        len(
            re.findall(
                r"<rect", charts.grid_chart("g", "d", [0, 1, 2], [0, 1, 2], [[9, 9], [9, 9]], x_label="x", y_label="y")
            )
        )
        == 6
    )
