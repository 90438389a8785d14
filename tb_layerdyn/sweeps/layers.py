"""Which modules a sweep treats as layers, and their order from input to output.

Layers are those of the tracker (``tb_layerdyn.tracking.layers``): a module with parameters of its own, named
by its qualified module name (``"(root)"`` for the top-level module); a tied parameter belongs to
the first module that registers it.
Layers are ordered by when they first run in a forward pass (depth order), and those that never
ran follow in registration order.
"""

from tb_layerdyn.tracking import layers as tracked_layers


class Layer:
    """One layer: its module and the canonical names of the tensors a sweep moves with it.

    Attributes:
        name: the qualified module name (``"(root)"`` for the top-level module).
        module: the ``torch.nn.Module``.
        params: canonical names of the module's own parameters, in registration order.
        buffers: canonical names of its own floating-point buffers (integer buffers such as
            BatchNorm's ``num_batches_tracked`` are counters and never interpolated).
    """

    def __init__(self, name, module, params, buffers):
        self.name = name
        self.module = module
        self.params = params
        self.buffers = buffers


def find_layers(model):
    """Lists the layers of ``model`` in registration order, named as the tracker names them."""
    modules = dict(model.named_modules())
    found = []
    for tracked in tracked_layers.find_layers(model):
        module = modules[tracked.module]
        prefix = tracked.module + "." if tracked.module else ""
        buffers = [
            prefix + name
            for name, buffer in module.named_buffers(recurse=False)
            if buffer.is_floating_point()
        ]
        found.append(Layer(tracked.name, module, [name for name, _ in tracked.params], buffers))
    return found


def order_by_first_call(layers, model, run):
    """Runs ``run()`` once and returns its result and ``layers`` sorted by first forward call.

    Args:
        layers: layers from ``find_layers``.
        model: the model they belong to (its top-level module ran first by definition).
        run: a zero-argument callable that runs the model.

    Returns:
        ``(result of run(), layers in depth order)``.
    """
    first_call = {}
    counter = [0]

    def note(module, _inputs):
        if id(module) not in first_call:
            first_call[id(module)] = counter[0]
            counter[0] += 1

    handles = [
        layer.module.register_forward_pre_hook(note) for layer in layers if layer.module is not model
    ]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    never = float("inf")
    position = {id(layer.module): index for index, layer in enumerate(layers)}

    def key(layer):
        if layer.module is model:
            return (-1, 0)
        return (first_call.get(id(layer.module), never), position[id(layer.module)])

    return result, sorted(layers, key=key)

