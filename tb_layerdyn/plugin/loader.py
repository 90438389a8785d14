"""How TensorBoard finds and configures the Layer Dynamics plugin (the ``tensorboard_plugins``
entry point names ``LayerDynamicsLoader``)."""

from tensorboard.plugins import base_plugin

from tb_layerdyn.format import envelope

# Samples TensorBoard itself keeps per tag of this plugin: enough to list the tags and activate
# the tab. The plugin reads every step from its own store (``data.py``), so TensorBoard's loaders
# need not hold them in RAM.
RETAINED_SAMPLES = 1


class LayerDynamicsLoader(base_plugin.TBLoader):
    """Loads ``LayerDynamicsPlugin`` and keeps TensorBoard's own copy of its data small.

    TensorBoard's loaders keep what they retain of every tag in RAM (the Rust data server 100
    tensors per tag by default, more with ``--samples_per_plugin``). The plugin serves every logged
    step from its on-disk store instead, so unless the user chose a value with
    ``--samples_per_plugin``, this loader asks the loaders to keep one sample per tag.
    """

    def fix_flags(self, flags):
        """Sets ``samples_per_plugin`` for this plugin to ``RETAINED_SAMPLES`` unless the user
        set it."""
        samples = getattr(flags, "samples_per_plugin", None)
        if samples is None:
            samples = {}
            flags.samples_per_plugin = samples
        if envelope.PLUGIN_NAME not in samples:
            samples[envelope.PLUGIN_NAME] = RETAINED_SAMPLES

    def load(self, context):
        """Returns the plugin for this TensorBoard instance.

        The plugin module is imported here, not at the top, so that TensorBoard lists the loader
        without importing any of the serving code.
        """
        from tb_layerdyn.plugin.plugin import LayerDynamicsPlugin

        return LayerDynamicsPlugin(context)
