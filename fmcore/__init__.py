"""fmcore: the library behind fmrepro, a reproducible re-run of
*Flow Matching for Generative Modeling* (Lipman et al., ICLR 2023).

Conventions: t = 0 is noise x_0 ~ N(0, I), t = 1 is data x_1; a model is a vector field
v(t, x). See ``docs/CONTRACTS.md`` for the interfaces between the modules.
"""

import os

__version__ = "0.1.0"

# MLflow >= 3 sends usage telemetry to its developers unless told not to; fmrepro makes no
# network calls except to the user's own tracking server, so every fmcore process opts out
# (a user who wants telemetry sets MLFLOW_DISABLE_TELEMETRY=false).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__all__ = ["__version__"]
