"""GGR (Greedy Group Recursion, MLSys'25): per-row field orders that share long prompt prefixes.

Every row of a table becomes one LLM prompt: its cells concatenated in the order chosen here.
Prompts that share a prefix with an earlier prompt reuse the serving engine's prefix KV cache.
GGR groups the rows holding the most valuable repeated value, moves that value to the front of
those rows, and recurses on the remaining fields of the group (column recursion) and on the rows
outside the group (row recursion), falling back to one fixed field order per sub-table.
"""

from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from itertools import chain

from llm_sql_api import Algorithm, Table


class Evolved(Algorithm):
    """GGR as in the ADRS code release. Rows are lists whose last cell is the row's index."""

    base = 2000  # larger tables are split in halves, the halves reordered in parallel

    def reorder(self, df, early_stop=0, row_stop=None, col_stop=None, col_merge=[],
                one_way_dep=[], distinct_value_threshold=0.8, parallel=True):
        columns, rows = list(df.columns), df.rows
        n = len(rows)
        if n == 0:
            return Table(columns, []), []
        cells = [[row[j] for row in rows] for j in range(len(columns))]
        scores = [self.column_score(c) for c in cells]
        # Near-unique columns cannot be shared: set aside and appended to every row at the end.
        aside = sorted((j for j, c in enumerate(cells) if len(set(c)) > distinct_value_threshold * n),
                       key=lambda j: -scores[j])
        kept = [j for j in range(len(columns)) if j not in aside]
        work = [[row[j] for j in kept] + [i] for i, row in enumerate(rows)]

        self.early_stop = early_stop
        self.row_stop = row_stop or n
        self.col_stop = col_stop or len(kept) + 1
        order, work = self.fixed_reorder(work)
        if parallel and n > self.base:
            work = self.split_and_reorder([kept[j] if j < len(kept) else None for j in order], work)
        else:
            _, work = self.recursive_reorder(work, 0, 0)

        result = [row[:-1] + [rows[row[-1]][j] for j in aside] for row in work]
        result.sort()
        return result, []

    def max_group_value(self, rows):
        """The value maximising len(v)**2 * (count - 1) over the sub-table, or None."""
        counts = Counter(chain.from_iterable(row[:-1] for row in rows))
        best, best_weight = None, -1
        for value, count in counts.items():
            weight = len(value) ** 2 * (count - 1)
            if weight > best_weight:
                best, best_weight = value, weight
        if best is None or best_weight < self.early_stop:
            return None
        return best

    def fixed_reorder(self, rows):
        """(field order, rows): fields by column score, descending, then rows sorted."""
        width = len(rows[0]) - 1
        scores = [self.column_score([row[j] for row in rows]) for j in range(width)]
        order = sorted(range(width), key=lambda j: -scores[j]) + [width]
        reordered = [[row[j] for j in order] for row in rows]
        reordered.sort()
        return order, reordered

    def recursive_reorder(self, rows, row_depth, col_depth):
        """(field order, rows); the order is the identity unless the sub-table fell back."""
        if not rows:
            return [], rows
        if row_depth >= self.row_stop or col_depth >= self.col_stop:
            return self.fixed_reorder(rows)
        value = self.max_group_value(rows)
        if value is None:
            return self.fixed_reorder(rows)
        group, rest = [], []
        for row in rows:
            (group if value in row else rest).append(row)
        # Column recursion: the value moves to the front; the group's other fields recurse.
        tails = [[c for c in row if c != value] for row in group]
        heads = [[value] * (len(row) - len(tail)) for row, tail in zip(group, tails)]
        _, rest_of_group = self.recursive_reorder(
            [head[1:] + tail for head, tail in zip(heads, tails)], row_depth, col_depth + 1)
        # Row recursion: the rows without the value.
        _, rest = self.recursive_reorder(rest, row_depth + 1, col_depth)
        identity = list(range(len(rows[0])))
        return identity, [[value] + tail for tail in rest_of_group] + rest

    def reorder_chunk(self, rows):
        return self.recursive_reorder(rows, 0, 0)

    def split_and_reorder(self, names, rows):
        """Reorders halves (recursively, down to `base` rows) in a process pool, concatenated.

        As in ADRS (pandas concat aligns columns by name), a chunk that fell back to a fixed
        order is realigned to the field names of the first chunk."""
        chunks = []

        def split(part):
            if len(part) <= self.base:
                chunks.append(part)
            else:
                split(part[:len(part) // 2])
                split(part[len(part) // 2:])

        split(rows)
        with ProcessPoolExecutor() as pool:
            results = list(pool.map(self.reorder_chunk, chunks))
        first = None
        out = []
        for order, part in results:
            header = [names[j] for j in order]
            if first is None:
                first = header
            position = {name: k for k, name in enumerate(header)}
            align = [position[name] for name in first]
            out.extend([row[k] for k in align] for row in part)
        return out
