"""Hugging Face models (GPT-2, diffusers pipelines) by hub id or local folder, with a clear error offline."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._errors import ModelError

T = TypeVar("T")

INSTALL_HINT = ("pip install 'semzip[decode]' (torch first, pinned for your platform: "
                "pip install torch==VERSION --index-url https://download.pytorch.org/whl/cpu or cu12x)")


def require(*modules: str) -> None:
    """A ModelError naming what is missing and how to install it, before any work starts."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(f"this decoder needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}")


def quiet(*libraries: Any) -> None:
    """Silence the warnings and progress bars of transformers / diffusers: semzip shows its own
    progress, and its own errors."""
    for lib in libraries:
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()


def from_hub(load: Callable[..., T], name: str, what: str) -> T:
    """`load(name)` for a local folder, else from the Hugging Face cache, else downloaded; offline or
    unreachable with nothing cached is a ModelError saying how to get the files (`what` names them)."""
    from huggingface_hub import constants

    from ..embed._load import _probe

    path = Path(name).expanduser()
    if path.is_dir():
        try:
            return load(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load {what} from {str(path)!r} ({type(exc).__name__}: {exc})") from None
    if name.startswith(("/", ".", "~")):
        raise ModelError(f"{what}: no such folder {name!r}")
    try:
        return load(name, local_files_only=True)
    except (OSError, ValueError):
        pass
    how = f"On a machine with network: `hf download {name}` (fills the cache), or pass a local folder"
    if constants.HF_HUB_OFFLINE:
        raise ModelError(f"{what} {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set. {how}")
    unreachable = _probe(constants.ENDPOINT)
    if unreachable:
        raise ModelError(f"{what} {name!r} is not in the Hugging Face cache and the hub is unreachable "
                         f"({unreachable}). {how}")
    try:
        return load(name)
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes this one error
        raise ModelError(f"cannot download {what} {name!r} ({type(exc).__name__}: {exc}). {how}") from None
