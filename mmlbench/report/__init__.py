"""Results: the Parquet run store, comparisons across runs, and their renderings."""
