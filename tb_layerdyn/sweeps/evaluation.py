"""Builds the ``eval_fn`` of a sweep from a loss function and a fixed set of batches."""

import torch


def make_eval_fn(loss_fn, batches, *, accuracy=True):
    """Returns ``eval_fn(model) -> {"loss": float, "accuracy": float}`` over fixed batches.

    The same batches, in the same order, are used at every call, so that every alpha of a sweep
    sees the same data (and the sweep can reuse activations). The model is evaluated in whatever
    mode it is in; sweeps put it in eval mode.

    Example::

        eval_fn = make_eval_fn(torch.nn.functional.cross_entropy, [(x, y) for x, y in held_out])
        eval_fn(model)   # {"loss": 0.31, "accuracy": 0.91}

    Args:
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss over the batch (the
            default reduction of ``torch.nn`` losses); batches are weighted by their size.
        batches: a non-empty list of ``(inputs, targets)`` pairs; inputs may be a tensor or a
            tuple of tensors (passed as positional arguments).
        accuracy: also report ``"accuracy"``, the fraction of samples whose largest output is
            the target class. Needs integer class targets and outputs of shape (batch, classes).

    Returns:
        The ``eval_fn`` callable.

    Raises:
        ValueError: ``batches`` is empty or not made of pairs.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty; pass a list of (inputs, targets) pairs")
    for position, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"batches[{position}] is not an (inputs, targets) pair; pass a list of pairs"
            )
    if accuracy:
        for position, (_, targets) in enumerate(batches):
            if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
                raise ValueError(
                    f"batches[{position}] has targets that are not integer class indices, which "
                    "accuracy needs; pass accuracy=False for other targets"
                )

    def eval_fn(model):
        total_loss = 0.0
        correct = 0
        count = 0
        with torch.no_grad():
            for inputs, targets in batches:
                outputs = model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
                size = len(targets)
                total_loss += float(loss_fn(outputs, targets)) * size
                if accuracy:
                    correct += int((outputs.argmax(dim=1) == targets).sum())
                count += size
        metrics = {"loss": total_loss / count}
        if accuracy:
            metrics["accuracy"] = correct / count
        return metrics

    return eval_fn
