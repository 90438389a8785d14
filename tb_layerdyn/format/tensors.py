"""``TensorProto`` to and from numpy for the few dtypes the payloads use, without torch.

TensorBoard's ``tensor_util.make_tensor_proto`` infers dtype and shape generically, which costs
several times more than the encoding on every logging call; these build the same packed
little-endian ``tensor_content`` directly. Decoding views the packed bytes instead of parsing
values one by one, and checks what TensorBoard's loaders accept without a word: a dtype other than
the payload's, or bytes that do not fill the stated shape.
"""

import math

import numpy as np
from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.util import tensor_util

from tb_layerdyn.format.envelope import FormatError

_DTYPES = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
}
_NAMES = {types_pb2.DT_FLOAT: "float32", types_pb2.DT_INT64: "int64", types_pb2.DT_STRING: "string"}


def proto(array, dtype):
    """A packed ``TensorProto`` of ``array`` as ``dtype`` (``types_pb2.DT_FLOAT`` or
    ``DT_INT64``)."""
    array = np.asarray(array)
    packed = array.astype(_DTYPES[dtype], copy=False)
    result = tensor_pb2.TensorProto(dtype=dtype, tensor_content=packed.tobytes())
    result.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape)
    return result


def shape_of(tensor):
    """The shape a ``TensorProto`` states."""
    return tuple(dim.size for dim in tensor.tensor_shape.dim)


def decode(tensor, dtype):
    """The array of a ``TensorProto`` that must be of ``dtype``.

    Raises:
        FormatError: another dtype, or values that do not fill the stated shape.
    """
    if tensor.dtype != dtype:
        raise FormatError(
            f"tensor is {_NAMES.get(tensor.dtype, f'dtype {tensor.dtype}')}, "
            f"expected {_NAMES[dtype]}"
        )
    shape = shape_of(tensor)
    if any(n < 0 for n in shape):
        raise FormatError(f"tensor has an unknown dimension in shape {shape}")
    content = tensor.tensor_content
    if content:
        itemsize = _DTYPES[dtype].itemsize
        if len(content) != itemsize * math.prod(shape):
            raise FormatError(f"tensor holds {len(content)} bytes, not a {shape} {_NAMES[dtype]}")
        return np.frombuffer(content, dtype=_DTYPES[dtype]).reshape(shape)
    try:
        return tensor_util.make_ndarray(tensor).astype(_DTYPES[dtype], copy=False)
    except (ValueError, TypeError) as error:
        raise FormatError(f"tensor does not decode ({error})") from None
