"""
Performance pages, generated: stamped RST fragments and SVG charts.

A benchmark run with ``--docs DIR`` writes ``DIR/<name>.rst`` and
``DIR/<name>.svg``; the documentation includes the fragment
(``.. include:: perf/requests.rst``). A fragment has no heading. It holds, in
order: a comment saying it is generated; the stamp, one paragraph saying when
(UTC), from which commit (and whether the tree had uncommitted changes), on
which machine, with which Python, Django, database servers and drivers, and
by which command the numbers were measured; an optional introduction; the
chart as a ``.. figure::``; and one ``.. list-table::`` per table. The figure's
path is absolute from the Sphinx source root (``/perf/<name>.svg``), which
Sphinx resolves the same wherever the fragment is included.

The API (paths may be ``str`` or ``pathlib.Path``)::

    stamp = Stamp.collect(aliases=["sqlite", "postgresql"])  # after django.setup()
    stamp = Stamp.collect()            # no databases: machine, Python, Django
    print(stamp.text())                # plain text, for stdout

    print(text_table(headers, rows))   # aligned plain text, for stdout

    write_fragment(                    # returns the .rst's path
        docs_dir, "overhead", stamp,
        tables=[Table(caption, headers, rows)],  # or (caption, headers, rows)
        chart=lambda path: bar_chart(path, title, groups, "µs per call"),
        alt="What the chart shows, for readers who cannot see it",
        intro="Optional RST paragraph(s) between the stamp and the chart.",
    )

    bar_chart(path, title, groups, unit)     # groups: {x label: {series: value}}
    panel_chart(path, title, panels, unit)   # panels: {panel title: groups}, one per row

Cells are strings (taken as they are; format numbers yourself), ints (printed
with thousands separators), other numbers (``str()``) or ``None`` (empty).
Both chart functions take ``colors`` ({series: color}) to pin colours (and
the legend's order; other series follow in order of appearance),
``labels=True`` to print each bar's value, and ``log=True`` for a log scale;
``panel_chart``'s unit may be a {panel title: unit} mapping.

Charts are drawn with matplotlib's object-oriented API (a bare ``Figure``, no
pyplot, so no GUI backend and no global state) and saved as SVG with text
kept as text, no date and a fixed hash salt: the same numbers give the same
bytes with the same matplotlib. matplotlib is imported only to draw
(``pip install -r benchmarks/requirements.txt``).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
IMAGE_ROOT = "/perf"
HASH_SALT = "django-sql-sessions"

Cell = str | int | float | None


class Table(NamedTuple):
    caption: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


# A Table or a plain (caption, headers, rows) tuple.
TableLike = Table | tuple[str, Sequence[str], Sequence[Sequence[Cell]]]
Groups = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Stamp:
    """Where a set of numbers came from."""

    when: datetime.datetime
    commit: str
    dirty: bool
    machine: str
    python: str
    # Distribution name -> version: Django and the database drivers.
    packages: Mapping[str, str] = field(default_factory=dict)
    # Database alias -> server and version, e.g. "PostgreSQL 15.20".
    servers: Mapping[str, str] = field(default_factory=dict)
    command: str = ""
    notes: Sequence[str] = ()

    @classmethod
    def collect(
        cls,
        *,
        aliases: Iterable[str] = (),
        packages: Iterable[str] = (),
        command: str | None = None,
        root: Path = ROOT,
    ) -> Stamp:
        """
        The stamp of a run starting now, from this checkout, of the command
        that is running (``--docs`` and ``--data-dir`` left out) unless
        `command` is given.

        `aliases` are Django database aliases: their server versions and
        drivers are added, so Django must be set up. `packages` names more
        distributions to list.
        """
        names = ["Django", *packages]
        servers = {}
        for alias in aliases:
            servers[alias], driver = server_version(alias)
            if driver:
                names.append(driver)
        found = {}
        for name in names:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        commit, dirty = git_state(root)
        return cls(
            when=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
            commit=commit,
            dirty=dirty,
            machine=machine(),
            python=platform.python_version(),
            packages=found,
            servers=servers,
            command=this_command(root) if command is None else command,
            notes=tuple(code_notes(root)),
        )

    def parts(self) -> list[str]:
        """The stamp as sentences, with literals in ``double backquotes``."""
        tree = " with uncommitted changes" if self.dirty else ""
        parts = [
            f"Measured {self.when:%Y-%m-%d %H:%M} UTC at commit ``{self.commit}``{tree}, "
            f"on {self.machine}.",
        ]
        software = [f"Python {self.python}"]
        software += [f"{name} {version}" for name, version in self.packages.items()]
        software += dict.fromkeys(self.servers.values())
        parts.append(", ".join(software) + ".")
        if self.command:
            parts.append(f"Command: ``{self.command}``.")
        parts.extend(self.notes)
        return parts

    def rst(self) -> str:
        """One RST paragraph."""
        return " ".join(escape(part) for part in self.parts())

    def text(self) -> str:
        return "\n".join(part.replace("``", "") for part in self.parts())


def escape(text: str) -> str:
    """Escape RST inline markup outside ``literals`` (kept as they are)."""
    pieces = re.split(r"(``.+?``)", text)
    for i in range(0, len(pieces), 2):
        piece = re.sub(r"([\\*`|])", r"\\\1", pieces[i])
        # A word ending in "_" would be a reference.
        pieces[i] = re.sub(r"_(?=\W|$)", r"\\_", piece)
    return "".join(pieces)


def git_state(root: Path = ROOT) -> tuple[str, bool]:
    """
    The short commit and whether the tree differs from it. Changes under
    docs/ do not count: a regeneration rewrites docs/perf/ as it goes.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changes = git("status", "--porcelain", "--", ".", ":(exclude)docs")
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, bool(changes)


def machine() -> str:
    """CPU model and count, memory, operating system."""
    model = ""
    memory = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
        meminfo = Path("/proc/meminfo").read_text()
        if match := re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE):
            memory = int(match.group(1)) * 1024
    except OSError:
        pass
    model = re.sub(r"\s+", " ", model) or platform.processor() or platform.machine()
    parts = [model, f"{os.cpu_count()} CPUs"]
    if memory:
        parts.append(f"{memory / 2**30:.0f} GiB RAM")
    parts.append(f"{platform.system()} {platform.release()} {platform.machine()}")
    return ", ".join(parts)


def server_version(alias: str) -> tuple[str, str]:
    """The database server (or library) and version behind `alias`, and its driver."""
    from django.db import connections

    connection = connections[alias]
    vendor = connection.vendor
    module = getattr(connection, "Database", None)  # the driver module Django uses
    driver = _distribution(getattr(module, "__name__", "").partition(".")[0])
    if vendor == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}", driver
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}", driver
        if vendor == "mysql":
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            name = "MariaDB" if "mariadb" in version.lower() else "MySQL"
            return f"{name} {version.partition('-')[0]}", driver
    return str(connection.display_name), driver


def _distribution(module: str) -> str:
    if module == "sqlite3":
        return ""
    return next(iter(metadata.packages_distributions().get(module, [])), "")


def this_command(root: Path = ROOT, omit: Sequence[str] = ("--docs", "--data-dir")) -> str:
    """
    The running command, its script relative to `root`, without the options
    in `omit` (where output goes, not what is measured) and their values.
    """
    args = list(sys.argv)
    script = Path(args[0])
    if script.is_absolute() and script.is_relative_to(root):
        args[0] = str(script.relative_to(root))
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in omit:
            skip = True
        elif arg.partition("=")[0] not in omit:
            kept.append(arg)
    return shlex.join(["python", *kept])


def code_notes(root: Path = ROOT) -> list[str]:
    """A warning when the django_sql_sessions measured is not this checkout's."""
    module = sys.modules.get("django_sql_sessions")
    location = getattr(module, "__file__", None)
    if location and not Path(location).resolve().is_relative_to(root):
        return [f"django_sql_sessions was imported from ``{Path(location).parent}``."]
    return []


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def list_table(table: TableLike) -> str:
    """One RST ``list-table`` with a header row."""
    caption, headers, rows = table
    lines = [f".. list-table:: {escape(caption)}", "   :header-rows: 1", ""]
    for row in [list(headers), *rows]:
        if len(row) != len(headers):
            raise ValueError(f"{caption}: row {row!r} has {len(row)} cells, not {len(headers)}")
        for i, value in enumerate(row):
            text = escape(_cell(value))
            # Text that would start a list or other block is escaped.
            if re.match(r"[-+*#:>|](\s|$)|\d+[.)](\s|$)", text):
                text = "\\" + text
            lines.append(f"   {'*' if i == 0 else ' '} - {text}".rstrip())
    return "\n".join(lines)


def write_fragment(
    docs_dir: str | Path,
    name: str,
    stamp: Stamp,
    tables: Sequence[TableLike],
    *,
    chart: Callable[[Path], object] | None = None,
    alt: str = "",
    intro: str = "",
    image_root: str = IMAGE_ROOT,
) -> Path:
    """
    Write `docs_dir`/`name`.rst, and `docs_dir`/`name`.svg when there is a
    `chart`: a function that draws it into the path it is given (see
    bar_chart and panel_chart). `alt` is the figure's alternative text;
    `intro` is RST put between the stamp and the figure.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"fragment name {name!r}: letters, digits, _ and - only")
    directory = Path(docs_dir)
    directory.mkdir(parents=True, exist_ok=True)
    blocks = [
        ".. Generated by a benchmark through benchmarks/report.py; do not edit.\n"
        "   Regenerate with: python benchmarks/regenerate.py",
        stamp.rst(),
    ]
    if intro:
        blocks.append(intro.strip())
    if chart is not None:
        chart(directory / f"{name}.svg")
        figure = f".. figure:: {image_root.rstrip('/')}/{name}.svg"
        alt_text = " ".join((alt or name.replace("_", " ")).split())
        blocks.append(f"{figure}\n   :alt: {alt_text}\n   :width: 100%")
    blocks.extend(list_table(table) for table in tables)
    path = directory / f"{name}.rst"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Plain aligned text: numbers to the right, everything else to the left."""
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [
        all(re.fullmatch(r"[-+]?[\d,.]+[x%]?", row[i]) or not row[i] for row in cells)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def bar_chart(
    path: str | Path,
    title: str,
    groups: Groups,
    unit: str,
    *,
    colors: Mapping[str, str] | None = None,
    labels: bool = False,
    log: bool = False,
) -> Path:
    """
    Grouped bars in one panel: `groups` maps each x label to {series: value};
    each series has one colour and one legend entry. A series missing from a
    group leaves a gap.
    """
    return panel_chart(path, title, {"": groups}, unit, colors=colors, labels=labels, log=log)


def panel_chart(
    path: str | Path,
    title: str,
    panels: Mapping[str, Groups],
    unit: str | Mapping[str, str],
    *,
    colors: Mapping[str, str] | None = None,
    labels: bool = False,
    log: bool = False,
) -> Path:
    """bar_chart's grouped bars once per panel, one panel per row, each on its own scale."""
    import matplotlib
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    series = [name for name in colors or {} if _has(panels, name)]
    for groups in panels.values():
        for values in groups.values():
            series.extend(s for s in values if s not in series)
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#bcbd22",
        "#17becf",
        "#7f7f7f",
    ]
    color = {s: palette[i % len(palette)] for i, s in enumerate(series)} | dict(colors or {})
    # Text as text (no glyph paths), ids from a fixed salt: deterministic.
    with matplotlib.rc_context(
        {
            "svg.hashsalt": HASH_SALT,
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.titlelocation": "left",
        }
    ):
        figure = Figure(figsize=(8, 1.0 + 2.4 * len(panels)), layout="constrained")
        axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (panel, groups) in zip(axes, panels.items(), strict=True):
            # Series this panel has; one missing from a group leaves a gap.
            local = [name for name in series if _has({panel: groups}, name)]
            width = 0.8 / max(1, len(local))
            for i, name in enumerate(local):
                offset = (i - (len(local) - 1) / 2) * width
                present = [(g, v[name]) for g, v in enumerate(groups.values()) if name in v]
                bars = ax.bar(
                    [g + offset for g, _ in present],
                    [v for _, v in present],
                    width,
                    label=name,
                    color=color[name],
                )
                if labels:
                    ax.bar_label(bars, fmt=_label, fontsize=7, padding=1)
            ax.set_xticks(range(len(groups)), list(groups))
            ax.set_ylabel(unit if isinstance(unit, str) else unit[panel])
            if log:
                ax.set_yscale("log")
            else:
                ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            if panel:
                ax.set_title(panel)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            ax.spines[["top", "right"]].set_visible(False)
            if labels:
                ax.margins(y=0.15)
        figure.suptitle(title)
        if len(series) > 1:
            handles: dict[str, Artist] = {}
            for ax in axes:
                for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                    handles.setdefault(name, handle)
            figure.legend(
                [handles[name] for name in series],
                series,
                loc="outside lower center",
                ncols=min(len(series), 6),
                frameon=False,
            )
        target = Path(path)
        figure.savefig(target, format="svg", metadata={"Date": None})
    return target


def _has(panels: Mapping[str, Groups], name: str) -> bool:
    return any(name in values for groups in panels.values() for values in groups.values())


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
