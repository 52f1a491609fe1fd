"""Named search spaces, in a registry that refuses duplicate names (as torchvision's model registry).

Presets:

``default``
    Small MBConv space for 32x32 single-channel images (the embedded Fashion-MNIST data); trains
    in minutes on 2 cores and its whole latency table is measured in minutes.
``proxylessnas``
    ProxylessNAS (mobile) MBConv space at 224: widths 16/24/40/80/96/192/320, kernel {3,5,7},
    expansion {3,6}, 1-4 blocks a stage (the "zero" op as a shorter stage). Its layers are exactly
    the keys of the published Pixel 1 latency table.
``mnasnet``
    MnasNet-A1-shaped factorized space: base widths of MnasNet-A1 x {0.75, 1, 1.25}, depths
    base +- 1, kernel {3,5}, expansion {3,6}, squeeze-excite on/off.
``ofa-mbv3``
    Once-for-All MobileNetV3 space: kernel {3,5,7}, expansion {3,4,6}, depth {2,3,4} per stage,
    resolutions 128-224, squeeze-excite in the 40/112/160-wide stages and h-swish from the
    80-wide stage on, as in MobileNetV3-Large.
``ofa-mbv3-w12``
    The same space at width 1.2, as Once-for-All published latency tables for it (Samsung Note10,
    one YAML per resolution 160, 164, ..., 224): stem 24, a 24-wide first block, stage widths
    32/48/96/136/192, final expand 1152, feature mix 1536. ``hwnas lut import`` reads those files
    into one table of this space.
"""

from __future__ import annotations

import re
from pathlib import Path

from hwnas.errors import UserError
from hwnas.fileio import read_json
from hwnas.formats import FORMATS
from hwnas.opkey import make_divisible
from hwnas.registry import Registry
from hwnas.scaling import scaled_space, split_scaled_name
from hwnas.space import SearchSpace, StageSpace

SPACES: Registry[SearchSpace] = Registry("search space")


def register_space(space: SearchSpace) -> SearchSpace:
    return SPACES.register(space.name, space)


DATA_SPACE_NAME = re.compile(r"(?P<preset>.+)-(?P<channels>\d+)ch-(?P<classes>\d+)cls")


def get_space(name: str) -> SearchSpace:
    """The preset ``name``, or a preset made for other images by its name (``default-3ch-4cls``: ``default`` with
    its stem and classifier for 3-channel images of 4 classes, :meth:`SearchSpace.for_data`) or a scaled one
    (``default-d150w125r120``: :func:`hwnas.scaling.scaled_space`), so an architecture,
    a table or a run folder of such a space finds it as it finds a preset."""
    scaled = split_scaled_name(name)
    if name not in SPACES and scaled is not None:
        return scaled_space(get_space(scaled[0]), scaled[1])
    made = DATA_SPACE_NAME.fullmatch(name)
    if name not in SPACES and made is not None and made["preset"] in SPACES:
        return SPACES.get(made["preset"]).for_data(int(made["channels"]), int(made["classes"]))
    return SPACES.get(name)


def list_spaces(pattern: str = "*") -> list[str]:
    return SPACES.list(pattern)


def _default() -> SearchSpace:
    return SearchSpace(
        name="default",
        description="small MBConv space for 32x32 grayscale images (embedded Fashion-MNIST)",
        in_channels=1,
        num_classes=10,
        resolutions=(32,),
        stem_channels=16,
        stem_stride=1,
        stages=(
            StageSpace(2, (16, 24), (1, 2), (3, 5, 7), (3, 6)),
            StageSpace(2, (32, 40), (1, 2, 3), (3, 5, 7), (3, 6)),
            StageSpace(2, (48, 64), (1, 2, 3), (3, 5, 7), (3, 6), (False, True), ("hswish",)),
            StageSpace(1, (80, 96), (1, 2), (3, 5, 7), (3, 6), (False, True), ("hswish",)),
        ),
        final_expand=256,
        head_act="hswish",
    )


def _proxylessnas() -> SearchSpace:
    mbconv = {"kernels": (3, 5, 7), "expansions": (3, 6)}
    return SearchSpace(
        name="proxylessnas",
        description="ProxylessNAS mobile MBConv space (ImageNet, 224x224)",
        in_channels=3,
        num_classes=1000,
        resolutions=(224,),
        stem_channels=32,
        stem_stride=2,
        stages=(
            StageSpace(1, (16,), (1,), (3, 5, 7), (1,)),
            StageSpace(2, (24,), (1, 2, 3, 4), **mbconv),
            StageSpace(2, (40,), (1, 2, 3, 4), **mbconv),
            StageSpace(2, (80,), (1, 2, 3, 4), **mbconv),
            StageSpace(1, (96,), (1, 2, 3, 4), **mbconv),
            StageSpace(2, (192,), (1, 2, 3, 4), **mbconv),
            StageSpace(1, (320,), (1,), **mbconv),
        ),
        final_expand=1280,
    )


def _mnasnet() -> SearchSpace:
    # MnasNet-A1 stages: (stride, base width, base depth, uses SE in A1)
    base = ((2, 24, 2), (2, 40, 3), (2, 80, 4), (1, 112, 2), (2, 160, 3), (1, 320, 1))
    stages = [StageSpace(1, (16,), (1,), (3,), (1,))]
    for stride, width, depth in base:
        widths = tuple(sorted({make_divisible(width * scale) for scale in (0.75, 1.0, 1.25)}))
        depths = tuple(d for d in (depth - 1, depth, depth + 1) if d >= 1)
        stages.append(StageSpace(stride, widths, depths, (3, 5), (3, 6), (False, True)))
    return SearchSpace(
        name="mnasnet",
        description="MnasNet-A1-shaped factorized MBConv space (ImageNet, 224x224)",
        in_channels=3,
        num_classes=1000,
        resolutions=(224,),
        stem_channels=32,
        stem_stride=2,
        stages=tuple(stages),
        final_expand=1280,
    )


def _ofa_mbv3() -> SearchSpace:
    ofa = {"depths": (2, 3, 4), "kernels": (3, 5, 7), "expansions": (3, 4, 6)}
    return SearchSpace(
        name="ofa-mbv3",
        description="Once-for-All MobileNetV3 space (ImageNet, resolutions 128-224)",
        in_channels=3,
        num_classes=1000,
        resolutions=(128, 144, 160, 176, 192, 208, 224),
        stem_channels=16,
        stem_stride=2,
        stem_act="hswish",
        stages=(
            StageSpace(1, (16,), (1,), (3,), (1,)),
            StageSpace(2, (24,), **ofa),
            StageSpace(2, (40,), **ofa, se=(True,)),
            StageSpace(2, (80,), **ofa, acts=("hswish",)),
            StageSpace(1, (112,), **ofa, se=(True,), acts=("hswish",)),
            StageSpace(2, (160,), **ofa, se=(True,), acts=("hswish",)),
        ),
        final_expand=960,
        feature_mix=1280,
        head_act="hswish",
    )


def _ofa_mbv3_w12() -> SearchSpace:
    """OFA's ``ofa_mbv3_d234_e346_k357_w1.2``: every width of ``ofa-mbv3`` x 1.2 (rounded to 8)."""
    ofa = {"depths": (2, 3, 4), "kernels": (3, 5, 7), "expansions": (3, 4, 6)}
    return SearchSpace(
        name="ofa-mbv3-w12",
        description="Once-for-All MobileNetV3 w1.2 space of the published Note10 latency tables (resolutions 160-224)",
        in_channels=3,
        num_classes=1000,
        resolutions=tuple(range(160, 225, 4)),
        stem_channels=24,
        stem_stride=2,
        stem_act="hswish",
        stages=(
            StageSpace(1, (24,), (1,), (3,), (1,)),
            StageSpace(2, (32,), **ofa),
            StageSpace(2, (48,), **ofa, se=(True,)),
            StageSpace(2, (96,), **ofa, acts=("hswish",)),
            StageSpace(1, (136,), **ofa, se=(True,), acts=("hswish",)),
            StageSpace(2, (192,), **ofa, se=(True,), acts=("hswish",)),
        ),
        final_expand=1152,
        feature_mix=1536,
        head_act="hswish",
    )


for _factory in (_default, _proxylessnas, _mnasnet, _ofa_mbv3, _ofa_mbv3_w12):
    register_space(_factory())


def resolve_space(name_or_path: str) -> SearchSpace:
    """A registered preset by name, or a search space saved as JSON (``hwnas space show --json``)."""
    path = Path(name_or_path)
    if name_or_path in SPACES or not path.suffix:
        return get_space(name_or_path)
    data = read_json(path, "search space")
    if not isinstance(data, dict):
        raise UserError(f"search space {path} must hold a JSON object as `hwnas space show --json` writes")
    data = FORMATS["search-space"].strip(data, path)
    data.pop("hash", None)
    try:
        return SearchSpace.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise UserError(f"search space {path} is malformed ({error})") from None
