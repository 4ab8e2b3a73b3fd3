"""The sampler: slides -> geometry/schedule -> models -> pyramid.

Pure maths (``geometry``, ``schedule``, ``noise_levels``, ``seams``, the counts of ``cost``) apart from
what runs models (``denoiser``, ``solvers``, ``cascade``, ``backends``) and what writes (``sampler``,
``state``). Nothing here imports torch at package import: the solver names below are offered by
command lines at parse time.
"""

ANCESTRAL = "ancestral"  # imagen-pytorch's own sampler (the paper's): not a diffusers scheduler
SOLVER_NAMES = (ANCESTRAL, "euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_sde")
PRECISIONS = ("fp32", "bf16", "fp16")  # fp32, or autocast to bfloat16 / float16


def held_dtype(precision: str):
    """The dtype the unets are held and run in under ``precision`` (None: fp32, no autocast)."""
    import torch  # here, not at package import (see above)

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
