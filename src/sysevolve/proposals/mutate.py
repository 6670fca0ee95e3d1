"""The offline proposer: small program mutations that need no LLM.

Each operator is a pure function `(code, rng) -> (new_code, summary) | None` that edits only the
evolvable regions of `code` and returns None when it finds nothing to change there. Token-level
operators splice new text at `tokenize` positions, so every other character of the file (layout,
comments, the fixed part, the markers) is kept as it was.
"""

from __future__ import annotations

import ast
import io
import math
import random
import tokenize
from collections.abc import Callable

from sysevolve.program import Program
from sysevolve.proposals.base import Proposal, ProposalRequest
from sysevolve.proposals.regions import (
    Region,
    RegionError,
    find_regions,
    region_texts,
    replace_regions,
)

Operator = Callable[[str, random.Random], tuple[str, str] | None]


# --- token helpers ------------------------------------------------------------------------------


def _regions(code: str) -> list[Region]:
    try:
        return find_regions(code)
    except RegionError:
        return []


def _region_tokens(code: str) -> list[tokenize.TokenInfo]:
    """The significant tokens of `code` that lie wholly inside one evolvable region.

    Tokens inside f-strings are left out (Python 3.12 tokenizes their fields), so literals and
    operators in strings are never touched on any Python version.
    """
    regions = _regions(code)
    if not regions:
        return []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    lines = code.splitlines(keepends=True)
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    depth = 0
    out = []
    for tok in tokens:
        if tok.type == fstring_start:
            depth += 1
        elif tok.type == fstring_end:
            depth -= 1
        if depth or tok.type in skipped or tok.start[0] != tok.end[0]:
            continue
        row = tok.start[0] - 1
        # splitlines() and the tokenizer disagree on exotic line breaks; skip rather than misplace.
        if row >= len(lines) or lines[row][tok.start[1] : tok.end[1]] != tok.string:
            continue
        if any(r.start <= row < r.end for r in regions):
            out.append(tok)
    return out


def _splice(code: str, tok: tokenize.TokenInfo, text: str) -> str:
    """`code` with the single-line token `tok` replaced by `text`."""
    lines = code.splitlines(keepends=True)
    row = tok.start[0] - 1
    line = lines[row]
    lines[row] = line[: tok.start[1]] + text + line[tok.end[1] :]
    return "".join(lines)


# --- operators ----------------------------------------------------------------------------------


def _new_int(value: int, rng: random.Random) -> int:
    candidates = [value + 1, value - 1, value + 2, value - 2, value * 2, value // 2]
    # A non-negative literal is usually a count or size: keep it non-negative.
    candidates = [c for c in candidates if c != value and (c >= 0 or value < 0)]
    return rng.choice(candidates)


def _format_float(value: float) -> str:
    text = f"{value:.3g}"
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return f"({text})" if value < 0 else text


def _new_float(value: float, rng: random.Random) -> str:
    old = _format_float(value)
    for _ in range(10):
        if value != 0.0 and rng.random() < 0.8:
            new = value * math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        else:
            new = value + rng.gauss(0.0, 0.1 * max(abs(value), 1.0))
        text = _format_float(new)
        if float(text.strip("()")) != value and text != old:
            return text
    return _format_float(value * 1.1 if value else 0.1)


def perturb_number(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Perturb one int or float literal: floats scale by [0.5, 2] or get noise, ints step."""
    sites = []
    for tok in _region_tokens(code):
        if tok.type != tokenize.NUMBER:
            continue
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
            sites.append((tok, value))
    if not sites:
        return None
    tok, value = rng.choice(sites)
    new = str(_new_int(value, rng)) if isinstance(value, int) else _new_float(value, rng)
    return _splice(code, tok, new), f"line {tok.start[0]}: {tok.string} -> {new}"


_FLIPS = {
    "<": ("<=", ">"),
    "<=": ("<", ">="),
    ">": (">=", "<"),
    ">=": (">", "<="),
    "==": ("!=", "!="),
    "!=": ("==", "=="),
}


def flip_comparison(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Flip one comparison: `<` <-> `<=` (occasionally `<` <-> `>`), `==` <-> `!=`."""
    sites = [t for t in _region_tokens(code) if t.type == tokenize.OP and t.string in _FLIPS]
    if not sites:
        return None
    tok = rng.choice(sites)
    near, far = _FLIPS[tok.string]
    new = far if rng.random() < 0.2 else near
    return _splice(code, tok, new), f"line {tok.start[0]}: '{tok.string}' -> '{new}'"


def swap_min_max(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Turn one call of `min` into `max` or the other way round."""
    tokens = _region_tokens(code)
    sites = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string not in ("min", "max"):
            continue
        called = i + 1 < len(tokens) and tokens[i + 1].string == "("
        # `obj.max(...)` may have no `min`, and `def max(` is a definition, not a call.
        prev = tokens[i - 1].string if i else ""
        if called and prev not in (".", "def"):
            sites.append(tok)
    if not sites:
        return None
    tok = rng.choice(sites)
    new = "max" if tok.string == "min" else "min"
    return _splice(code, tok, new), f"line {tok.start[0]}: {tok.string} -> {new}"


_SWAPPABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)
_PURE_CALLS = frozenset(
    "abs min max len sum round int float bool str tuple list dict set sorted range "
    "enumerate zip any all divmod pow isinstance".split()
)
_EFFECT = "<side effect>"  # pseudo-name written by calls that may touch shared state


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _reads_writes(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """Names a statement may read and may write, erring towards more of both."""
    reads: set[str] = set()
    writes: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            (reads if isinstance(node.ctx, ast.Load) else writes).add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            base = _base_name(node)
            if base:
                writes.add(base)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                # obj.method(...) may mutate obj.
                base = _base_name(func)
                if base:
                    writes.add(base)
            if not (isinstance(func, ast.Name) and func.id in _PURE_CALLS):
                writes.add(_EFFECT)
                reads.add(_EFFECT)
        elif isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom)):
            writes.add(_EFFECT)
            reads.add(_EFFECT)
    if isinstance(stmt, ast.AugAssign):
        reads |= writes
    return reads, writes


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    reads_a, writes_a = _reads_writes(a)
    reads_b, writes_b = _reads_writes(b)
    return not (writes_a & (reads_b | writes_b) or writes_b & reads_a)


def _owns_lines(stmt: ast.stmt, lines: list[str]) -> bool:
    """True when `stmt` alone fills its physical lines (no `;` neighbours sharing them)."""
    first, last = stmt.lineno - 1, stmt.end_lineno - 1
    if last >= len(lines):
        return False
    # ast columns are UTF-8 byte offsets.
    head = lines[first].encode("utf-8")[: stmt.col_offset]
    tail = lines[last].encode("utf-8")[stmt.end_col_offset :].strip()
    return not head.strip() and (not tail or tail.startswith(b"#"))


def swap_statements(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Swap two adjacent simple statements that share no written name."""
    regions = _regions(code)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.splitlines(keepends=True)
    pairs = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for a, b in zip(body, body[1:]):
                if not (isinstance(a, _SWAPPABLE) and isinstance(b, _SWAPPABLE)):
                    continue
                if any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in (a, b)):
                    continue  # docstrings and bare constants: swapping them means nothing
                if not any(r.contains(a.lineno - 1, b.end_lineno - 1) for r in regions):
                    continue
                if _owns_lines(a, lines) and _owns_lines(b, lines) and _independent(a, b):
                    pairs.append((a, b))
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    a0, a1, b0, b1 = a.lineno - 1, a.end_lineno, b.lineno - 1, b.end_lineno
    new_lines = lines[:a0] + lines[b0:b1] + lines[a1:b0] + lines[a0:a1] + lines[b1:]
    summary = f"lines {a.lineno}-{b.end_lineno}: swapped '{lines[a0].strip()}' and '{lines[b0].strip()}'"
    return "".join(new_lines), summary


def crossover(code: str, other: str, rng: random.Random) -> tuple[str, str] | None:
    """Replace one evolvable region of `code` by the same region of `other`."""
    try:
        mine, theirs = region_texts(code), region_texts(other)
    except RegionError:
        return None
    if len(mine) != len(theirs):
        return None
    differing = [i for i, (m, t) in enumerate(zip(mine, theirs)) if m != t]
    if not differing:
        return None
    index = rng.choice(differing)
    mine[index] = theirs[index]
    return replace_regions(code, mine), f"region {index + 1}: crossover"


MUTATIONS: tuple[Operator, ...] = (perturb_number, flip_comparison, swap_min_max, swap_statements)


# --- proposer -----------------------------------------------------------------------------------


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


class OfflineProposer:
    """Proposes children by random mutation (and occasional crossover), with no LLM.

    Deterministic: the same request always yields the same Proposal, since the only randomness
    is `random.Random(request.seed)`.
    """

    name = "offline"

    def __init__(
        self,
        crossover_rate: float = 0.1,
        max_attempts: int = 20,
        mutations_per_child: tuple[int, int] = (1, 3),
    ):
        self.crossover_rate = crossover_rate
        self.max_attempts = max_attempts
        self.mutations_per_child = mutations_per_child

    async def propose(self, request: ProposalRequest) -> Proposal:
        """A whole child program ("rewrite"), or a failure Proposal when nothing works."""
        parent = request.parent.code
        try:
            find_regions(parent)
        except RegionError as error:
            return self._failure(f"offline proposer cannot read the evolve markers: {error}")
        rng = random.Random(request.seed)
        partner = _crossover_partner(request.parent, request.inspirations)
        discarded = 0
        for _ in range(self.max_attempts):
            child, summaries = self._mutate(parent, partner, rng)
            if child == parent:
                continue
            if not _parses(child):
                discarded += 1
                continue
            return Proposal(child, "rewrite", self.name, summary="; ".join(summaries),
                            discarded=discarded)
        return self._failure(
            f"offline proposer found no mutation that parses after {self.max_attempts} attempts",
            discarded,
        )

    def _mutate(self, code: str, partner: Program | None, rng: random.Random) -> tuple[str, list[str]]:
        """Apply 1..3 operators; with probability `crossover_rate` the first is a crossover."""
        summaries = []
        steps = rng.randint(*self.mutations_per_child)
        # Crossover goes first so that later mutations are not overwritten by the spliced region.
        if partner is not None and rng.random() < self.crossover_rate:
            result = crossover(code, partner.code, rng)
            if result:
                code = result[0]
                summaries.append(f"{result[1]} with program {partner.id}")
                steps -= 1
        for _ in range(steps):
            # Try the operators in random order so one without a site does not waste the step.
            for op in rng.sample(MUTATIONS, len(MUTATIONS)):
                result = op(code, rng)
                if result:
                    code = result[0]
                    summaries.append(result[1])
                    break
        return code, summaries

    def _failure(self, reason: str, discarded: int = 0) -> Proposal:
        return Proposal("", "rewrite", self.name, failure=reason, discarded=discarded)


def _crossover_partner(parent: Program, inspirations: tuple[Program, ...]) -> Program | None:
    """The best-scoring inspiration whose code differs from the parent's."""
    others = [p for p in inspirations if p.code != parent.code]
    if not others:
        return None
    return max(others, key=lambda p: -math.inf if p.score is None else p.score)
