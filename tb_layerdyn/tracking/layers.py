"""Which modules are layers, in what depth order, and how layers form groups.

A *layer* is a module that owns parameters directly (its weight and bias together), named by its
qualified module name; with ``granularity="parameter"`` every parameter tensor is its own layer,
named by its qualified parameter name. A parameter shared by several modules (a tied weight) belongs
to the first owner in registration order only, so it is counted once.
"""

import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn


@dataclasses.dataclass(frozen=True)
class Layer:
    """One measured unit.

    Attributes:
        name: qualified module name (or qualified parameter name at parameter granularity).
        module: qualified name of the module that owns the parameters, used for forward order.
        params: ``(qualified parameter name, parameter)`` pairs, in registration order.
    """

    name: str
    module: str
    params: Tuple[Tuple[str, nn.Parameter], ...]

    @property
    def numel(self) -> int:
        """Scalar parameters of the layer."""
        return sum(p.numel() for _, p in self.params)

    @property
    def signature(self) -> Tuple:
        """What must stay equal between calls for the layer's snapshots to remain valid."""
        return tuple(
            (name, tuple(p.shape), tuple(p.stride()), p.dtype, p.device) for name, p in self.params
        )


def unwrap(model: nn.Module) -> nn.Module:
    """Strips DistributedDataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers.

    Layer names then match those of the plain model in a single-process run.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        if type(model).__name__ == "DistributedDataParallel" and isinstance(
            getattr(model, "module", None), nn.Module
        ):
            model = model.module
            continue
        return model


def find_layers(
    model: nn.Module, *, granularity: str = "layer", exclude_frozen: bool = False
) -> List[Layer]:
    """Lists the layers of an (unwrapped) model in registration order.

    Args:
        model: the module to inspect.
        granularity: ``"layer"`` groups each module's own parameters; ``"parameter"`` makes every
            parameter tensor its own layer.
        exclude_frozen: leave out layers none of whose parameters require gradients.

    Returns:
        The layers; modules without parameters of their own do not appear.
    """
    seen = set()
    found: List[Layer] = []
    for module_name, module in model.named_modules():
        owned = []
        for param_name, param in module._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            qualified = f"{module_name}.{param_name}" if module_name else param_name
            owned.append((qualified, param))
        if not owned:
            continue
        if exclude_frozen and not any(p.requires_grad for _, p in owned):
            continue
        if granularity == "parameter":
            found.extend(Layer(name, module_name, ((name, p),)) for name, p in owned)
        else:
            found.append(Layer(module_name or "(root)", module_name, tuple(owned)))
    return found


class ForwardOrder:
    """Learns the order in which modules first run, from one forward pass of the model.

    Forward pre-hooks record each module's first call; a forward hook on the root notices the end of
    the pass and removes every hook, so training pays for them during one forward pass only. The
    hooks reference this small object and not the tracker, so they keep nothing else alive.
    """

    def __init__(self, model: nn.Module):
        self._seen: Dict[str, int] = {}
        self.complete = False
        self._handles = [
            module.register_forward_pre_hook(self._recorder(name))
            for name, module in model.named_modules()
        ]
        self._handles.append(model.register_forward_hook(self._finish))

    def _recorder(self, name):
        def record(module, args):
            self._seen.setdefault(name, len(self._seen))

        return record

    def _finish(self, module, args, output):
        self.complete = True
        self.remove()

    def remove(self) -> None:
        """Removes the hooks that are still registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def sort(self, layers: Sequence[Layer]) -> List[Layer]:
        """Orders layers input -> output; layers that did not run keep their registration place
        after those that did."""
        position = {layer.name: i for i, layer in enumerate(layers)}
        never = len(self._seen)
        return sorted(layers, key=lambda lay: (self._seen.get(lay.module, never), position[lay.name]))


def block_groups(model: nn.Module, layers: Sequence[Layer]) -> List[dict]:
    """Default groups: each top-level child of the model that holds two or more layers.

    For a torchvision-style ResNet these are ``layer1`` .. ``layer4``, the blocks of the RWC paper.
    """
    groups = []
    for child, _ in model.named_children():
        members = [lay.name for lay in layers if lay.module == child or lay.module.startswith(child + ".")]
        if len(members) >= 2:
            groups.append({"name": child, "kind": "block", "members": members})
    return groups


def user_groups(
    groups: Optional[Dict[str, object]], layers: Sequence[Layer], *, strict: bool = True
) -> List[dict]:
    """Resolves user-named groups against the layers.

    Args:
        groups: ``{name: spec}``. A spec is either a list of layer or module names (a module name
            stands for every layer inside it, so ``["layer1"]`` takes all of ResNet's first stage),
            or a string: a regular expression matched from the start of each layer name.
        layers: the layers, in depth order; members are listed in that order.
        strict: raise for names that match nothing. Off once training runs, so that a layer that
            disappears mid-run shrinks its group (an emptied group is dropped) instead of stopping
            the run.

    Returns:
        ``{"name", "kind": "user", "members"}`` dicts in the order given.

    Raises:
        ValueError: a spec matches no layer or names a layer that does not exist.
        TypeError: ``groups`` is not a dict of lists or strings.
    """
    if not groups:
        return []
    if not isinstance(groups, dict):
        raise TypeError(
            f"groups must be a dict {{name: [layer names] or 'regex'}}, got {type(groups).__name__}"
        )
    names = [lay.name for lay in layers]
    resolved = []
    for group_name, spec in groups.items():
        if isinstance(spec, str):
            try:
                pattern = re.compile(spec)
            except re.error as err:
                raise ValueError(f"groups[{group_name!r}]: {spec!r} is not a valid regex ({err})") from None
            members = [name for name in names if pattern.match(name)]
        elif isinstance(spec, (list, tuple, set, frozenset)):
            wanted = [str(item) for item in spec]
            unknown = [
                item for item in wanted
                if not any(name == item or name.startswith(item + ".") for name in names)
            ]
            if unknown and strict:
                raise ValueError(
                    f"groups[{group_name!r}] names {unknown}, which are not layers of the model; "
                    f"layers are {names[:8]}{' ...' if len(names) > 8 else ''}"
                )
            members = [
                name for name in names
                if any(name == item or name.startswith(item + ".") for item in wanted)
            ]
        else:
            raise TypeError(
                f"groups[{group_name!r}] must be a list of layer names or a regex string, "
                f"got {type(spec).__name__}"
            )
        if not members:
            if not strict:
                continue
            raise ValueError(f"groups[{group_name!r}] = {spec!r} matches no layer; layers are {names[:8]}")
        resolved.append({"name": str(group_name), "kind": "user", "members": members})
    return resolved
