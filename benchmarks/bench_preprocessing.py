"""Our preprocessing against clean-fid's and torch-fidelity's own, with one network, measured.

The network is torch-fidelity's FID Inception graph with seeded random weights (no Inception
weights can be downloaded here); torch-fidelity and clean-fid run their own pipelines on image
folders, with that network plugged in. Images: square tissue regions of the real slides in
``../shared/data`` against the same regions blurred (sigma 1.5 px). Sections:

- ``whole``  FID over whole 1024^2 images: ours (the square read at 299 with PIL bicubic, the
             filter stopped at its edges), ours with ``--image-size 1024`` (fed as they are),
             torch-fidelity (raw 1024^2 uint8 into the network, which resizes with TF1 bilinear),
             clean-fid "clean" (PIL bicubic in float to 299, no uint8 rounding) and the same
             rounded to uint8.
- ``fixed``  FID over fixed-scale 256^2 crops (``--level 2``): ours (fed as read, the network
             resizes), torch-fidelity on our exported crops, clean-fid "clean" on them, and our
             earlier default (PIL bicubic to 299 in uint8 first).
- ``pfid``   the same four on pfid patches (``patch256-min256max0``).

Prints one JSON object: FID per method, and each method's difference from ours in FID and in mean
absolute grey levels of the 299^2 network input. Not a test.
    python benchmarks/bench_preprocessing.py [--images 24] [--n 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from cleanfid.fid import get_folder_features
from cleanfid.resize import make_resizer
from PIL import Image, ImageFilter
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pfid_law import tissue_regions  # noqa: E402  (same real regions)
from evaluation.crops import CropProtocol  # noqa: E402
from evaluation.export import export_crops  # noqa: E402
from evaluation.features import load_extractor  # noqa: E402
from evaluation.metrics import frechet_distance  # noqa: E402
from evaluation.pipeline import RunOptions, plan_crops, side_statistics  # noqa: E402
from evaluation.reading import resize_square  # noqa: E402
from urcdm.clikit import comma_choices, positive_int, run_script  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fid_of(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


class FloatInput(torch.nn.Module):
    """The same network taking clean-fid's float 0-255 input (torch-fidelity insists on uint8)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        check = tf_inception.vassert
        tf_inception.vassert = lambda *args, **kwargs: None  # only the dtype check; the maths is unchanged
        try:
            with torch.inference_mode():
                return self.net.net(images.float())[0]
        finally:
            tf_inception.vassert = check


def folder_arrays(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def network_inputs(arrays: list[np.ndarray], how: str) -> np.ndarray:
    """The 299^2 float input each method gives the network, for the grey-level differences."""
    out = []
    for pixels in arrays:
        if how == "tf1":
            tensor = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None].float()
            out.append(interpolate_bilinear_2d_like_tensorflow1x(tensor, size=(299, 299), align_corners=False)[0].numpy().transpose(1, 2, 0))
        elif how == "clean":
            out.append(make_resizer("PIL", False, "bicubic", (299, 299))(pixels))
        elif how == "clean_uint8":
            out.append(make_resizer("PIL", True, "bicubic", (299, 299))(pixels).astype(np.float32))
        elif how == "bicubic_uint8":
            out.append(resize_square(pixels, 299).astype(np.float32))
    return np.stack(out)


def methods_on_folders(real: Path, fake: Path, extractor, weights: Path, ours_inputs: tuple[np.ndarray, np.ndarray],
                       batch: int) -> dict:
    """torch-fidelity and clean-fid on two image folders, plus the grey-level gap of each to ours."""
    result = {}
    metrics = torch_fidelity.calculate_metrics(input1=str(real), input2=str(fake), fid=True, cuda=False, verbose=False,
                                               feature_extractor="inception-v3-compat",
                                               feature_extractor_weights_path=str(weights), batch_size=batch,
                                               save_cpu_ram=True)
    result["torch_fidelity"] = {"fid": metrics["frechet_inception_distance"], "resize": "inside the network, TF1 bilinear"}
    float_net = FloatInput(extractor.fn)
    for name, quantise in (("clean_fid_clean", False), ("clean_fid_clean_uint8", True)):
        resize = make_resizer("PIL", quantise, "bicubic", (299, 299))
        sides = [get_folder_features(str(folder), float_net, num_workers=0, batch_size=batch, device=torch.device("cpu"),
                                     mode="clean", custom_fn_resize=resize, verbose=False) for folder in (real, fake)]
        result[name] = {"fid": fid_of(*sides), "resize": f"PIL bicubic to 299 in float{', rounded to uint8' if quantise else ''}"}
    arrays = folder_arrays(real)
    gaps = {"torch_fidelity": "tf1", "clean_fid_clean": "clean", "clean_fid_clean_uint8": "clean_uint8"}
    for name, how in gaps.items():
        result[name]["mean_abs_grey_levels_vs_ours"] = round(float(np.abs(network_inputs(arrays, how) - ours_inputs[0]).mean()), 3)
    return result


def ours_fid(real: Path, fake: Path, protocol: CropProtocol, extractor, n: int, batch: int) -> float:
    options = RunOptions(protocol, n=n, workers=2, batch_size=batch, allow_fewer=True)
    a, b = (side_statistics(str(folder), folder.name, extractor, options) for folder in (real, fake))
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def export(folder: Path, protocol: CropProtocol, n: int, out: Path) -> Path:
    plan = plan_crops(str(folder), folder.name, RunOptions(protocol, n=n, workers=0, allow_fewer=True))
    return export_crops(plan, protocol, out, workers=2)


def crops_section(real: Path, fake: Path, protocol: CropProtocol, extractor, weights: Path, n: int, batch: int, work: Path) -> dict:
    log(f"{protocol.name}: ours")
    result = {"protocol": protocol.name, "n": n, "ours": {"fid": ours_fid(real, fake, protocol, extractor, n, batch),
                                                         "resize": "inside the network, TF1 bilinear (crops as read)"}}
    before = protocol.with_image_size(299)
    result["ours_before"] = {"fid": ours_fid(real, fake, before, extractor, n, batch), "resize": "PIL bicubic to 299, uint8"}
    crop_dirs = [export(folder, protocol, n, work / f"{protocol.name}-{folder.name}") for folder in (real, fake)]
    log(f"{protocol.name}: torch-fidelity and clean-fid on the exported crops")
    tf1 = network_inputs(folder_arrays(crop_dirs[0]), "tf1")
    result |= methods_on_folders(*crop_dirs, extractor, weights, (tf1,), batch)
    result["ours_before"]["mean_abs_grey_levels_vs_ours"] = round(float(np.abs(network_inputs(folder_arrays(crop_dirs[0]), "bicubic_uint8") - tf1).mean()), 3)
    return _with_differences(result)


def whole_section(real: Path, fake: Path, extractor, weights: Path, batch: int) -> dict:
    log("whole: ours")
    protocol = CropProtocol(mode="whole", image_size=299)
    count = len(list(real.glob("*.png")))
    result = {"protocol": protocol.name, "n": count,
              "ours": {"fid": ours_fid(real, fake, protocol, extractor, count, batch), "resize": "PIL bicubic to 299 from the square, uint8"},
              "ours_image_size_1024": {"fid": ours_fid(real, fake, protocol.with_image_size(1024), extractor, count, batch),
                                       "resize": "none (--image-size 1024): inside the network, TF1 bilinear"}}
    ours_inputs = network_inputs(folder_arrays(real), "bicubic_uint8")
    log("whole: torch-fidelity and clean-fid")
    result |= methods_on_folders(real, fake, extractor, weights, (ours_inputs,), batch)
    return _with_differences(result)


def _with_differences(result: dict) -> dict:
    ours = result["ours"]["fid"]
    for key, value in result.items():
        if isinstance(value, dict) and "fid" in value and key != "ours":
            value["fid_relative_to_ours"] = round(value["fid"] / ours - 1, 4)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("URCDM_TEST_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--images", type=positive_int, default=24, help="real 1024^2 regions (and as many blurred)")
    parser.add_argument("--n", type=positive_int, default=256, help="crops per side for fixed and pfid")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--only", type=comma_choices("whole", "fixed", "pfid"), default="whole,fixed,pfid")
    args = parser.parse_args()
    extractor = load_extractor("inception-v3-random")
    result = {"extractor": extractor.id}
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        weights = work / "random-inception.pth"
        torch.save(extractor.fn.net.state_dict(), weights)
        real, fake = work / "real", work / "blurred"
        real.mkdir()
        fake.mkdir()
        for index, pixels in enumerate(tissue_regions(Path(args.data), 1024, args.images)):
            Image.fromarray(pixels).save(real / f"{index:03d}.png")
            Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.5)).save(fake / f"{index:03d}.png")
        sections = args.only
        if "whole" in sections:
            result["whole"] = whole_section(real, fake, extractor, weights, args.batch_size)
        if "fixed" in sections:
            protocol = CropProtocol(mode="fixed", patch_size=256, image_size=256, level=2)
            result["fixed"] = crops_section(real, fake, protocol, extractor, weights, args.n, args.batch_size, work)
        if "pfid" in sections:
            protocol = CropProtocol(mode="pfid", patch_size=256, image_size=256)
            result["pfid"] = crops_section(real, fake, protocol, extractor, weights, args.n, args.batch_size, work)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
