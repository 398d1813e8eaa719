"""The test suite's root. Its presence puts tests/ on sys.path (pytest's default import mode),
so that test modules in sub-folders share the helpers of tests/pgcluster.py (e.g. `require`)."""
