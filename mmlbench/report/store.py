"""Transition alias: the run store moved to `mmlbench.store` (below engine and report).

Kept only so `mmlbench/sweep.py`, which another change is editing, imports unchanged;
`from mmlbench.report import store` yields the very module `mmlbench.store`. Remove with that import.
"""

import sys

from mmlbench import store

sys.modules[__name__] = store
