"""Gigapixel output: a disk-backed canvas and a streaming writer of OpenSlide-readable pyramids.

>>> canvas = DiskCanvas.create("work.canvas", 41344, 41344)
>>> canvas.write(x, y, patch)                      # any order, any region
>>> write_pyramid(canvas, "slide.tiff", quality=90)
"""

from urcdm.pyramid.canvas import DiskCanvas
from urcdm.pyramid.levels import halve, level_sizes
from urcdm.pyramid.writer import (
    ArraySource,
    PyramidInfo,
    SlideSource,
    atomic_directory,
    atomic_output,
    check_output_directory,
    check_output_path,
    check_pyramid_name,
    check_recordable_mpp,
    write_pyramid,
)

__all__ = ["ArraySource", "DiskCanvas", "PyramidInfo", "SlideSource", "atomic_directory", "atomic_output", "check_output_directory", "check_output_path", "check_pyramid_name", "check_recordable_mpp", "halve", "level_sizes", "write_pyramid"]
