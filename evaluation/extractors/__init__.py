"""Built-in feature extractors, one module each (see :mod:`evaluation.features` for the registry)."""
