"""Evaluation of base vs tuned models (lm-eval) and the train/eval report.

Like :mod:`datafactory.train`, nothing here imports lm-eval, torch or matplotlib at import time.
"""
