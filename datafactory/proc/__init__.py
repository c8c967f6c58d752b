"""Child processes of the optional ``[train]`` stack, shared by :mod:`datafactory.train` and
:mod:`datafactory.evaluate` (neither imports the other for these):

- :mod:`~datafactory.proc.child`: run a child (LLaMA-Factory, lm-eval), tee its output to a log, stop
  it on Ctrl-C / SIGTERM; the environment the children get.
- :mod:`~datafactory.proc.progress`: a progress bar driven by a parser of the child's output lines.
- :mod:`~datafactory.proc.failure`: a failed child → a message with a hint, the error line and the log.
- :mod:`~datafactory.proc.extras`: is the ``[train]`` extra installed, is there a CUDA GPU (no heavy
  imports).

It is its own package because it belongs to neither side: training and evaluation both start
children the same way, and evaluation must not depend on training code.
"""
