"""Typed URCDM configuration: levels, stitching geometry, and the cascade's unets; presets and YAML.

Two presets share one structure:

- ``paper``: the method's numbers (DESIGN.md): 1024-px patches covering 40000 / 6500 / 1024 slide px,
  12.5 % overlap, grids 1 / 7 / 46, unets at 64 -> 256 -> 1024 px with 1024 / 256 / 256 timesteps and
  noise / v / v objectives, random 256-px crops for the last unet, gradients clipped to norm 1. The
  authors published no code, so the unet widths and attention layout are imagen-pytorch's own Imagen
  presets (``BaseUnet64``, ``SRUnet256``, ``SRUnet1024``), the implementation the paper used.
- ``tiny``: the same three levels and three unets at 16 -> 32 -> 64 px with a handful of channels, so
  every unet trains and samples on two CPU cores in seconds (tests, demo, CI).

YAML in and out; unknown keys, wrong types and impossible geometry are one ``UserError`` naming the
field (e.g. ``unets[2].random_crop``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from urcdm.errors import UserError

OBJECTIVES = ("noise", "v", "x_start")
# urcdm: three cascades, each level >= 1 conditioned on the previous level's context. outpaint: the
# paper's baseline, one cascade at the last level's magnification with no context, outpainting the
# whole slide from its own finished neighbours.
METHODS = ("urcdm", "outpaint")


def method_levels(config: "URCDMConfig", method: str) -> list[int]:
    """The levels a method has a cascade for."""
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    last = len(config.levels) - 1
    return list(range(last + 1)) if method == "urcdm" else [last]


def check_level(config: "URCDMConfig", method: str, level: int, name: str = "level") -> None:
    levels = method_levels(config, method)
    if level not in levels:
        raise UserError(f"{name} must be in {', '.join(map(str, levels))} for method {method}, got {level}")


def has_context(method: str, level: int) -> bool:
    return method == "urcdm" and level > 0


def run_folder(method: str, level: int, unet: int) -> str:
    """Where ``train-all`` puts a job inside its models folder, and where ``sample --models`` looks."""
    return f"l{level}u{unet}" if method == "urcdm" else f"{method}-u{unet}"


@dataclass(frozen=True)
class UnetSpec:
    image_size: int
    dim: int
    dim_mults: tuple[int, ...]
    num_resnet_blocks: int | tuple[int, ...]
    layer_attns: bool | tuple[bool, ...]
    timesteps: int
    objective: str
    batch_size: int
    attn_heads: int = 8
    attn_dim_head: int = 64
    ff_mult: float = 2.0
    memory_efficient: bool = False
    random_crop: int | None = None
    lr: float = 1e-4
    sample_steps: int | None = None      # None: every timestep (the paper's 1024 / 256 / 256)


@dataclass(frozen=True)
class LevelSpec:
    span: int        # level-0 slide pixels covered by one patch
    grid: int        # patches per side when this level is stitched (1 at level 0)


@dataclass(frozen=True)
class TrainSpec:
    grad_clip: float = 1.0
    ema_beta: float = 0.995
    ema_update_every: int = 10
    ema_update_after_step: int = 100
    warmup_steps: int = 0
    checkpoint_every: int = 1000
    validate_every: int = 500
    validation_fraction: float = 0.05
    validation_batches: int = 4
    workers: int = 4
    cond_drop_prob: float = 0.1
    lowres_sample_noise_level: float = 0.2


@dataclass(frozen=True)
class URCDMConfig:
    name: str
    patch_px: int
    levels: tuple[LevelSpec, ...]
    unets: tuple[UnetSpec, ...]
    overlap: float = 0.125
    fill_rgb: tuple[int, ...] = (242, 243, 242)
    white_threshold: float = 0.9     # a block whose background share is at least this is "mostly white"
    train: TrainSpec = field(default_factory=TrainSpec)

    def __post_init__(self):
        validate(self)

    @property
    def stride(self) -> int:
        return round(self.patch_px * (1 - self.overlap))

    def stitched_px(self, level: int) -> int:
        return self.patch_px + (self.levels[level].grid - 1) * self.stride

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(yaml.safe_dump(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# What a training value must be, as a fact about how the training loop uses it (a modulus, a
# probability, a DataLoader worker count, a fraction of blocks held out).
_POSITIVE = ("a positive number", lambda v: 0 < v < math.inf)
_COUNT = ("at least 1", lambda v: v >= 1)
_NON_NEGATIVE = ("at least 0", lambda v: v >= 0)
_PROBABILITY = ("in [0, 1]", lambda v: 0 <= v <= 1)
_FRACTION = ("in [0, 1)", lambda v: 0 <= v < 1)
_TRAIN_RULES = {
    "grad_clip": _POSITIVE, "ema_beta": _FRACTION, "ema_update_every": _COUNT, "ema_update_after_step": _NON_NEGATIVE,
    "warmup_steps": _NON_NEGATIVE, "checkpoint_every": _COUNT, "validate_every": _COUNT,
    "validation_fraction": _FRACTION, "validation_batches": _COUNT, "workers": _NON_NEGATIVE,
    "cond_drop_prob": _PROBABILITY, "lowres_sample_noise_level": _PROBABILITY,
}


def validate(config: URCDMConfig) -> None:
    if config.patch_px < 1:
        raise UserError(f"patch_px: must be at least 1, got {config.patch_px}")
    if not 0 <= config.overlap < 0.5:
        raise UserError(f"overlap: must be in [0, 0.5) so that no two patches of a checkerboard phase overlap, got {config.overlap}")
    if config.patch_px * (1 - config.overlap) != config.stride:
        raise UserError(f"overlap: patch_px x (1 - overlap) must be a whole number of pixels, got {config.patch_px * (1 - config.overlap)}")
    if len(config.fill_rgb) != 3 or not all(0 <= c <= 255 for c in config.fill_rgb):
        raise UserError("fill_rgb: expected three values in 0..255")
    if not 0 < config.white_threshold <= 1:
        raise UserError("white_threshold: must be in (0, 1]")
    if not config.levels:
        raise UserError("levels: at least one level is needed")
    if config.levels[0].grid != 1:
        raise UserError("levels[0].grid: level 0 is one patch (the whole-slide view), so its grid must be 1")
    for i, level in enumerate(config.levels):
        if level.span < 1:
            raise UserError(f"levels[{i}].span: must be at least 1 slide px, got {level.span}")
    for i, (outer, inner) in enumerate(zip(config.levels, config.levels[1:]), start=1):
        if inner.span >= outer.span:
            raise UserError(f"levels[{i}].span: {inner.span} does not nest inside level {i - 1}'s {outer.span} "
                            "(each level must magnify the one before)")
    for i, level in enumerate(config.levels[1:], start=1):
        covered = config.stitched_px(i) * level.span / config.patch_px
        if level.grid < 1 or covered < config.levels[0].span:
            needed = math.ceil((config.levels[0].span * config.patch_px / level.span - config.patch_px) / config.stride) + 1
            raise UserError(f"levels[{i}].grid: {level.grid} patches cover {covered:.0f} slide px, less than level 0's "
                            f"{config.levels[0].span}; use at least {needed}")
    if not config.unets:
        raise UserError("unets: at least one unet is needed")
    sizes = [u.image_size for u in config.unets]
    if sizes != sorted(set(sizes)):
        raise UserError(f"unets: image sizes must increase along the cascade, got {sizes}")
    if sizes[-1] != config.patch_px:
        raise UserError(f"unets[{len(sizes) - 1}].image_size: the last unet makes the patch, so it must be patch_px {config.patch_px}")
    for i, unet in enumerate(config.unets):
        where = f"unets[{i}]"
        if unet.objective not in OBJECTIVES:
            raise UserError(f"{where}.objective: expected one of {', '.join(OBJECTIVES)}, got {unet.objective!r}")
        for name in ("num_resnet_blocks", "layer_attns"):
            value = getattr(unet, name)
            if isinstance(value, tuple) and len(value) != len(unet.dim_mults):
                raise UserError(f"{where}.{name}: needs one value per dim_mults entry ({len(unet.dim_mults)})")
        if unet.image_size % 2 ** (len(unet.dim_mults) - 1):
            raise UserError(f"{where}.image_size: {unet.image_size} is not divisible by 2^{len(unet.dim_mults) - 1} (dim_mults)")
        if unet.random_crop is not None and not 0 < unet.random_crop <= unet.image_size:
            raise UserError(f"{where}.random_crop: must be in (0, image_size {unet.image_size}]")
        if unet.sample_steps is not None and not 0 < unet.sample_steps <= unet.timesteps:
            raise UserError(f"{where}.sample_steps: must be in (0, timesteps {unet.timesteps}]")
        for name in ("dim", "timesteps", "batch_size", "attn_heads", "attn_dim_head"):
            if getattr(unet, name) < 1:
                raise UserError(f"{where}.{name}: must be at least 1")
        if any(m < 1 for m in unet.dim_mults):
            raise UserError(f"{where}.dim_mults: every entry must be at least 1, got {list(unet.dim_mults)}")
        blocks = unet.num_resnet_blocks if isinstance(unet.num_resnet_blocks, tuple) else (unet.num_resnet_blocks,)
        if any(b < 0 for b in blocks):
            raise UserError(f"{where}.num_resnet_blocks: must not be negative")
        for name in ("lr", "ff_mult"):
            if not _POSITIVE[1](getattr(unet, name)):
                raise UserError(f"{where}.{name}: must be {_POSITIVE[0]}, got {getattr(unet, name)}")
    _validate_train(config.train)


def _validate_train(train: TrainSpec) -> None:
    for name, (rule, holds) in _TRAIN_RULES.items():
        value = getattr(train, name)
        if not holds(value):
            raise UserError(f"train.{name}: must be {rule}, got {value}")


def _plain(value):
    """Tuples as lists so the YAML is plain and hand-editable."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(value, hint, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, option, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: unexpected {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        inner = args[0]
        return tuple(_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise UserError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserError(f"{_join(where, unknown[0])}: unknown key (known: {', '.join(names)})")
    kwargs = {}
    for name, spec in names.items():
        if name not in values:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise UserError(f"{_join(where, name)}: required")
            continue
        hint = hints[name]
        if typing.get_origin(hint) is tuple and len(typing.get_args(hint)) == 2 and typing.get_args(hint)[1] is Ellipsis \
                and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            items = values[name]
            if not isinstance(items, list):
                raise UserError(f"{_join(where, name)}: expected a list")
            kwargs[name] = tuple(_build(typing.get_args(hint)[0], v, f"{_join(where, name)}[{i}]") for i, v in enumerate(items))
        else:
            kwargs[name] = _convert(values[name], hint, _join(where, name))
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def from_dict(values: dict) -> URCDMConfig:
    return _build(URCDMConfig, values, "")


def load_config(spec: str | Path) -> URCDMConfig:
    """A preset name (``paper``, ``tiny``) or a YAML file."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a config file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if values is None:
        raise UserError(f"{path}: the file is empty (write a preset to edit with `urcdm config tiny -o FILE`)")
    try:
        return from_dict(values)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def paper() -> URCDMConfig:
    return URCDMConfig(
        name="paper", patch_px=1024,
        levels=(LevelSpec(40000, 1), LevelSpec(6500, 7), LevelSpec(1024, 46)),
        unets=(
            UnetSpec(64, 512, (1, 2, 3, 4), 3, (False, True, True, True), timesteps=1024, objective="noise", batch_size=16),
            UnetSpec(256, 128, (1, 2, 4, 8), (2, 4, 8, 8), (False, False, False, True), timesteps=256, objective="v",
                     batch_size=8, memory_efficient=True),
            UnetSpec(1024, 128, (1, 2, 4, 8), (2, 4, 8, 8), False, timesteps=256, objective="v", batch_size=8,
                     memory_efficient=True, random_crop=256),
        ),
    )


def tiny() -> URCDMConfig:
    return URCDMConfig(
        name="tiny", patch_px=64,
        levels=(LevelSpec(512, 1), LevelSpec(192, 3), LevelSpec(64, 9)),
        unets=(
            UnetSpec(16, 16, (1, 2), 1, (False, True), timesteps=32, objective="noise", batch_size=4,
                     attn_heads=2, attn_dim_head=16, lr=1e-3),
            UnetSpec(32, 16, (1, 2), 1, False, timesteps=16, objective="v", batch_size=4, attn_heads=2,
                     attn_dim_head=16, lr=1e-3),
            UnetSpec(64, 16, (1, 2), 1, False, timesteps=16, objective="v", batch_size=4, attn_heads=2,
                     attn_dim_head=16, random_crop=32, lr=1e-3),
        ),
        train=TrainSpec(ema_update_every=1, ema_update_after_step=0, checkpoint_every=10, validate_every=10,
                        validation_fraction=0.2, validation_batches=1, workers=0),
    )


PRESETS = {"paper": paper, "tiny": tiny}
