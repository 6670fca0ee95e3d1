"""Baseline: every row in the harness's unit order (columns in table order, fused groups last)."""

from llm_sql_api import Algorithm


class Evolved(Algorithm):
    """The rows exactly as given."""

    def reorder(self, df, early_stop=0, row_stop=None, col_stop=None, col_merge=[],
                one_way_dep=[], distinct_value_threshold=0.8, parallel=True):
        return df.rows, []
