"""Hyperparameter search on Optuna: ``python -m detect.tune`` (a study) and ``--lr-find`` (the range test).

One idea per module:
  space.py      the search-space YAML, checked against the hyperparameter schema
  study.py      storage (journal file / PostgreSQL), sampler, pruner, trials whose worker died
  objective.py  TuneConfig and one trial: fit() with the values, fitness reported at each validation
  workers.py    one worker here, or one per GPU / K CPU processes; signals
  report.py     trials.csv, best_hyp.yaml, best.pt, report.html
  lr_find.py    the learning-rate range test
"""
