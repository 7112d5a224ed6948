"""The model registry and the checkpoint record, after torchvision's ``models/_api.py``.

A *model* is registered by name with its builder (keyword-only options, ``weights=``) and, as
metadata, the modules that train and score it: ``training`` offers ``Options`` and ``make_task`` (see
`perception.training`), ``evaluation`` offers ``evaluate`` and ``format_report`` (see
`perception.evaluation`). ``streetloc train NAME`` / ``streetloc evaluate NAME`` dispatch on these
entries; the registry itself holds no command-line code. *Weights* are registered by name too: a
checkpoint file shipped in ``perception/weights/`` whose record says everything needed to use it —
input size, normalization, classes or geo origin, the data it was trained on, the recipe, and its
measured accuracy.

>>> from perception.models import get_model, get_weights, list_models
>>> list_models()
['detector', 'posenet', 'segmenter']
>>> ckpt = get_weights("posenet_synthetic_city").load()      # the default PoseNet checkpoint
>>> model = get_model("posenet", weights=ckpt)                 # built and loaded, eval mode

Checkpoints are plain ``torch.save`` dicts of tensors, strings and numbers, so that ``torch.load(...,
weights_only=True)`` reads them without executing code from the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from perception.transforms import ImageTransform

CHECKPOINT_FORMAT = "streetloc-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


# ---------------------------------------------------------------------------------------------- checkpoint


@dataclass
class Checkpoint:
    """A trained model as stored: what to build (``model`` + ``arch``), its weights, and its record.

    ``meta`` holds, for every model: ``input_size_px`` ([width, height]), ``normalization``
    (``mean``/``std`` per channel on 0-1 pixels, ``channel_order``), ``trained_on`` (one dict per drive:
    path, source, frames used, content hash), ``recipe`` (training options), ``metrics`` (name ->
    figures, e.g. ``"val"`` and ``"eval:<drive>"``), ``created_utc``; plus what the model needs itself
    (PoseNet: ``geo_origin``, ``crs``, ``center_enu_m``, ``scale_m``, covariance calibration).
    """

    model: str
    arch: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""  # "<model>-<first 8 hex of the weights' hash>" unless named

    def __post_init__(self) -> None:
        if not self.model_id:
            self.model_id = f"{self.model}-{weights_digest(self.state_dict)[:8]}"

    def to_dict(self, *, half: bool = True) -> dict[str, Any]:
        """The stored form. ``half`` keeps floating-point weights as fp16 (half the file; the loader
        restores fp32) — PoseNet's predictions move by millimetres, far below its error."""
        state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
                 for k, v in self.state_dict.items()}
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": self.model,
                "model_id": self.model_id, "arch": dict(self.arch), "meta": dict(self.meta),
                "state_dict": state}

    def save(self, path: str | os.PathLike, *, half: bool = True) -> Path:
        """Write atomically (a crash mid-save never leaves a half-written checkpoint at ``path``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(half=half), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "checkpoint") -> Checkpoint:
        if d.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{where}: not a streetloc checkpoint (format={d.get('format')!r})")
        if int(d.get("version", 0)) > CHECKPOINT_VERSION:
            raise ValueError(f"{where}: checkpoint version {d['version']} is newer than this streetloc reads "
                             f"({CHECKPOINT_VERSION}); upgrade streetloc")
        for key in ("model", "arch", "state_dict"):
            if key not in d:
                raise ValueError(f"{where}: checkpoint lacks the field {key!r}")
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in d["state_dict"].items()}
        return cls(model=str(d["model"]), arch=dict(d["arch"]), state_dict=state, meta=dict(d.get("meta", {})),
                   model_id=str(d.get("model_id", "")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Read a checkpoint file; OSError when missing, ValueError naming the file when malformed."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path}: no such file")
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip (a pickle before 1.6)
            raise ValueError(f"checkpoint {path}: not a PyTorch checkpoint file (first bytes {head!r})")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle/zip errors of a corrupt or foreign file
            # torch appends a page of advice; its first sentence says what was wrong
            reason = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]
            raise ValueError(f"checkpoint {path}: unreadable ({type(exc).__name__}: {reason})") from None
        if not isinstance(d, dict):
            raise ValueError(f"checkpoint {path}: holds a {type(d).__name__}, not a checkpoint record")
        return cls.from_dict(d, where=f"checkpoint {path}")

    @property
    def input_size_px(self) -> tuple[int, int]:
        """(width_px, height_px) the model takes."""
        w, h = self.meta["input_size_px"]
        return int(w), int(h)

    def transforms(self) -> ImageTransform:
        """The preprocessing its network takes (resize, normalization), from the record."""
        return ImageTransform.from_meta(self.meta, where=f"checkpoint {self.model_id}")


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 hex of the weights (names, dtypes as fp16, values): stable across save/load round trips."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu()
        if t.is_floating_point():
            t = t.half()  # the stored precision, so a saved and reloaded model keeps its id
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, and the modules (dotted names, imported on demand so that
    loading a model never loads its training code) that train and evaluate it ("" where none)."""

    name: str
    builder: Callable[..., nn.Module]
    description: str = ""
    training: str = ""  # a module with ``Options`` and ``make_task`` (see perception.training)
    evaluation: str = ""  # a module with ``evaluate`` and ``format_report`` (see perception.evaluation)

    def training_module(self) -> ModuleType:
        if not self.training:
            raise ValueError(f"model {self.name!r} has no training module")
        return importlib.import_module(self.training)

    def evaluation_module(self) -> ModuleType:
        if not self.evaluation:
            raise ValueError(f"model {self.name!r} has no evaluation module")
        return importlib.import_module(self.evaluation)


@dataclass(frozen=True)
class WeightsEntry:
    """A named checkpoint shipped with streetloc (``perception/weights/<filename>``)."""

    name: str
    model: str
    filename: str
    description: str = ""
    default: bool = False  # the checkpoint a node loads when none is named

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's record (input size, normalization, classes or geo origin, training data,
        recipe, metrics): torchvision's ``Weights.meta``. Reads the file."""
        return self.load().meta

    def transforms(self) -> ImageTransform:
        """The preprocessing these weights take (torchvision's ``Weights.transforms``)."""
        return self.load().transforms()

    def load(self) -> Checkpoint:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"weights {self.name!r}: {self.path} is missing; train it with the command in docs/{self.model}.md")
        return Checkpoint.load(self.path)


_MODELS: dict[str, ModelEntry] = {}
_WEIGHTS: dict[str, WeightsEntry] = {}
# model name -> the module whose import registers it and its weights. Imported on first use of that name
# (every one for a listing or an unknown name), not by ``import perception.models``: a PoseNet node then
# never imports the detector and the segmenter, nor torchvision through them (a third of its start).
_PROVIDERS = {"detector": "perception.models.detector", "posenet": "perception.models.posenet",
              "segmenter": "perception.models.segmenter"}


def _register(model: str | None = None) -> None:
    """Import the module registering ``model`` (None or an unknown name: every model's)."""
    for name, module in _PROVIDERS.items():
        if model is None or model not in _PROVIDERS or name == model:
            importlib.import_module(module)


def register_model(name: str, **entry: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder under ``name`` (keyword args: the other ModelEntry fields)."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name=name, builder=builder, **entry)
        return builder

    return wrap


def register_weights(entry: WeightsEntry) -> None:
    if entry.name in _WEIGHTS:
        raise ValueError(f"weights {entry.name!r} are registered twice")
    _WEIGHTS[entry.name] = entry


def list_models() -> list[str]:
    _register()
    return sorted(_MODELS)


def get_model_entry(name: str) -> ModelEntry:
    _register(name)
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model: ``get_model("posenet", backbone="resnet18")``."""
    return get_model_entry(name).builder(**kwargs)


def list_weights(model: str | None = None) -> list[str]:
    _register(model)
    return sorted(n for n, w in _WEIGHTS.items() if model is None or w.model == model)


def get_weights(name: str) -> WeightsEntry:
    if name not in _WEIGHTS:
        _register()
    try:
        return _WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(list_weights()) or '(none)'}") from None


def default_weights(model: str) -> WeightsEntry:
    _register(model)
    for entry in _WEIGHTS.values():
        if entry.model == model and entry.default:
            return entry
    raise ValueError(f"model {model!r} has no default weights; name a checkpoint file")


def resolve_checkpoint(spec: str | os.PathLike | Checkpoint | None, *, model: str) -> Checkpoint:
    """A checkpoint from a file path, a registered weights name, or None (the model's default)."""
    if not isinstance(spec, Checkpoint) and spec and str(spec) not in _WEIGHTS and not os.path.exists(spec):
        _register()  # perhaps another model's weights name: said so below, not "no such file"
    if isinstance(spec, Checkpoint):
        ckpt = spec
    elif spec is None or str(spec) == "":
        ckpt = default_weights(model).load()
    elif str(spec) in _WEIGHTS:
        ckpt = get_weights(str(spec)).load()
    else:
        ckpt = Checkpoint.load(spec)
    if ckpt.model != model:
        raise ValueError(f"checkpoint {spec}: holds a {ckpt.model!r} model, not {model!r}")
    return ckpt
