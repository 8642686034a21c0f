"""fmcore: the library behind fmrepro, a reproducible re-run of
*Flow Matching for Generative Modeling* (Lipman et al., ICLR 2023).

Conventions: t = 0 is noise x_0 ~ N(0, I), t = 1 is data x_1; a model is a vector field
v(t, x). See ``docs/CONTRACTS.md`` for the interfaces between the modules.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
