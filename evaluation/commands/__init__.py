"""The edge of ``urcdm-eval``: each command's arguments, parsed once into typed options, handed to the
pipeline (:mod:`evaluation.pipeline`, :mod:`evaluation.scales`, :mod:`evaluation.memorization`), and
its result printed or written. Nothing below this package sees an argparse namespace."""
