"""What a candidate program imports: the `Algorithm` base class and the `Table` it receives.

The harness calls `Evolved().reorder(table, early_stop=100000, row_stop=4, col_stop=2,
col_merge=[], distinct_value_threshold=0.7, parallel=True)` once per table. `table` is a fresh
`Table` per call: `columns` (the names of the units: columns, or fused groups of columns) and
`rows` (lists of strings, one cell per unit). `reorder` returns the rows with each row's cells
in the order it chooses, as a `Table`, a list of row lists, a pandas DataFrame or a 2-D array,
alone or as the first item of a tuple (ADRS returned `(frame, list)`). Only the order of the
cells inside each row matters for the score; the order of the rows and the names are ignored.
"""

from __future__ import annotations


class Table:
    """Rows of string cells with unit names; the candidate's own copy, free to modify."""

    __slots__ = ("columns", "rows")

    def __init__(self, columns, rows):
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Table({len(self.rows)} rows x {len(self.columns)} columns: {self.columns})"

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    def column(self, key) -> list[str]:
        """The cells of one column, by name or position."""
        j = self.columns.index(key) if isinstance(key, str) else key
        return [row[j] for row in self.rows]

    def copy(self) -> "Table":
        return Table(self.columns, self.rows)

    def to_pandas(self):
        """The table as a pandas DataFrame of dtype object (needs pandas, not a dependency)."""
        import pandas

        return pandas.DataFrame(self.rows, columns=self.columns, dtype=object)


class Algorithm:
    """Base class of the evolved `Evolved` class, with the helpers GGR uses."""

    def __init__(self, df=None):
        self.df = df

    def reorder(self, df, early_stop=0, row_stop=None, col_stop=None, col_merge=[],
                one_way_dep=[], distinct_value_threshold=0.8, parallel=True):
        raise NotImplementedError("Evolved must implement reorder()")

    @staticmethod
    def calculate_length(value) -> int:
        """GGR's weight of a value: its length squared."""
        return len(str(value)) ** 2

    @staticmethod
    def column_score(cells) -> float:
        """GGR's column score: avg_len**2 * (rows / distinct - 1), 0 if every cell is distinct."""
        n = len(cells)
        distinct = len(set(cells))
        if n == 0 or distinct == n:
            return 0.0
        avg_len = sum(map(len, map(str, cells))) / n
        return avg_len * avg_len * (n / distinct - 1)
