"""The registered extractors' names, apart from the extractors (no torch): the command line checks
``--extractor`` against them while it parses, before torch is loaded or any slide is read."""

from __future__ import annotations

BUILTINS = ("inception-v3", "inception-v3-random")
RANDOM_SUFFIX = "-random"
# Registry name -> the module under evaluation.extractors that builds it (imported only when used,
# so --help and the Inception path never import timm, open_clip or transformers).
FOUNDATION_MODELS = {
    "dinov2-vits14": "dinov2", "dinov2-vitb14": "dinov2", "dinov2-vitl14": "dinov2", "dinov2-vitg14": "dinov2",
    "clip-vitb32": "clip", "clip-vitl14-336": "clip",
    "uni": "uni", "phikon": "phikon", "phikon-v2": "phikon", "conch": "conch",
    "virchow2": "virchow2", "h-optimus-0": "h_optimus",
}


def registered_names() -> list[str]:
    return [*BUILTINS, *FOUNDATION_MODELS, *(name + RANDOM_SUFFIX for name in FOUNDATION_MODELS)]


def foundation_base(spec: str) -> str | None:
    """The foundation model ``spec`` names, with or without ``-random``; None if it names none."""
    base = spec.removesuffix(RANDOM_SUFFIX)
    return base if base in FOUNDATION_MODELS else None


def unknown_extractor_message(spec: str) -> str | None:
    """Why ``spec`` names no extractor, or None: a registered name, or ``module:factory`` (a plug-in,
    which only importing it can check)."""
    if spec in BUILTINS or foundation_base(spec) or ":" in spec:
        return None
    return f"not a registered name ({', '.join(registered_names())}) nor a module:factory plug-in"
