"""benchmarks/report.py: the stamped RST fragments and SVG charts of docs/perf/."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import sys
from pathlib import Path

import docutils.core
import pytest
from docutils import nodes

from benchmarks import report


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


needs_matplotlib = pytest.mark.skipif(
    not importable("matplotlib"),
    reason="matplotlib draws the charts; it is in benchmarks/requirements.txt, not the tests'",
)

STAMP = report.Stamp(
    when=datetime.datetime(2026, 11, 27, 9, 30, tzinfo=datetime.timezone.utc),
    commit="abc1234",
    dirty=False,
    machine="Test CPU @ 2.00GHz, 2 CPUs, 8 GiB RAM, Linux 6.1 x86_64",
    python="3.12.7",
    packages={"Django": "6.1.3", "psycopg": "3.2.3"},
    servers={"sqlite": "SQLite 3.45.1", "postgresql": "PostgreSQL 15.20"},
    command="python benchmarks/run.py --rows 100000",
)
HEADERS = ["workload", "engine", "µs/op", "speed-up vs db", "statements"]
TABLES: list[report.TableLike] = [
    report.Table(
        "SQLite 3.45.1: 100,000 live sessions",
        HEADERS,
        [["read", "ours", "173", "3.04x", 1], ["read", "db", "490", None, 1]],
    ),
    # Plain tuples work too; cells that look like RST markup stay text.
    (
        "PostgreSQL 15.20: 100,000 live sessions",
        HEADERS,
        [["read", "signed_cookies", "*78*", "11.88x", 0], ["- x", "a_ b", "1.", "`x`", 12_345]],
    ),
]
GROUPS = {
    "SQLite": {"read": {"ours": 173.0, "db": 490.0, "floor": 82.0}, "write": {"ours": 1546.0}},
    "PostgreSQL": {"read": {"ours": 668.0, "db": 973.0, "floor": 356.0}},
}


def render(path: Path) -> nodes.document:
    """The fragment's document tree; any warning fails."""
    return docutils.core.publish_doctree(
        path.read_text(encoding="utf-8"),
        settings_overrides={"halt_level": 2, "report_level": 2},
    )


def cells(table: nodes.table) -> list[list[str]]:
    return [
        [entry.astext() for entry in row.findall(nodes.entry)] for row in table.findall(nodes.row)
    ]


def title(table: nodes.table) -> str:
    node = table.next_node(nodes.title)
    assert node is not None
    return node.astext()


def test_fragment_is_valid_rst_with_the_stamp_and_real_tables(tmp_path: Path) -> None:
    path = report.write_fragment(tmp_path, "requests", STAMP, TABLES)

    assert path == tmp_path / "requests.rst"
    source = path.read_text(encoding="utf-8")
    assert "|---" not in source
    assert not (tmp_path / "requests.svg").exists()
    document = render(path)
    text = document.astext()
    assert "Measured 2026-11-27 09:30 UTC at commit abc1234, on Test CPU" in text
    assert "PostgreSQL 15.20" in text
    assert "Command: python benchmarks/run.py --rows 100000." in text
    assert "uncommitted" not in text
    tables = list(document.findall(nodes.table))
    assert [title(table) for table in tables] == [
        "SQLite 3.45.1: 100,000 live sessions",
        "PostgreSQL 15.20: 100,000 live sessions",
    ]
    assert cells(tables[0]) == [
        HEADERS,
        ["read", "ours", "173", "3.04x", "1"],
        ["read", "db", "490", "", "1"],
    ]
    assert cells(tables[1])[2] == ["- x", "a_ b", "1.", "`x`", "12,345"]
    assert cells(tables[1])[1][2] == "*78*"


def test_dirty_tree_is_said(tmp_path: Path) -> None:
    stamp = dataclasses.replace(STAMP, dirty=True)
    text = render(report.write_fragment(tmp_path, "x", stamp, TABLES)).astext()
    assert "at commit abc1234 with uncommitted changes" in text


def test_rows_must_match_the_headers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has 1 cells, not 5"):
        report.write_fragment(tmp_path, "x", STAMP, [("caption", HEADERS, [["read"]])])


@needs_matplotlib
def test_fragment_with_a_chart(tmp_path: Path) -> None:
    path = report.write_fragment(
        tmp_path,
        "requests",
        STAMP,
        TABLES,
        chart=lambda svg: report.panel_chart(svg, "µs per request", GROUPS, "µs"),
        alt="µs per request by engine",
    )

    assert (tmp_path / "requests.svg").read_bytes().startswith(b"<?xml")
    image = render(path).next_node(nodes.image)
    assert image is not None
    # Absolute from the Sphinx source root: right wherever the fragment is included.
    assert image["uri"] == "/perf/requests.svg"
    assert image["alt"] == "µs per request by engine"


@needs_matplotlib
def test_charts_are_deterministic(tmp_path: Path) -> None:
    def draw(name: str, groups: dict[str, dict[str, float]]) -> bytes:
        return report.bar_chart(
            tmp_path / name, "Lost", groups, "increments", labels=True
        ).read_bytes()

    lost = {"sqlite": {"ours": 0.0, "db": 1327.0}, "postgresql": {"ours": 0.0, "db": 1362.0}}
    first = draw("a.svg", lost)
    assert first == draw("b.svg", lost)
    assert b"<dc:date>" not in first
    assert b"1,327" in first  # text is text, not paths
    assert first != draw("c.svg", {**lost, "sqlite": {"ours": 0.0, "db": 1328.0}})

    panels = report.panel_chart(tmp_path / "d.svg", "Requests", GROUPS, "µs").read_bytes()
    assert panels == report.panel_chart(tmp_path / "e.svg", "Requests", GROUPS, "µs").read_bytes()


def test_stamp_of_this_checkout() -> None:
    stamp = report.Stamp.collect(command="python benchmarks/x.py")
    assert stamp.when.tzinfo == datetime.timezone.utc
    assert stamp.commit
    assert "CPUs" in stamp.machine
    assert "Django" in stamp.packages
    assert stamp.python == ".".join(map(str, sys.version_info[:3]))
    assert stamp.text().splitlines()[-1] == "Command: python benchmarks/x.py."


def test_command_leaves_out_where_output_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    script = str(report.ROOT / "benchmarks" / "run.py")
    argv = [script, "--rows", "10", "--docs", "docs/perf", "--data-dir=/tmp/x", "--runs", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    assert report.this_command() == "python benchmarks/run.py --rows 10 --runs 2"


def test_text_table_aligns_numbers_right() -> None:
    table = report.text_table(
        ["engine", "µs/op", "vs db"], [["ours", "173", "3.04x"], ["db", 1490, None]]
    )
    assert table.splitlines() == [
        "engine  µs/op  vs db",
        "------  -----  -----",
        "ours      173  3.04x",
        "db      1,490",
    ]


def test_the_committed_pages_render() -> None:
    pages = sorted((report.ROOT / "docs" / "perf").glob("*.rst"))
    assert {page.stem for page in pages} >= {"requests", "lost_updates", "cleanup"}
    for page in pages:
        document = render(page)
        stamp = document.next_node(nodes.paragraph)
        assert stamp is not None, page
        assert stamp.astext().startswith("Measured "), page
        assert list(document.findall(nodes.table)), page
        image = document.next_node(nodes.image)
        assert image is not None, page
        assert (report.ROOT / "docs" / image["uri"].lstrip("/")).is_file(), page
