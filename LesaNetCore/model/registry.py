"""Named LesaNet variants (timm style): each is a few lines under ``@register_model``.

Example:
    >>> model = create_model("lesanet_demo", num_labels=10)
    >>> model.arch_config["widths"]
    [8, 16, 32, 64, 64]
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import invalid
from .lesanet import LesaNet

_MODELS: dict[str, Callable[..., LesaNet]] = {}


def register_model(fn: Callable[..., LesaNet]) -> Callable[..., LesaNet]:
    """Adds ``fn`` to the registry under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def create_model(name: str, num_labels: int, **kwargs) -> LesaNet:
    """Builds the registered variant ``name``; ``kwargs`` override its ``LesaNet`` arguments.

    Raises:
        LesaNetError: ``name`` is not registered (the message lists the registered names).
    """
    if name not in _MODELS:
        raise invalid("model name", f"must be one of {list_models()}", name)
    return _MODELS[name](num_labels=num_labels, **kwargs)


@register_model
def lesanet_vgg16bn(num_labels: int = 171, **kw) -> LesaNet:
    """The official architecture: VGG16-BN widths, 256-D fc_pool layers, 256-D embedding (24.7M parameters)."""
    return LesaNet(num_labels, **{"widths": (64, 128, 256, 512, 512), "fc_dim": 256, "emb_dim": 256, **kw})


@register_model
def lesanet_demo(num_labels: int, **kw) -> LesaNet:
    """Same structure at 1/8 of the conv widths and 96-D fc_pool layers, for the shipped demo.

    About 0.9M parameters (under 4 MB of float32 weights even at 171 labels) and about 1/60 of the official
    FLOPs, so it trains on simulated lesions on a laptop CPU; the embedding stays 256-D so the retrieval code
    is the same.
    """
    return LesaNet(num_labels, **{"widths": (8, 16, 32, 64, 64), "fc_dim": 96, "emb_dim": 256, **kw})
