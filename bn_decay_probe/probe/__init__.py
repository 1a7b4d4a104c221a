"""The probe: measuring one batch-norm layer's moving statistics, for one decay or many.

Configuration (``config``, ``arguments``), the TF1 API builders and the probe and sweep graphs
(``builders``, ``graph``, ``sweep_graph``), the measuring core (``measure``, ``notes``,
``devices``), the engines that run a layer (``engines``), the numpy rules (``theory``,
``explain``), the results (``result``, ``sweep_result``) and the entry points (``api``: probe()
and sweep(); ``matrix``: semantics_matrix()).

This package's ``__init__`` imports nothing, so that a module here (the numpy rules, say) can
be imported without the rest; the public API is the top-level package's.
"""
