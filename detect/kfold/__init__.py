"""K-fold training with out-of-fold predictions and a fold ensemble: ``python -m detect.kfold``.

  split.py  folds stratified by class presence and scene (iterative stratification), groups kept whole
  run.py    KFoldConfig, run_kfold: train each fold through fit(), predict its held-out images, merge
"""
