"""`mmlbench tune`: every cell of a grid searched with the same budget on the validation split, then its best setting's seeds tested once.

`space` (search spaces: the plug-ins' defaults and an experiment file's [search] tables), `study`
(one Optuna study per cell in a journal file of the store: its name, sampler, pruner, budget and
recovery), `trial` (one trial: ask, train it as a run, report, tell), `search` (the trials of
every cell, in this process, --jobs worker processes or Ray tasks) and `final` (the best setting's
seeds trained and tested, and each cell's summary).
"""
