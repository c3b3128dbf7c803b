"""Analytic checks: cases whose answer is known in closed form, run by every pipeline run.

Each check is a :class:`~.records.Check` (name, what is known, expected, measured, tolerance,
passed); the modules group them by subject:

- :mod:`.maps`: change of variables, every flow family configured as a known affine map;
- :mod:`.ode`: the ODE solver, trace and RNODE penalties on linear fields; Hutchinson's bias;
- :mod:`.bits`: bits/dim of densities known in closed form;
- :mod:`.entropy`: the toy densities' entropies (the toy table's best possible NLL);
- :mod:`.trained`: Gaussian data, every trained 2D model, determinism.

:mod:`.collect` gathers the records of a pipeline run into ``checks.json`` and ``checks.md``.
"""
