"""How TensorBoard finds and configures the Layer Dynamics plugin (the ``tensorboard_plugins``
entry point names ``LayerDynamicsLoader``)."""

from tensorboard.plugins import base_plugin

from tb_layerdyn.format import envelope as metadata


class LayerDynamicsLoader(base_plugin.TBLoader):
    """Loads ``LayerDynamicsPlugin`` and keeps every logged step of its data.

    TensorBoard's default retention keeps a sample of 10 tensor events per tag; per-layer curves
    need every logged step, so unless the user chose a value with ``--samples_per_plugin``, this
    loader asks the loaders to keep them all (0 means "keep everything").
    """

    def fix_flags(self, flags):
        """Adds ``layer_dynamics=all`` to ``samples_per_plugin`` unless the user set it."""
        samples = getattr(flags, "samples_per_plugin", None)
        if samples is None:
            samples = {}
            flags.samples_per_plugin = samples
        if metadata.PLUGIN_NAME not in samples:
            samples[metadata.PLUGIN_NAME] = 0

    def load(self, context):
        """Returns the plugin for this TensorBoard instance.

        The plugin module is imported here, not at the top, so that TensorBoard lists the loader
        without importing any of the serving code.
        """
        from tb_layerdyn.plugin.plugin import LayerDynamicsPlugin

        return LayerDynamicsPlugin(context)
