"""Every model the project loads, behind one module (DESIGN.md §7, STYLE.md habit 5).

``KNOWN_MODELS`` lists the ids we know and their licences. Any other Hugging Face id or local folder
works too; the registry is documentation and the place the seed's short names map from.

Offline first: when ``HF_HUB_OFFLINE`` is set, nothing is downloaded (we pass ``local_files_only``
ourselves, so the variable counts even if ``huggingface_hub`` was imported before it was set). A model
that cannot be found becomes one ``InputError`` line naming it and how to provide it offline
(``model_not_found``), never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import InputError
from .config import DEFAULT_DEPTH_MODEL, ZEROSCOPE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What we know about a model id: its kind, its licence and a note."""

    kind: str  # "depth", "flow", ... (the loader that takes it)
    licence: str
    note: str = ""


KNOWN_MODELS: dict[str, ModelInfo] = {
    # Depth Anything V2 (transformers ports). Only Small is Apache-2.0; Base/Large are non-commercial.
    "depth-anything/Depth-Anything-V2-Small-hf": ModelInfo("depth", "Apache-2.0", "default depth model"),
    "depth-anything/Depth-Anything-V2-Base-hf": ModelInfo("depth", "CC-BY-NC-4.0"),
    "depth-anything/Depth-Anything-V2-Large-hf": ModelInfo("depth", "CC-BY-NC-4.0"),
    # Depth Anything v1, which the paper used (ViT-L); the seed's --encoder vits|vitb|vitl.
    "LiheYoung/depth-anything-small-hf": ModelInfo("depth", "Apache-2.0", "seed --encoder vits"),
    "LiheYoung/depth-anything-base-hf": ModelInfo("depth", "Apache-2.0", "seed --encoder vitb"),
    "LiheYoung/depth-anything-large-hf": ModelInfo("depth", "Apache-2.0", "seed --encoder vitl (the paper's)"),
    # RAFT from torchvision, trained on FlyingChairs + FlyingThings like the reference's raft-things.pth.
    "raft_large": ModelInfo("flow", "BSD-3-Clause", "torchvision Raft_Large_Weights.C_T_V2"),
    "raft_small": ModelInfo("flow", "BSD-3-Clause", "torchvision Raft_Small_Weights.C_T_V2"),
}

SEED_ENCODERS = {  # the seed's svg_run.py --encoder -> the v1 checkpoint it loaded
    "vits": "LiheYoung/depth-anything-small-hf",
    "vitb": "LiheYoung/depth-anything-base-hf",
    "vitl": "LiheYoung/depth-anything-large-hf",
}


# --------------------------------------------------------------------------------------------------
# shared: offline mode and "model not found"


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no downloads (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def looks_like_path(name: str) -> bool:
    """A model name meant as a local path rather than a hub id (``org/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.path.isabs(name) or "\\" in name


def model_not_found(
    name: str, what: str, reason: object, *, flag: str = "model", download: str | None = None, alternative: str | None = None
) -> InputError:
    """The one-line error for a model that cannot be loaded, saying how to provide it offline.

    ``flag``: the parameter that chooses the model (a CLI shows its own flag name: ``InputError.params``);
    ``alternative``: a parameter that does without the model (``depth_from`` for depth). ``download``: how
    to fetch it on a connected machine (default: ``huggingface-cli download`` into a folder, for hub ids).
    """
    reason = " ".join(str(reason).split()).split(". ")[0][:160]  # the first sentence is the cause
    params = (flag,) if alternative is None else (flag, alternative)
    if looks_like_path(name) or Path(name).exists():
        hint = f"give {flag} a folder saved with save_pretrained"
    else:
        where = ("offline (HF_HUB_OFFLINE is set)" if not _AUTO_OFFLINE else "offline (the hub does not answer)") if offline() else "could not download it"
        download = download or f"run `huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass {flag} DIR"
        hint = f"{where}: on a connected machine {download}"
    if alternative is not None:
        hint += f", or pass {alternative} DIR"
    return InputError(f"{what} '{name}': cannot load it ({reason}); {hint}", params=params)


@contextlib.contextmanager
def loading(name: str, what: str, *, flag: str = "model", download: str | None = None, alternative: str | None = None) -> Iterator[None]:
    """Turn the errors ``from_pretrained`` raises for a missing or foreign model into ``model_not_found``.

    ``OSError`` covers missing files, cache misses and network failures (``huggingface_hub``'s errors
    derive from it); ``ValueError`` covers a malformed id and a folder that is not a model.
    """
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise model_not_found(name, what, "no such folder", flag=flag, alternative=alternative)
    try:
        yield
    except (OSError, ValueError) as e:
        raise model_not_found(name, what, e, flag=flag, download=download, alternative=alternative) from None


_AUTO_OFFLINE = False  # HF_HUB_OFFLINE was set by ``check_available``, not by the user
HUB_TIMEOUT = 2.0  # seconds to wait for the hub before treating it as unreachable (no retry storms)
_reachable: dict[str, bool] = {}


def host_reachable(url: str, timeout: float = HUB_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` (answered once per process)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host, port = parsed.hostname or url, parsed.port or (443 if parsed.scheme != "http" else 80)
    if host not in _reachable:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _reachable[host] = True
        except OSError:
            _reachable[host] = False
    return _reachable[host]


def hub_reachable() -> bool:
    from huggingface_hub import constants

    return host_reachable(constants.ENDPOINT)


def missing_reason(name: str, probe_file: str = "config.json") -> str | None:
    """Why the model ``name`` (hub id or folder) cannot be used without waiting on the network, or None.

    A folder must hold ``probe_file``; a hub id is fine when that file is in the Hugging Face cache, or
    when downloads are allowed and the hub answers within ``HUB_TIMEOUT``. Nothing is downloaded.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return None if (path / probe_file).is_file() else f"{name} has no {probe_file}"
    if looks_like_path(name):
        return "no such folder"
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, probe_file), str):
        return None
    if offline():
        return "not in the Hugging Face cache"
    if not hub_reachable():
        return f"not in the Hugging Face cache, and the hub does not answer within {HUB_TIMEOUT:.0f} s"
    return None


def check_available(name: str, what: str, *, flag: str, probe_file: str = "config.json", alternative: str | None = None) -> None:
    """Fail fast (``model_not_found``) when ``missing_reason`` says the model cannot be had.

    When the hub does not answer, ``HF_HUB_OFFLINE`` is set for the rest of the process, so that later
    loads look only in the cache instead of retrying the network many times.
    """
    global _AUTO_OFFLINE
    reason = missing_reason(name, probe_file)
    if reason is not None:
        error = model_not_found(name, what, reason, flag=flag, alternative=alternative)
        if not offline() and not looks_like_path(name) and not Path(name).expanduser().exists():
            os.environ["HF_HUB_OFFLINE"] = "1"
            _AUTO_OFFLINE = True  # (said so in later messages: the user did not set it)
        raise error


class KeptModels:
    """Models kept loaded between conversions in one process (a batch worker): one per kind, counted.

    ``keep_loaded()`` installs one for its ``with`` block; while it is installed every loader hands back the
    model it loaded last for the same arguments instead of loading it again (seconds to a minute for
    zeroscope), and a model asked for with other arguments replaces it (one model per kind in memory).
    ``loads[kind]`` counts the real loads.
    """

    def __init__(self) -> None:
        self.loads: dict[str, int] = {}
        self._kept: dict[str, tuple[str, object]] = {}

    def get(self, kind: str, key: object, load):
        text = repr(key)
        kept = self._kept.get(kind)
        if kept is not None and kept[0] == text:
            log.debug("%s model: the one loaded for an earlier conversion", kind)
            return kept[1]
        self._kept.pop(kind, None)  # drop the old model before loading another
        model = load()
        self.loads[kind] = self.loads.get(kind, 0) + 1
        self._kept[kind] = (text, model)
        return model


_KEPT: KeptModels | None = None


@contextlib.contextmanager
def keep_loaded(kept: KeptModels | None = None) -> Iterator[KeptModels]:
    """Keep every model loaded inside the block for the next load with the same arguments (``KeptModels``)."""
    global _KEPT
    previous, _KEPT = _KEPT, kept if kept is not None else (_KEPT or KeptModels())
    try:
        yield _KEPT
    finally:
        _KEPT = previous


_LOADING = threading.Lock()


def kept(kind: str, key: object, load):
    """``load()``, or the model ``keep_loaded`` kept for ``kind`` and ``key`` (the loaders call this).

    One load at a time: stages run in threads, and transformers' and diffusers' loaders build a model's modules on
    the meta device through a process-wide patch of ``torch.nn.Module`` (accelerate's ``init_empty_weights``), which
    turns a model being built in another thread meanwhile into empty tensors.
    """
    with _LOADING:
        return load() if _KEPT is None else _KEPT.get(kind, key, load)


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (what Depth Anything and RAFT are run in), fp32 on CPU (fp16 CPU kernels are slow)."""
    return torch.float16 if device.type == "cuda" else torch.float32


# --------------------------------------------------------------------------------------------------
# depth


@dataclass(frozen=True)
class DepthModel:
    """A monocular depth network and the input it expects.

    The preprocessing numbers come from the checkpoint's ``preprocessor_config.json`` when it has one,
    else the Depth Anything values (DESIGN.md §2). We do the resize ourselves rather than through the
    image processor: transformers' DPT processor picks the scale closest to 1 (a 320x576 frame becomes
    294x518), while Depth Anything resizes so that the SHORT side is >= 518 (518x938), as the paper.
    """

    net: torch.nn.Module
    name: str
    input_size: int = 518  # short side of the network input (Depth Anything)
    multiple: int = 14  # both sides a multiple of the ViT patch size
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # ImageNet

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype


def depth_model_name(model: str | None = None, encoder: str | None = None) -> str:
    """The model to load from the CLI's ``--model`` / seed ``--encoder`` (at most one of them)."""
    if model is not None and encoder is not None:
        raise InputError(f"model {model} and encoder {encoder} both choose the depth model; give one", params=("model", "encoder"))
    if encoder is not None:
        if encoder not in SEED_ENCODERS:
            raise InputError(f"encoder {encoder}: expected one of {', '.join(SEED_ENCODERS)}", params=("encoder",))
        return SEED_ENCODERS[encoder]
    return model if model is not None else DEFAULT_DEPTH_MODEL


def load_depth_model(
    name: str = DEFAULT_DEPTH_MODEL, *, device: torch.device, dtype: torch.dtype | None = None, flag: str = "model",
    alternative: str | None = None,
) -> DepthModel:
    """Load a depth checkpoint in transformers' format (hub id or local folder) in eval mode: Depth Anything V1/V2 as
    ``depth_anything.DepthAnything``, any other ``AutoModelForDepthEstimation`` through transformers.

    ``dtype``: None = ``default_dtype(device)``. Raises ``InputError`` if it cannot be found, naming
    ``flag`` (the CLI option that chooses the model) in its advice.
    """
    dtype = default_dtype(device) if dtype is None else dtype
    return kept("depth", (name, str(device), str(dtype)), lambda: _load_depth_model(name, device, dtype, flag, alternative))


def _load_depth_model(name: str, device: torch.device, dtype: torch.dtype, flag: str, alternative: str | None) -> DepthModel:
    from . import depth_anything

    with loading(name, "depth model", flag=flag, alternative=alternative):
        folder = _depth_folder(name)
        config = depth_anything.read_config(folder)
        if depth_anything.unsupported(config) is None:  # Depth Anything V1/V2: ours, without transformers' import
            net = depth_anything.load(folder, dtype)
        else:
            net = _TransformersDepth(folder, dtype)
        preprocessor = folder / "preprocessor_config.json"
        preprocessor = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
    if not preprocessor:
        log.info("%s has no preprocessor_config.json: using Depth Anything's input size and normalisation", name)
    kind = config.get("depth_estimation_type", "relative")
    if kind != "relative":
        # Stages 2-3 treat the output as relative disparity (DESIGN.md §2); a metric model's depth in
        # metres has to go through stage 3's --use_metric_depth after inversion instead.
        log.warning("depth model %s predicts %s depth, not relative disparity", name, kind)
    info = KNOWN_MODELS.get(name)
    log.info("depth model %s (%s, %s)%s", name, dtype, type(net).__name__, f", licence {info.licence}" if info else "")
    return DepthModel(net.to(device).eval(), name, **_input_spec(preprocessor))


DEPTH_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors")


def _depth_folder(name: str) -> Path:
    """The folder holding the depth model ``name``: the folder itself, or a hub id's snapshot in the Hugging Face cache
    (downloaded unless offline): its config, its processor's config and its weights (safetensors, else the .bin)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name} has no config.json")
        return path
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(name, allow_patterns=list(DEPTH_FILES), local_files_only=offline()))
    if not any(folder.glob("model*.safetensors")):
        folder = Path(snapshot_download(name, allow_patterns=[*DEPTH_FILES[:2], "pytorch_model.bin"], local_files_only=offline()))
    return folder


class _TransformersDepth(torch.nn.Module):
    """Any other ``AutoModelForDepthEstimation`` checkpoint (DPT, ZoeDepth, ...) through transformers, called as
    ``depth_anything.DepthAnything`` is: ``net(pixel_values)`` -> ``(N, H, W)``."""

    def __init__(self, folder: Path, dtype: torch.dtype) -> None:
        super().__init__()
        from transformers import AutoModelForDepthEstimation

        self.net = AutoModelForDepthEstimation.from_pretrained(folder, dtype=dtype, local_files_only=True)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=pixel_values).predicted_depth


def _input_spec(cfg: dict) -> dict:
    """``DepthModel`` fields from a (DPT-style) ``preprocessor_config.json``; missing keys keep defaults."""
    spec: dict = {}
    size = cfg.get("size")
    if isinstance(size, dict):
        sides = [size[k] for k in ("height", "width", "shortest_edge") if k in size]
        if sides:
            spec["input_size"] = int(min(sides))
    elif isinstance(size, int):
        spec["input_size"] = size
    multiple = cfg.get("ensure_multiple_of", cfg.get("size_divisor"))
    if multiple:
        spec["multiple"] = int(multiple)
    if cfg.get("do_normalize", True) is False:
        spec["mean"], spec["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        for key, field in (("image_mean", "mean"), ("image_std", "std")):
            if key in cfg:
                value = cfg[key]
                spec[field] = tuple(float(v) for v in (value if isinstance(value, list) else [value] * 3))
    return spec


# --------------------------------------------------------------------------------------------------
# optical flow (RAFT)


RAFT_NAMES = ("raft_large", "raft_small")


# torchvision's URLs of RAFT's C_T_V2 weights (``Raft_Large_Weights.C_T_V2.url``; tested against the pinned
# torchvision): written here since importing torchvision's model registry to read them took 3.6-5 s of a 1080p
# convert's stabilisation thread on the GPU, holding the GIL the other stages need (py-spy)
RAFT_URLS = {
    "raft_large": "https://download.pytorch.org/models/raft_large_C_T_V2-1bb1363a.pth",
    "raft_small": "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
}


def _raft_url(name: str) -> str:
    return RAFT_URLS[name]


def raft_cache_path(name: str) -> Path:
    """Where torchvision keeps the weights of ``raft_large``/``raft_small`` (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _raft_url(name).rsplit("/", 1)[-1]


def raft_missing_reason(name: str) -> str | None:
    """Why torchvision's ``raft_large``/``raft_small`` weights cannot be had now (neither cached nor downloadable), in
    a few words, or None."""
    if raft_cache_path(name).is_file():
        return None
    if offline():
        return "HF_HUB_OFFLINE is set" if not _AUTO_OFFLINE else "offline"
    host = _raft_url(name).split("/")[2]
    return None if host_reachable(_raft_url(name)) else f"{host} does not answer"


def check_raft(name: str) -> None:
    """Fail fast when torchvision's ``raft_large``/``raft_small`` weights are neither cached nor downloadable now."""
    why = raft_missing_reason(name)
    if why is not None:
        path, url = raft_cache_path(name), _raft_url(name)
        raise InputError(
            f"flow {name}: its weights are not in {path.parent} and {why}; download {url} into that folder, or use flow dis",
            params=("flow",),
        )


def load_raft(name_or_path: str = "raft_large", *, device: torch.device, small: bool | None = None) -> torch.nn.Module:
    """torchvision RAFT in eval mode (``_load_raft``), kept while ``keep_loaded`` is on."""
    return kept("flow", (name_or_path, str(device), small), lambda: _load_raft(name_or_path, device=device, small=small))


def _load_raft(name_or_path: str, *, device: torch.device, small: bool | None) -> torch.nn.Module:
    """torchvision RAFT in eval mode, from ``raft_large``/``raft_small`` or a local state-dict file.

    A name takes torchvision's weights, downloaded into the torch hub cache once (never while
    ``HF_HUB_OFFLINE`` is set). A file must hold a torchvision RAFT ``state_dict``; its architecture
    (large or small) is read from its keys, and ``small`` (None = either) must agree with it. The
    princeton-vl checkpoints (``raft-things.pth``) use other layer names and are refused with a clear
    message rather than converted.
    """
    from torchvision.models.optical_flow import raft_large, raft_small

    if name_or_path in RAFT_NAMES:
        if small is not None and small != (name_or_path == "raft_small"):
            raise ValueError(f"load_raft({name_or_path!r}, small={small}): the name already says the size")
        small = name_or_path == "raft_small"
        path = raft_cache_path(name_or_path)
        if not path.is_file():
            url = _raft_url(name_or_path)
            download = f"download {url} and pass model FILE (or put it in {path.parent})"
            if offline():
                raise model_not_found(name_or_path, "RAFT", "weights not in the torch hub cache", download=download)
            if not host_reachable(url):
                raise model_not_found(name_or_path, "RAFT", f"weights not in the torch hub cache, and {url} does not answer", download=download)
            path.parent.mkdir(parents=True, exist_ok=True)
            hash_prefix = path.stem.rsplit("-", 1)[-1]  # torchvision names its files <name>-<sha256 prefix>.pth
            try:
                torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=False)
            except (OSError, RuntimeError) as e:  # RuntimeError: hash mismatch
                raise model_not_found(name_or_path, "RAFT", e, download=download) from None
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise InputError(f"model {name_or_path}: no such RAFT checkpoint (a file, or raft_large / raft_small)", params=("model",))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a file that is not a checkpoint
        raise InputError(
            f"{path}: cannot read as a torch checkpoint ({type(e).__name__}); delete or replace it"
        ) from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a RAFT state_dict, got {type(state).__name__}")
    if any(k.startswith(("module.fnet", "fnet.")) for k in state):
        raise InputError(
            f"{path}: a princeton-vl RAFT checkpoint; use torchvision's RAFT weights "
            "(--model raft_large, or a file saved from torchvision's raft_large().state_dict())"
        )
    # raft_small's context encoder has bottleneck blocks (convnormrelu3); raft_large's does not.
    is_small = any(".convnormrelu3." in k for k in state)
    if small is not None and small != is_small:
        raise InputError(f"{path}: holds {'raft_small' if is_small else 'raft_large'} weights, but small is {small}", params=("small",))
    net = (raft_small if is_small else raft_large)(weights=None)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a torchvision RAFT state_dict ({first})") from None
    return net.to(device).eval()


# --------------------------------------------------------------------------------------------------
# zeroscope (stage 4 and stage 0: text-to-video)

SVD_XT = "stabilityai/stable-video-diffusion-img2vid-xt"
KNOWN_MODELS[ZEROSCOPE] = ModelInfo("video", "CC-BY-NC-4.0", "the paper's video model (576x320, 24 frames)")
KNOWN_MODELS[SVD_XT] = ModelInfo("vae", "Stability AI community licence", "--vae svd: only its temporal-decoder VAE")


@dataclass(frozen=True)
class Zeroscope:
    """A text-to-video latent diffusion model as its diffusers components (not a pipeline).

    ``unet`` (``UNet3DConditionModel``, latents ``(B, c, F, h, w)``), ``vae`` (``AutoencoderKL``, or
    ``AutoencoderKLTemporalDecoder`` when ``temporal_vae``), ``text_encoder`` (``CLIPTextModel``),
    ``tokenizer`` (``CLIPTokenizer``), ``scheduler`` (``DDPMScheduler``), all on ``device`` in ``dtype``.
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    device: torch.device
    dtype: torch.dtype
    name: str
    temporal_vae: bool = False

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side (8 for SD's VAE: one halving per level but the last)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels


def load_zeroscope(
    name_or_path: str = ZEROSCOPE,
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    vae: str = "model",
    svd_path: str = SVD_XT,
    flag: str = "model_path",
) -> Zeroscope:
    """Load zeroscope (or any model in its layout: ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``).

    ``vae``: ``"model"`` = the model's own SD VAE; ``"svd"`` = the SVD-XT temporal-decoder VAE read from
    ``svd_path`` (its ``vae/`` subfolder), which the reference swaps in to reduce flicker (DESIGN.md §5).
    The scheduler is always a ``DDPMScheduler`` built from the model's scheduler config, as the
    reference does (zeroscope ships a DDIM config). ``dtype``: None = ``default_dtype(device)``.
    Raises ``InputError`` (one line) when a part cannot be found.
    """
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if vae not in ("model", "svd"):
        raise InputError(f"vae {vae}: expected 'model' or 'svd'", params=("vae",))
    dtype = default_dtype(device) if dtype is None else dtype
    local = dict(local_files_only=offline())
    with loading(name_or_path, "video model", flag=flag):
        unet = UNet3DConditionModel.from_pretrained(name_or_path, subfolder="unet", torch_dtype=dtype, **local)
        text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", dtype=dtype, **local)
        tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **local)
        scheduler = DDPMScheduler.from_pretrained(name_or_path, subfolder="scheduler", **local)
        if vae == "model":
            autoencoder = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", torch_dtype=dtype, **local)
    if vae == "svd":
        with loading(svd_path, "SVD-XT VAE", flag="svd_path"):
            autoencoder = AutoencoderKLTemporalDecoder.from_pretrained(svd_path, subfolder="vae", torch_dtype=dtype, **local)
    info = KNOWN_MODELS.get(name_or_path)
    log.info("video model %s (%s, vae %s)%s", name_or_path, dtype, vae, f", licence {info.licence}" if info else "")
    return Zeroscope(
        unet=unet.to(device).eval(),
        vae=autoencoder.to(device).eval(),
        text_encoder=text_encoder.to(device).eval(),
        tokenizer=tokenizer,
        scheduler=scheduler,
        device=device,
        dtype=dtype,
        name=name_or_path,
        temporal_vae=vae == "svd",
    )


# --------------------------------------------------------------------------------------------------
# regional compilation

# The blocks that repeat through zeroscope's UNet3D and the SD VAE. Compiling these (not the whole
# model) fuses their normalisation + activation + residual chains while Dynamo traces each block type
# once: a few graphs, minutes to build, instead of one huge graph per input shape. The layout copies
# between blocks (a third of an eager UNet call, around the temporal layers) stay.
COMPILED_BLOCKS = (
    "ResnetBlock2D",
    "TemporalConvLayer",
    "Transformer2DModel",
    "TransformerTemporalModel",
    "UNetMidBlock2D",
    "Upsample2D",
    "Downsample2D",
)


def compile_blocks(module: torch.nn.Module, names: tuple[str, ...] = COMPILED_BLOCKS) -> int:
    """``torch.compile`` every outermost submodule of ``module`` whose class is in ``names``, in place.

    Shapes are dynamic, so the views x frames batches of the different passes (and any frame size)
    reuse one compiled graph per block type instead of recompiling per shape. Numerics stay those of
    the eager blocks up to fused rounding (tested against eager on the tiny model). Returns how many
    submodules were wrapped. Compiled graphs are cached on disk by Inductor
    (``TORCHINDUCTOR_CACHE_DIR``), so only a machine's first run pays the full compile time.
    """
    import torch._dynamo

    # Each block class is one code object; its different channel counts and structures (with and
    # without a shortcut conv, say) are separate graphs under it, more than Dynamo's default limit.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    done: list[str] = []
    for name, sub in module.named_modules():
        if type(sub).__name__ in names and not any(name.startswith(p + ".") for p in done):
            sub.compile(dynamic=True)
            done.append(name)
    return len(done)


def compile_zeroscope(model: Zeroscope, unet: str = "diffusers", *, vae: bool = True, scope: str | None = None) -> int:
    """Compile the model for ``DenoiseConfig(unet=unet)``, in place; returns how many modules were compiled.

    ``unet="diffusers"``: the UNet's and the VAE's repeated blocks (``compile_blocks``, dynamic shapes). Measured
    on an H100 with the full-size architecture: UNet calls 1.09x and VAE round trips 1.16x faster; the default
    stereo schedule on a 16-frame x 8-view matrix at 576x320 takes 202 s instead of 224 s and peaks at 14.0
    instead of 18.9 GiB (fused blocks keep fewer intermediates). Compiling costs about 200 s on a machine's first
    run and about a minute once Inductor's on-disk cache holds the kernels, so it pays off over several windows
    or clips. A block that fails to compile runs eagerly (with Dynamo's warning) instead of stopping the run.
    Compiling the whole diffusers UNet makes a call 1.40x faster but costs 156 s per input shape, and did not
    finish within 6 minutes with dynamic shapes.

    ``unet="ours"``: our channels-last forward compiled with static shapes (``unet3d.compile_unet``; ``scope``
    None = ``unet3d.DEFAULT_COMPILE_SCOPE``: "whole" compiles the forward per shape, "blocks" its repeated blocks
    with each UNet call replayed as one CUDA graph on a GPU) and, with ``vae``, our forward of the SD VAE by regions
    (``svg3d.vae.compile_ours``; another VAE: its encoder and decoder whole, ``compile_vae``), every graph cached
    on disk in the user cache folder (``unet3d.compile_cache_dir``), so a machine pays the cold compile once per
    torch version. (On the shared 2-core CPU the tiny test VAE compiled measured 0.5x to 2.2x eager across runs;
    the GPU runs of issue 14 decide with ``bench/bench_unet_call.py``; ``vae=False`` keeps it eager.)
    """
    import torch._dynamo

    if unet == "ours":
        from . import unet3d
        from . import vae as ours_vae

        unet3d.compile_unet(model.unet, scope=scope or unet3d.DEFAULT_COMPILE_SCOPE)
        return 1 + ((ours_vae.compile_ours(model.vae) or compile_vae(model.vae)) if vae else 0)
    if unet != "diffusers":
        raise ValueError(f"unet {unet!r}: expected 'diffusers' or 'ours'")
    torch._dynamo.config.suppress_errors = True
    return compile_blocks(model.unet) + compile_blocks(model.vae)


# Channels-last VAE per device type, the one place it is chosen. CPU (oneDNN, 2 cores, SD's VAE at 288x160):
# a round trip 1.17x faster channels-last. H100 eager: no gain (issue 8); compiled, Inductor picks conv layouts
# itself on a GPU. Issue 14 measures it with bench/bench_unet_call.py.
VAE_CHANNELS_LAST = {"cpu": True, "cuda": False}
VAE_COMPILE_MODE = "default"  # no CUDA graphs: a VAE call is ~100 ms of large kernels, launches do not matter


def compile_vae(vae: torch.nn.Module, *, channels_last: bool | None = None, cache: bool = True) -> int:
    """Compile ``vae``'s encoder and decoder whole with static shapes, in place; returns how many (2).

    ``channels_last``: None = ``VAE_CHANNELS_LAST`` for its device; True converts its weights to channels-last
    memory format in place (``denoise`` then feeds it channels-last frames). The denoising loop calls the VAE
    with a few shapes (chunks of ``max_vae_frames`` frames and their tails), one graph each; ``cache``: Inductor's
    on-disk caches in the user cache folder (``unet3d.use_compile_cache``).
    """
    import torch._dynamo

    from . import unet3d

    device = next(vae.parameters()).device
    if channels_last is None:
        channels_last = VAE_CHANNELS_LAST.get(device.type, False)
    if channels_last:
        vae.to(memory_format=torch.channels_last)
    if cache:
        unet3d.use_compile_cache()
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
    vae.encoder.compile(dynamic=False, mode=VAE_COMPILE_MODE)
    vae.decoder.compile(dynamic=False, mode=VAE_COMPILE_MODE)
    return 2


def channels_last_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` in the memory format of ``module``'s first convolution weight (a VAE made
    channels-last by ``compile_vae`` gets channels-last frames; anything else gets ``x`` unchanged)."""
    conv = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
