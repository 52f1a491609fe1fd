"""Model card: what was exported, how well it matches PyTorch, and how fast it runs where.

Written beside the exported files as ``model_card.json`` (for machines) and ``model_card.md``
(for people), atomically.
"""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hwnas.fileio import atomic_write, atomic_write_json
from hwnas.formats import FORMATS

CARD_FORMAT = FORMATS["model-card"]

RUNTIME_PACKAGES = (
    "hwnas",
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxslim",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "tensorrt",
)


def package_versions() -> dict[str, str]:
    found = {}
    for name in RUNTIME_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_model_card(out_dir: Path, model: dict[str, Any], exports: list[dict[str, Any]]) -> tuple[Path, Path]:
    """``model`` describes the network (arch, recipe, dataset, accuracy, FLOPs, params); ``exports`` each file."""
    card = {
        CARD_FORMAT.key: CARD_FORMAT.version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model,
        "exports": exports,
        "versions": package_versions(),
        "python": platform.python_version(),
    }
    json_path = atomic_write_json(out_dir / "model_card.json", card)
    markdown = render_markdown(card)
    md_path = atomic_write(out_dir / "model_card.md", lambda temp: temp.write_text(markdown))
    return json_path, md_path


def render_markdown(card: dict[str, Any]) -> str:
    model = card["model"]
    lines = [f"# Model card: {model.get('name', 'model')}", ""]
    for key in ("arch", "source", "dataset", "input_shape", "flops", "params", "torch_accuracy"):
        if model.get(key) is not None:
            lines.append(f"- **{key}**: {_plain(model[key])}")
    for key in ("recipe", "predicted_latency_ms"):
        if model.get(key):
            lines.append(f"- **{key}**:")
            lines += [f"  - {name}: {_plain(value)}" for name, value in model[key].items()]
    lines += [
        "",
        "## Exported files",
        "",
        "| format | file | size | max abs diff | top-1 agreement | accuracy | verified |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in card["exports"]:
        check = item.get("verification") or {}
        accuracy = check.get("file_accuracy")
        lines.append(
            f"| {item['format']} | {item.get('file', '-')} | {item.get('bytes', 0) / 1e6:.2f} MB | "
            f"{_difference(check)} | {_num(check.get('top1_agreement'))} | {_num(accuracy)} | "
            f"{'yes' if check.get('passed') else 'NO: ' + str(check.get('failure') or item.get('error'))} |"
        )
    lines += ["", "## Latency", "", "| format | device | median ms | p10 | p90 | fingerprint |", "|---|---|---|---|---|---|"]
    for item in card["exports"]:
        for measured in item.get("latency", []):
            fingerprint = ", ".join(f"{k}={v}" for k, v in measured.get("fingerprint", {}).items())
            if "error" in measured:
                lines.append(f"| {item['format']} | {measured['device']} | not measured: {measured['error']} | | | |")
            else:
                lines.append(
                    f"| {item['format']} | {measured['device']} | {measured['median_ms']:.4f} | {measured['p10_ms']:.4f} | "
                    f"{measured['p90_ms']:.4f} | {fingerprint} |"
                )
    lines += ["", "## Files", ""] + [
        f"- `{item.get('file')}` sha256 `{item.get('sha256')}`" for item in card["exports"] if item.get("file")
    ]
    lines += ["", "## Versions", ""] + [f"- {name} {value}" for name, value in card["versions"].items()]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    """A value as a person reads it: rounded numbers, ``a x b`` shapes, ``key: value`` for mappings, never a repr."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return " x ".join(_plain(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{name}: {_plain(item)}" for name, item in value.items())
    return f"`{value}`" if isinstance(value, str) and ":" in value and " " not in value else str(value)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _difference(check: dict[str, Any]) -> str:
    """The max abs diff from PyTorch, and from the float64 model when verification needed that."""
    exact = check.get("max_abs_diff_float64")
    return _num(check.get("max_abs_diff")) + ("" if exact is None else f" (float64: {_num(exact)})")
