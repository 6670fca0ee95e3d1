"""Evolvable regions: the lines between `# EVOLVE-BLOCK-START` and `# EVOLVE-BLOCK-END`.

A file without markers is one region covering every line. Regions are half-open ranges of
0-based line indices that exclude the marker lines themselves, so code outside every region
(imports, the harness-facing API, the markers) is the program's fixed part.
"""

from __future__ import annotations

from dataclasses import dataclass

START_MARKER = "# EVOLVE-BLOCK-START"
END_MARKER = "# EVOLVE-BLOCK-END"


class RegionError(ValueError):
    """The markers of a program are unbalanced or nested."""


@dataclass(frozen=True)
class Region:
    """Lines `start` (inclusive) to `end` (exclusive) of a program are evolvable."""

    start: int
    end: int

    def contains(self, first: int, last: int) -> bool:
        """True when lines first..last (inclusive) all lie inside this region."""
        return self.start <= first and last < self.end


def _is_marker(line: str, marker: str) -> bool:
    return line.strip().startswith(marker)


def find_regions(code: str) -> list[Region]:
    """The evolvable regions of `code`; the whole file when it has no markers."""
    lines = code.splitlines(keepends=True)
    regions: list[Region] = []
    open_at: int | None = None
    for index, line in enumerate(lines):
        if _is_marker(line, START_MARKER):
            if open_at is not None:
                raise RegionError(f"line {index + 1}: nested {START_MARKER} (previous one at line {open_at})")
            open_at = index + 1
        elif _is_marker(line, END_MARKER):
            if open_at is None:
                raise RegionError(f"line {index + 1}: {END_MARKER} without a matching {START_MARKER}")
            regions.append(Region(open_at, index))
            open_at = None
    if open_at is not None:
        raise RegionError(f"line {open_at}: {START_MARKER} is never closed by {END_MARKER}")
    if not regions and not any(_is_marker(line, END_MARKER) for line in lines):
        return [Region(0, len(lines))]
    return regions


def region_texts(code: str) -> list[str]:
    """The text of each evolvable region, in file order."""
    lines = code.splitlines(keepends=True)
    return ["".join(lines[r.start : r.end]) for r in find_regions(code)]


def replace_regions(code: str, new_texts: list[str]) -> str:
    """`code` with the text of each region replaced by `new_texts` (same count, same order)."""
    regions = find_regions(code)
    if len(new_texts) != len(regions):
        raise RegionError(f"expected {len(regions)} region texts, got {len(new_texts)}")
    lines = code.splitlines(keepends=True)
    out: list[str] = []
    cursor = 0
    for region, text in zip(regions, new_texts):
        out.extend(lines[cursor : region.start])
        if text and not text.endswith("\n"):
            text += "\n"
        out.append(text)
        cursor = region.end
    out.extend(lines[cursor:])
    return "".join(out)


def evolvable_lines(code: str) -> set[int]:
    """The 1-based numbers of the lines of `code` that may evolve."""
    return {i + 1 for r in find_regions(code) for i in range(r.start, r.end)}


def line_in_regions(regions: list[Region], line: int) -> bool:
    """True when 0-based `line` lies in one of `regions`."""
    return any(r.start <= line < r.end for r in regions)
