"""URCDM: Ultra-Resolution Cascaded Diffusion Models for gigapixel synthetic histopathology.

Importing the package is cheap and offline-safe: torch and imagen-pytorch are only imported by
the modules that need them (see :mod:`urcdm.imagen_compat`).
"""

__version__ = "0.1.0"
