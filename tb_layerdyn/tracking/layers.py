"""Which modules are layers, in what depth order, and how layers form groups.

A *layer* is a module that owns parameters directly (its weight and bias together), named by its
qualified module name; with ``granularity="parameter"`` every parameter tensor is its own layer,
named by its qualified parameter name. A parameter shared by several modules (a tied weight) belongs
to the first owner in registration order only, so it is counted once.

A module parametrized with ``torch.nn.utils.parametrize`` (``parametrizations.weight_norm``,
``spectral_norm``, or the older hook-based ``torch.nn.utils.weight_norm``) is one layer: the
original tensors its weight is computed from belong to it, and ``Layer.computed`` says which
tensors the module computes (the tracker measures those, see ``computed``).

Complex parameters are left out (``complex_parameters`` names them for a warning).
"""

import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn
from torch.nn.utils import parametrize


@dataclasses.dataclass(frozen=True)
class Layer:
    """One measured unit.

    Attributes:
        name: qualified module name (or qualified parameter name at parameter granularity).
        module: qualified name of the module that owns the parameters, used for forward order.
        params: ``(qualified parameter name, parameter)`` pairs, in registration order; for a
            parametrized module its own parameters, then the originals of each computed tensor.
        computed: ``(tensor name, qualified names of its originals)`` per tensor the module
            computes from parametrizations (``("weight", ("fc1.parametrizations.weight.original0",
            ...))``); empty for plain modules.
        description: the module's class and main shape, e.g. ``"Linear 784→512"``.
    """

    name: str
    module: str
    params: Tuple[Tuple[str, nn.Parameter], ...]
    computed: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    description: str = ""

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


def _computed_tensors(module: nn.Module) -> Dict[str, List[Tuple[str, nn.Parameter]]]:
    """Tensor name -> its original parameters (relative names), for each tensor the module computes.

    Covers ``torch.nn.utils.parametrize`` (the originals live in ``module.parametrizations``) and
    the hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm`` (the originals are the
    module's own ``weight_g``/``weight_v`` or ``weight_orig``).
    """
    found = {}
    if parametrize.is_parametrized(module):
        for tensor, plist in module.parametrizations.items():
            found[tensor] = [
                (f"parametrizations.{tensor}.{key}", p)
                for key, p in plist._parameters.items() if p is not None
            ]
    for hook in module._forward_pre_hooks.values():
        suffixes = _HOOK_ORIGINALS.get(type(hook).__name__)
        name = getattr(hook, "name", None)
        if suffixes is None or not isinstance(name, str):
            continue
        found[name] = [
            (name + suffix, module._parameters[name + suffix])
            for suffix in suffixes if module._parameters.get(name + suffix) is not None
        ]
    return found


# Hook-based weight reparametrizations of torch.nn.utils: hook class -> suffixes of the originals.
_HOOK_ORIGINALS = {"WeightNorm": ("_g", "_v"), "SpectralNorm": ("_orig",)}


def _shape(values) -> str:
    return "×".join(str(int(v)) for v in values)


def describe(module: nn.Module, params: Sequence[Tuple[str, nn.Parameter]] = ()) -> str:
    """A short description of a layer's module: its class and main shape.

    ``"Linear 784→512"``, ``"Conv2d 1→6 3×3"``, ``"Embedding 10×4"``, ``"BatchNorm2d 3"``; other
    modules give their class and the shape of their first parameter.
    """
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        return f"{kind} {module.in_features}→{module.out_features}"
    if isinstance(module, nn.modules.conv._ConvNd):
        return f"{kind} {module.in_channels}→{module.out_channels} {_shape(module.kernel_size)}"
    if isinstance(module, nn.Embedding):
        return f"{kind} {module.num_embeddings}×{module.embedding_dim}"
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return f"{kind} {module.num_features}"
    if isinstance(module, nn.LayerNorm):
        return f"{kind} {_shape(module.normalized_shape)}"
    if isinstance(module, nn.MultiheadAttention):
        return f"{kind} {module.embed_dim}, {module.num_heads} heads"
    shapes = [tuple(p.shape) for _, p in params if p is not None and not nn.parameter.is_lazy(p)]
    return f"{kind} {_shape(shapes[0])}" if shapes and shapes[0] else kind


def find_layers(
    model: nn.Module, *, granularity: str = "layer", exclude_frozen: bool = False
) -> List[Layer]:
    """Lists the layers of an (unwrapped) model in registration order.

    Args:
        model: the module to inspect.
        granularity: ``"layer"`` groups each module's own parameters; ``"parameter"`` makes every
            parameter tensor its own layer (a parametrized tensor with its originals).
        exclude_frozen: leave out layers none of whose parameters require gradients.

    Returns:
        The layers; modules without parameters of their own do not appear, nor do complex
        parameters.
    """
    seen = set()
    found: List[Layer] = []

    def take(module_name, param_name, param):
        if param is None or id(param) in seen or param.is_complex():
            return None
        seen.add(id(param))
        return (f"{module_name}.{param_name}" if module_name else param_name), param

    for module_name, module in model.named_modules():
        computed = _computed_tensors(module)
        originals = {id(p) for tensors in computed.values() for _, p in tensors}
        owned = [
            pair for key, param in module._parameters.items()
            if param is None or id(param) not in originals
            for pair in [take(module_name, key, param)] if pair is not None
        ]
        tensors = []
        for tensor, pairs in computed.items():
            taken = [pair for key, p in pairs for pair in [take(module_name, key, p)] if pair is not None]
            if taken:
                tensors.append((tensor, tuple(taken)))
        if not owned and not tensors:
            continue
        description = describe(module, owned + [pair for _, pairs in tensors for pair in pairs])
        if granularity == "parameter":
            units = [((name, p),) for name, p in owned] + [pairs for _, pairs in tensors]
            computed_of = [()] * len(owned) + [
                ((tensor, tuple(n for n, _ in pairs)),) for tensor, pairs in tensors
            ]
            names = [name for name, _ in owned] + [
                f"{module_name}.{tensor}" if module_name else tensor for tensor, _ in tensors
            ]
            for name, unit, comp in zip(names, units, computed_of):
                if exclude_frozen and not any(p.requires_grad for _, p in unit):
                    continue
                leaf = name.rsplit(".", 1)[-1]
                found.append(Layer(name, module_name, unit, comp, f"{description} · {leaf}"))
            continue
        params = tuple(owned) + tuple(pair for _, pairs in tensors for pair in pairs)
        if exclude_frozen and not any(p.requires_grad for _, p in params):
            continue
        comp = tuple((tensor, tuple(n for n, _ in pairs)) for tensor, pairs in tensors)
        found.append(Layer(module_name or "(root)", module_name, params, comp, description))
    return found


def complex_parameters(model: nn.Module) -> List[str]:
    """Qualified names of the model's complex parameters, which are not measured."""
    return [name for name, p in model.named_parameters() if p.is_complex()]


def unmeasurable(layers: Sequence[Layer]) -> Optional[str]:
    """Why some layers cannot be measured (meta-device or uninitialized lazy parameters), naming
    them; ``None`` when every layer can be."""
    lazy = [lay.name for lay in layers if any(nn.parameter.is_lazy(p) for _, p in lay.params)]
    if lazy:
        return (
            f"layers {lazy} have uninitialized (lazy) parameters, which have no shape yet; run one "
            "forward pass (it gives Lazy* modules their shapes) before the first log"
        )
    meta = [lay.name for lay in layers if any(p.is_meta for _, p in lay.params)]
    if meta:
        return (
            f"layers {meta} have parameters on the meta device, which hold no values; materialize "
            "them first (model.to_empty(device=...) and initialize, or load_state_dict(..., "
            "assign=True)), then log"
        )
    return None


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

    def settle(self) -> None:
        """Takes the order as known once some modules ran, even if the model's own forward never
        did (Lightning calls ``training_step``, which runs the submodules only)."""
        if not self.complete and self._seen:
            self.complete = True
            self.remove()

    def remove(self) -> None:
        """Removes the hooks that are still registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def sort(self, layers: Sequence[Layer]) -> List[Layer]:
        """Orders layers input -> output.

        A module whose own forward never ran but whose parent's did (MultiheadAttention reads its
        ``out_proj`` weights itself) is placed right after the nearest enclosing module that ran,
        the model itself excepted; layers that did not run otherwise keep their registration place
        after those that did.
        """
        position = {layer.name: i for i, layer in enumerate(layers)}
        never = len(self._seen)

        def key(lay):
            if lay.module in self._seen:
                return (self._seen[lay.module], 0, position[lay.name])
            parent = lay.module
            while "." in parent:
                parent = parent.rsplit(".", 1)[0]
                if parent in self._seen:
                    return (self._seen[parent], 1, position[lay.name])
            return (never, 0, position[lay.name])

        return sorted(layers, key=key)


def _members(layers: Sequence[Layer], module: str) -> List[str]:
    prefix = module + "."
    return [lay.name for lay in layers if lay.module == module or lay.module.startswith(prefix)]


def block_groups(model: nn.Module, layers: Sequence[Layer]) -> List[dict]:
    """Default groups: the blocks of the model, at any depth.

    Two kinds, each needing two or more layers:

    - each top-level child of the model (ResNet's ``layer1`` .. ``layer4``, the stages of the RWC
      paper);
    - each child of a ``ModuleList`` or ``Sequential`` that holds two or more such children (GPT-2's
      ``transformer.h.0`` .., BERT's ``bert.encoder.layer.0`` .., ResNet's ``layer1.0`` ..).

    Returns:
        ``{"name", "kind": "block", "members"}`` dicts: the top-level ones first, then the others
        in registration order; a name appears once.
    """
    groups = []
    names = set()

    def add(name, members):
        if name not in names:
            names.add(name)
            groups.append({"name": name, "kind": "block", "members": members})

    for child, _ in model.named_children():
        members = _members(layers, child)
        if len(members) >= 2:
            add(child, members)
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        blocks = []
        for child, _ in module.named_children():
            qualified = f"{name}.{child}" if name else child
            members = _members(layers, qualified)
            if len(members) >= 2:
                blocks.append((qualified, members))
        if len(blocks) >= 2:
            for qualified, members in blocks:
                add(qualified, members)
    return groups


def aliases(model: nn.Module, layers: Sequence[Layer]) -> Dict[str, List[str]]:
    """Where tied parameters live: each module (and qualified parameter name) that registers a
    parameter measured in another module's layer -> the layers holding it.

    GPT-2's ``lm_head`` shares ``transformer.wte``'s weight: ``{"lm_head": ["transformer.wte"],
    "lm_head.weight": ["transformer.wte"]}`` (at parameter granularity the layer is named
    ``transformer.wte.weight``).
    """
    holder = {id(p): lay.name for lay in layers for _, p in lay.params}
    found: Dict[str, List[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for key, param in module._parameters.items():
            if param is None or id(param) not in holder:
                continue
            qualified = f"{module_name}.{key}" if module_name else key
            layer = holder[id(param)]
            if layer in (module_name, qualified) or (not module_name and layer == "(root)"):
                continue
            for alias in (module_name, qualified):
                if alias and layer not in found.setdefault(alias, []):
                    found[alias].append(layer)
    return found


def compile_regex(spec: str) -> "re.Pattern":
    """A group's regex as the tab's filters read one: searched anywhere in a name, ignoring case."""
    return re.compile(spec, re.IGNORECASE)


def user_groups(
    groups: Optional[Dict[str, object]],
    layers: Sequence[Layer],
    *,
    strict: bool = True,
    tied: Optional[Dict[str, List[str]]] = None,
) -> List[dict]:
    """Resolves user-named groups against the layers.

    Args:
        groups: ``{name: spec}``. A spec is either a list of layer or module names (a module name
            stands for every layer inside it, so ``["layer1"]`` takes all of ResNet's first stage;
            a module whose parameters are tied to another's stands for the layers holding them),
            or a string: a regular expression that selects the layers it matches anywhere in their
            name, ignoring case (the rule of the tab's filters; anchor it with ``^`` and ``$``).
        layers: the layers, in depth order; members are listed in that order.
        strict: raise for names that match nothing. Off once training runs, so that a layer that
            disappears mid-run shrinks its group (an emptied group is dropped) instead of stopping
            the run.
        tied: ``aliases(model, layers)``, so that a module holding a tied parameter can be named.

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
    tied = tied or {}

    def covers(item, name):
        if name == item or name.startswith(item + "."):
            return True
        prefix = item + "."
        return any(
            name in held for alias, held in tied.items() if alias == item or alias.startswith(prefix)
        )

    resolved = []
    for group_name, spec in groups.items():
        if isinstance(spec, str):
            try:
                pattern = compile_regex(spec)
            except re.error as err:
                raise ValueError(f"groups[{group_name!r}]: {spec!r} is not a valid regex ({err})") from None
            members = [name for name in names if pattern.search(name)]
        elif isinstance(spec, (list, tuple, set, frozenset)):
            wanted = [str(item) for item in spec]
            unknown = [item for item in wanted if not any(covers(item, name) for name in names)]
            if unknown and strict:
                where = "; ".join(
                    f"{alias} lives in {', '.join(held)}" for alias, held in list(tied.items())[:4]
                )
                raise ValueError(
                    f"groups[{group_name!r}] names {unknown}, which are not layers of the model; "
                    f"layers are {names[:8]}{' ...' if len(names) > 8 else ''}"
                    + (f" (tied parameters are measured once, in the layer that registers them "
                       f"first: {where})" if where else "")
                )
            members = [name for name in names if any(covers(item, name) for item in wanted)]
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
