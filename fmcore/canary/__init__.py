"""The canary: does every job of a params file fit and run here, before the campaign does?

``python -m fmcore.canary --params P [--synthetic] [--device D] [--jobs ...]`` runs, per job,
what its training and evaluation will do first, at the job's real model, per-GPU batch and
precision: one training step through :func:`fmcore.training.loop.train_loop` (the real Adam,
EMA, autocast and checkpoint writer), a reload of that checkpoint through the evaluation's
:func:`fmcore.evaluation.model.load_eval_model`, and one batch of each evaluation part at the
configured evaluation batch sizes (``fmcore.canary.probe``; the methods of one network share
one build and one checkpoint round trip). It reports OK/FAIL, times, peak
memory and, where a CUDA batch does not fit, the largest that does (``fmcore.canary.table``).
Layers: ``__main__`` (CLI) -> ``table`` / ``probe`` -> ``memory`` / ``synthetic`` -> fmcore.
"""

from fmcore.canary.probe import JobCheck, check_job

__all__ = ["JobCheck", "check_job"]
