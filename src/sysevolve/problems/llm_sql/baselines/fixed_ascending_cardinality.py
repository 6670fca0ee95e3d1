"""Baseline: one field order for every row, units by ascending distinct count in the table."""

from llm_sql_api import Algorithm


class Evolved(Algorithm):
    """Low-cardinality units first (ties by unit order), so rows share long common prefixes."""

    def reorder(self, df, early_stop=0, row_stop=None, col_stop=None, col_merge=[],
                one_way_dep=[], distinct_value_threshold=0.8, parallel=True):
        distinct = [len(set(df.column(j))) for j in range(len(df.columns))]
        order = sorted(range(len(df.columns)), key=lambda j: distinct[j])
        return [[row[j] for j in order] for row in df.rows], []
