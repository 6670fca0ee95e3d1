"""Turn a proposer's text into a child program, or say precisely why not.

Two edit formats exist. A "diff" answer holds SEARCH/REPLACE blocks:

    <<<<<<< SEARCH
    lines quoted from the parent
    =======
    lines to put in their place
    >>>>>>> REPLACE

A "rewrite" answer holds a whole program. Either way only the evolvable regions of the parent
may change (see regions.py). Every failure raises EditError with a one-line reason that is stored
on the rejected program and can be shown to the model; nothing is ever silently skipped.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sysevolve.proposals.regions import (
    END_MARKER,
    START_MARKER,
    Region,
    RegionError,
    find_regions,
    line_in_regions,
    region_texts,
    replace_regions,
)

if TYPE_CHECKING:
    from sysevolve.proposals.base import Proposal

SEARCH_LINE = "<<<<<<< SEARCH"
DIVIDER_LINE = "======="
REPLACE_LINE = ">>>>>>> REPLACE"


class EditError(ValueError):
    """An edit cannot be applied; the message is a one-line reason."""


@dataclass(frozen=True)
class SearchReplace:
    """One block: replace the parent lines equal to `search` by `replace`."""

    search: str
    replace: str


def parse_blocks(text: str) -> list[SearchReplace]:
    """The SEARCH/REPLACE blocks of `text`, in order; prose and fences around them are ignored."""
    blocks: list[SearchReplace] = []
    state = "outside"  # then "search" after a SEARCH line, "replace" after the divider
    search: list[str] = []
    replace: list[str] = []
    number = 0
    for line in text.splitlines():
        marker = line.strip()
        if state == "outside":
            if marker == SEARCH_LINE:
                number += 1
                state, search, replace = "search", [], []
            elif marker == REPLACE_LINE:
                raise EditError(f"block {number + 1}: '{REPLACE_LINE}' without a '{SEARCH_LINE}' before it")
        elif state == "search":
            if marker == DIVIDER_LINE:
                state = "replace"
            elif marker in (SEARCH_LINE, REPLACE_LINE):
                raise EditError(f"SEARCH block {number} has no '{DIVIDER_LINE}' after its search text")
            else:
                search.append(line)
        else:
            # A divider here is ordinary content (for example a reST underline in a docstring).
            if marker == REPLACE_LINE:
                blocks.append(_make_block(number, search, replace))
                state = "outside"
            elif marker == SEARCH_LINE:
                raise EditError(f"SEARCH block {number} is not closed by '{REPLACE_LINE}'")
            else:
                replace.append(line)
    if state == "search":
        raise EditError(f"SEARCH block {number} has no '{DIVIDER_LINE}' after its search text")
    if state == "replace":
        raise EditError(f"SEARCH block {number} is not closed by '{REPLACE_LINE}'")
    return blocks


def _make_block(number: int, search: list[str], replace: list[str]) -> SearchReplace:
    if not any(line.strip() for line in search):
        raise EditError(f"SEARCH block {number} has empty search text; quote the lines to replace")
    return SearchReplace("".join(s + "\n" for s in search), "".join(r + "\n" for r in replace))


def apply_search_replace(parent_code: str, text: str) -> str:
    """Apply every block of `text` in order, each to the result of the ones before it."""
    blocks = parse_blocks(text)
    if not blocks:
        raise EditError("no SEARCH/REPLACE blocks found in the answer")
    code = parent_code
    markers = _count_markers(parent_code)
    for number, block in enumerate(blocks, start=1):
        code = _apply_block(code, block, number)
        if _count_markers(code) != markers:
            raise EditError(f"SEARCH block {number} adds or removes EVOLVE-BLOCK markers; keep them")
    return _ends_with_newline(code)


def _apply_block(code: str, block: SearchReplace, number: int) -> str:
    lines = code.splitlines()
    search = block.search.splitlines()
    replace = block.replace.splitlines()

    exact = True
    starts = _match_starts(lines, search, _exact_key)
    if not starts:
        exact = False
        starts = _match_starts(lines, search, str.strip)
    if not starts:
        first = next(s.strip() for s in search if s.strip())
        raise EditError(
            f"SEARCH block {number} matches nothing in the parent (first line: {_short(first)!r})"
        )
    if len(starts) > 1:
        places = ", ".join(str(s + 1) for s in starts[:5])
        raise EditError(
            f"SEARCH block {number} matches {len(starts)} places (lines {places}); "
            "add context lines to make it unique"
        )

    start, end = starts[0], starts[0] + len(search)
    regions = _regions(code, "parent")
    for index in range(start, end):
        if not line_in_regions(regions, index):
            raise EditError(
                f"SEARCH block {number} touches line {index + 1}, "
                f"outside the evolvable regions ({_describe(regions)})"
            )
    if not exact:
        replace = _reindent(replace, search, lines[start:end])
    return "\n".join(lines[:start] + replace + lines[end:]) + "\n"


def _exact_key(line: str) -> str:
    return line


def _match_starts(lines: list[str], search: list[str], key) -> list[int]:
    """Every index where `search` matches `lines` once both are mapped through `key`."""
    wanted = [key(s) for s in search]
    keyed = [key(line) for line in lines]
    n = len(wanted)
    return [i for i in range(len(keyed) - n + 1) if keyed[i : i + n] == wanted]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(replace: list[str], search: list[str], matched: list[str]) -> list[str]:
    """Shift `replace` by how much the matched parent lines are indented more than `search`."""
    k = next(i for i, s in enumerate(search) if s.strip())
    have, want = _indent(search[k]), _indent(matched[k])
    out = []
    for line in replace:
        if not line.strip():
            out.append("")
        elif want.startswith(have):
            out.append(want[len(have) :] + line)
        elif have.startswith(want):
            # Remove at most the surplus indentation, and only whitespace.
            surplus = len(have) - len(want)
            cut = min(surplus, len(_indent(line)))
            out.append(line[cut:])
        elif line.startswith(have):
            out.append(want + line[len(have) :])  # tabs versus spaces: swap the common prefix
        else:
            out.append(line)
    return out


def apply_rewrite(parent_code: str, new_code: str) -> str:
    """Splice the evolvable regions of a whole-program rewrite into the parent.

    The parent's fixed parts always win: whatever the rewrite did outside its regions is dropped.
    A parent without markers is replaced entirely.
    """
    new_code = _strip_fence(new_code)
    if not new_code.strip():
        raise EditError("rewrite is empty")
    if not _count_markers(parent_code):
        if _count_markers(new_code):
            raise EditError("rewrite adds EVOLVE-BLOCK markers the parent does not have")
        return _ends_with_newline(new_code)
    if not _count_markers(new_code):
        raise EditError(
            "rewrite has no EVOLVE-BLOCK markers; keep the parent's "
            f"'{START_MARKER}' / '{END_MARKER}' lines and change only the code between them"
        )
    parent_regions = _regions(parent_code, "parent")
    try:
        texts = region_texts(new_code)
    except RegionError as error:
        raise EditError(f"rewrite has malformed EVOLVE-BLOCK markers: {error}") from None
    if len(texts) != len(parent_regions):
        raise EditError(
            f"rewrite has {len(texts)} evolvable regions but the parent has {len(parent_regions)}; "
            "keep every EVOLVE-BLOCK"
        )
    return _ends_with_newline(replace_regions(parent_code, texts))


def _strip_fence(text: str) -> str:
    lines = text.strip().splitlines()
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        return "\n".join(lines[1:-1]) + "\n"
    return text


def apply_proposal(parent_code: str, proposal: Proposal) -> str:
    """The child program a proposal describes, by its format ("diff" or "rewrite")."""
    if proposal.failure:
        raise EditError(proposal.failure)
    if proposal.format == "diff":
        return apply_search_replace(parent_code, proposal.text)
    if proposal.format == "rewrite":
        return apply_rewrite(parent_code, proposal.text)
    raise EditError(f"unknown edit format {proposal.format!r}")


@dataclass(frozen=True)
class Child:
    """A child program made from a proposal, and what the researcher should know about it."""

    code: str
    edit: str  # the change as stored: the SEARCH/REPLACE text, or a diff for rewrites
    warning: str | None = None


def make_child(parent_code: str, proposal: Proposal) -> Child:
    """Apply `proposal` to the parent and check the result, or raise EditError saying why not."""
    code = apply_proposal(parent_code, proposal)
    check_syntax(code)
    if code == parent_code:
        raise EditError("the edit leaves the program unchanged")
    if proposal.format == "diff":
        return Child(code, proposal.text)
    return Child(code, unified_diff(parent_code, code), _dropped_outside_regions(parent_code, proposal.text))


def _dropped_outside_regions(parent_code: str, rewrite: str) -> str | None:
    """Say so when a rewrite changed fixed lines, which apply_rewrite drops."""
    if not _count_markers(parent_code):
        return None

    def fixed(code: str) -> list[str]:
        regions = find_regions(code)
        return [line.rstrip() for i, line in enumerate(code.splitlines())
                if not line_in_regions(regions, i) and line.strip()]

    ours, theirs = fixed(parent_code), fixed(_strip_fence(rewrite))
    extra = next((line for line in theirs if line not in ours), None)
    if extra is None and len(theirs) >= len(ours):
        return None
    first = f" (first: '{_short(extra.strip())}')" if extra else ""
    return f"the rewrite changed lines outside the evolvable regions{first}; those changes were dropped"


def unified_diff(old: str, new: str) -> str:
    """A unified diff from `old` (labelled parent) to `new` (labelled child); empty if equal."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "parent", "child", lineterm="")
    text = "\n".join(lines)
    return text + "\n" if text else ""


def check_syntax(code: str) -> None:
    """Raise EditError when `code` is not valid Python."""
    try:
        ast.parse(code)
    except SyntaxError as error:
        raise EditError(f"child does not parse: line {error.lineno}: {error.msg}") from None
    except ValueError as error:  # null bytes, on Pythons that do not report them as SyntaxError
        raise EditError(f"child does not parse: {error}") from None


def _regions(code: str, whose: str) -> list[Region]:
    try:
        return find_regions(code)
    except RegionError as error:
        raise EditError(f"{whose} has malformed EVOLVE-BLOCK markers: {error}") from None


def _count_markers(code: str) -> int:
    return sum(
        1 for line in code.splitlines() if line.strip().startswith((START_MARKER, END_MARKER))
    )


def _describe(regions: list[Region]) -> str:
    spans = [f"{r.start + 1}-{r.end}" for r in regions if r.end > r.start]
    return "lines " + ", ".join(spans) if spans else "all of them are empty"


def _short(line: str, limit: int = 60) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _ends_with_newline(code: str) -> str:
    return code if code.endswith("\n") else code + "\n"
