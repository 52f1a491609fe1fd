"""The networks a user would otherwise pick: torchvision references beside the searched one, on the same device.

A searched network is only worth having if it beats what anyone can take off the shelf. The
references are torchvision's ``mobilenet_v2`` (width 0.35, 0.5, 0.75, 1.0), ``mobilenet_v3_small`` /
``_large`` and ``mnasnet0_5`` / ``1_0``, built as torchvision builds them with only the stem's input
channels and the classifier's classes changed for the data (``small_image=True`` also sets the stem and
the first strided stage to stride 1, the usual adaptation to 32 px images; the benchmark compares both).

The run's **references** stage (:mod:`hwnas.pipeline.stages.references`) uses these: it trains each with the
winner's final recipe, exports it to the first device's format and times it beside the run's final file.

A reference *beats* the searched network when it is more accurate on the test split and either
measures within the budget or is no slower than the searched network.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# label -> (torchvision name, keyword arguments)
REFERENCE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet_v2-0.35": ("mobilenet_v2", {"width_mult": 0.35}),
    "mobilenet_v2-0.5": ("mobilenet_v2", {"width_mult": 0.5}),
    "mobilenet_v2-0.75": ("mobilenet_v2", {"width_mult": 0.75}),
    "mobilenet_v2-1.0": ("mobilenet_v2", {"width_mult": 1.0}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}),
    "mnasnet0_5": ("mnasnet0_5", {}),
    "mnasnet1_0": ("mnasnet1_0", {}),
}
ALL_REFERENCES = tuple(REFERENCE_MODELS)
# the default run's: the three a phone team would try first, small enough that training them like the winner
# keeps ``hwnas run`` near 20 minutes on 2 cores (all eight add ~30 minutes: ``references.models`` in run.toml)
DEFAULT_REFERENCES = ("mobilenet_v3_small", "mobilenet_v2-0.35", "mnasnet0_5")
QUICK_REFERENCES = ("mobilenet_v3_small", "mobilenet_v2-0.35")  # the two smallest: a quick run stays short
SEARCHED = "searched"  # the run's final file's name in the timing session


def reference_module(label: str, channels: int, classes: int, small_image: bool = False, seed: int = 0) -> nn.Module:
    """Torchvision's ``label`` (a key of :data:`REFERENCE_MODELS`) for ``channels`` input channels and ``classes``.

    Seeded weights. With ``small_image`` the stem and the first strided depthwise stage run at stride 1.
    """
    name, kwargs = REFERENCE_MODELS[label]
    return torchvision_module(name, kwargs, channels, classes, small_image, seed)


def torchvision_module(
    name: str, kwargs: dict[str, Any], channels: int, classes: int, small_image: bool = False, seed: int = 0
) -> nn.Module:
    """Torchvision's ``name`` built with ``kwargs`` (e.g. any ``width_mult``), adapted as :func:`reference_module` says."""
    import torch
    import torchvision
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None, num_classes=classes, **kwargs)
        convs = [
            (parent, child_name, child)
            for parent in model.modules()
            for child_name, child in parent.named_children()
            if isinstance(child, nn.Conv2d)
        ]
        parent, child_name, stem = convs[0]
        stride = (1, 1) if small_image else stem.stride
        conv = nn.Conv2d(channels, stem.out_channels, stem.kernel_size, stride, stem.padding, bias=stem.bias is not None)
        setattr(parent, child_name, conv)
    if small_image:
        first_strided = next(c for _, _, c in convs[1:] if c.groups > 1 and c.stride == (2, 2))
        first_strided.stride = (1, 1)
    return model


def train_reference(model: nn.Module, data: Any, recipe: Any, resolution: int, channels: int, seed: int) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` (the trainer's ``fit_model``); validation and test accuracy, cost, and the module.

    The caller chooses torch's threads; the global generator is seeded here (dropout, augmentation).
    """
    import torch

    from hwnas.builder import count_flops, count_params
    from hwnas.trainer import Prepared, evaluate, fit_model

    torch.manual_seed(seed)
    started = time.perf_counter()
    curve = fit_model(model, data, recipe, resolution, channels, seed=seed)
    return {
        "val_accuracy": curve.points[-1]["val_accuracy"],
        "test_accuracy": evaluate(curve.model, Prepared(data.test, resolution, channels)),
        "train_s": time.perf_counter() - started,
        "epochs": len(curve.points),
        "params": count_params(model),
        "flops": count_flops(curve.model, (1, channels, resolution, resolution)),
        "model": curve.model,
    }


def export_reference(
    module: nn.Module, data: Any, resolution: int, channels: int, fmt: str, folder: Path, info: dict[str, Any]
) -> dict[str, Any]:
    """Export a trained ``module`` to ``fmt`` in ``folder``, verified on 200 validation images: the file's name and the check.

    ``data`` is a source (``--data``) or images already loaded (:func:`hwnas.export_model.build_request`)."""
    from hwnas.export_model import ResolvedModel, build_request
    from hwnas.exporters import export_all

    resolved = ResolvedModel(module.eval(), channels, resolution, info, trained=True)
    request = build_request(resolved, data, images=200, calibration=100)
    item = export_all(request, [fmt], folder, [])["exports"][0]
    passed = bool(item["verification"]["passed"])
    return {
        "format": fmt,
        "file": item["file"] if passed else None,  # in ``folder``
        "verified": passed,
        "max_abs_diff": item["verification"].get("max_abs_diff"),
        "output_scale": item["verification"].get("output_scale"),
        "file_accuracy": item["verification"].get("file_accuracy"),
    }


def beats(reference: dict[str, Any], searched: dict[str, Any], budget_ms: float) -> tuple[bool, str]:
    """Does ``reference`` beat ``searched`` (both with ``test_accuracy`` and ``measured_ms``)? And why, in words."""
    ref_acc, ref_ms = reference.get("test_accuracy"), reference.get("measured_ms")
    our_acc, our_ms = searched.get("test_accuracy"), searched.get("measured_ms")
    if ref_acc is None or ref_ms is None or our_acc is None or our_ms is None:
        return False, "not measured"
    accuracy = f"{ref_acc:.4f} vs {our_acc:.4f} test accuracy"
    speed = f"{ref_ms:.3f} vs {our_ms:.3f} ms"
    if ref_acc <= our_acc:
        return False, f"less accurate ({accuracy}; {speed})"
    if ref_ms <= our_ms:
        return True, f"more accurate and no slower ({accuracy}; {speed})"
    if ref_ms <= budget_ms:
        return True, f"more accurate and within the {budget_ms:.3f} ms budget ({accuracy}; {speed})"
    return False, f"more accurate but slower and over the {budget_ms:.3f} ms budget ({accuracy}; {speed})"


def compare(
    references: list[dict[str, Any]], searched: dict[str, Any], budget_ms: float
) -> tuple[list[dict[str, Any]], list[str], str]:
    """Each reference with ``within_budget``, ``beats`` and ``why``; the names that beat the searched network; one sentence."""
    rows = []
    for ref in references:
        won, why = beats(ref, searched, budget_ms)
        measured = ref.get("measured_ms")
        rows.append(ref | {"within_budget": measured is not None and measured <= budget_ms, "beats": won, "why": why})
    winners = [row["name"] for row in rows if row["beats"]]
    measured = [row for row in rows if row.get("measured_ms") is not None]
    if not measured:
        verdict = "No reference network was measured."
    elif winners:
        verdict = (
            f"{len(winners)} of {len(measured)} reference networks beat the searched network "
            f"(more accurate, and within the budget or no slower): {', '.join(winners)}."
        )
    else:
        verdict = (
            f"No reference network beats the searched network: none of the {len(measured)} measured is more accurate "
            "and within the budget or no slower."
        )
    return rows, winners, verdict
