"""Tensor trees as safetensors bytes: what the model cache stores, with no pickle anywhere.

A tree is tensors inside dicts (``OrderedDict`` too), lists and tuples, beside plain JSON scalars (str,
int, float, bool, None): a state dict, a model's outputs per split. The tensors go in the safetensors
body; the tree around them (keys in order, container types, scalars, a state dict's ``_metadata``, the
dtype of tensors safetensors does not keep) goes as JSON in the header's metadata, so what
:func:`loads` returns equals what :func:`dumps` was given: same keys, dtypes, shapes and bits. Anything
else is refused with a :class:`TypeError` when written, never pickled.

Tensors load contiguous and on the CPU: a ``channels_last`` weight comes back with the same values in the
default layout (``load_state_dict`` copies it into the model's own parameter anyway).

>>> tree = {"logits": {"D_f": torch.ones(2, 3)}, "labels": {"D_f": torch.tensor([0, 2])}, "note": None}
>>> again = loads(dumps(tree))
>>> again["labels"]["D_f"].dtype, again["note"]
(torch.int64, None)
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors
from torch import Tensor

__all__ = ["FORMAT", "TensorFileError", "dumps", "loads"]

FORMAT = "safetensors-tree/1"  # in each file's header, and in the cache's records beside the files

# stored as themselves; any other strided dtype (complex, unsigned, float8) is stored as its raw bytes and
# viewed back on load, so that no safetensors version's list of dtypes decides what round-trips
NATIVE_DTYPES = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                           torch.float16, torch.bfloat16, torch.float32, torch.float64})
SCALARS = (str, int, float, bool, type(None))


class TensorFileError(ValueError):
    """Bytes that are not a tensor tree written by :func:`dumps` (damaged, forged or foreign)."""


def dumps(tree: Any) -> bytes:
    """``tree`` as the bytes of one safetensors file.

    Raises:
        TypeError: a value that is neither a tensor, a dict, list or tuple of them, nor a JSON scalar (or a
            dict key that is not a scalar, or a sparse, quantized or meta tensor), naming where it is.
    """
    return _Writer().dumps(tree)


def loads(data: bytes) -> Any:
    """The tree :func:`dumps` turned into ``data``; never unpickles anything.

    Raises:
        TensorFileError: ``data`` is not such a file.
    """
    try:
        tensors = _load_tensors(data)
        metadata = _header(data).get("__metadata__") or {}
        if metadata.get("format") != FORMAT:
            raise TensorFileError(f"not a {FORMAT} file (its format is {metadata.get('format')!r})")
        reader = _Reader(tensors)
        tree = reader.decode(json.loads(metadata["tree"]))
    except TensorFileError:
        raise
    except (SafetensorError, KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as error:
        raise TensorFileError(f"not a valid {FORMAT} file: {error}") from error
    if reader.unused:
        raise TensorFileError(f"tensors {sorted(reader.unused)} are in the file but not in its tree")
    return tree


def _header(data: bytes) -> dict[str, Any]:
    """The JSON header of safetensors bytes (already validated by safetensors): 8 bytes of length, then JSON."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size])


class _Writer:
    """One :func:`dumps`: the tensors gathered so far, by name, and the storages they use."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.storages: set[int] = set()

    def dumps(self, tree: Any) -> bytes:
        encoded = self.encode(tree, ())
        return _save_tensors(self.tensors, metadata={"format": FORMAT, "tree": json.dumps(encoded)})

    def encode(self, node: Any, path: tuple) -> dict[str, Any]:
        if isinstance(node, Tensor):
            return self.tensor(node, path)
        if type(node) in (dict, OrderedDict):
            for key in node:
                if not isinstance(key, SCALARS):
                    raise TypeError(f"cannot store the key {key!r} at {_where(path)}: dict keys must be str, int, "
                                    "float, bool or None")
            encoded = {"dict": [[key, self.encode(value, (*path, key))] for key, value in node.items()]}
            if type(node) is OrderedDict:
                encoded["ordered"] = True
                if hasattr(node, "_metadata"):  # a state dict's module versions, which load_state_dict reads
                    encoded["attr_metadata"] = self.encode(node._metadata, (*path, "_metadata"))
            return encoded
        if type(node) in (list, tuple):
            return {type(node).__name__: [self.encode(value, (*path, i)) for i, value in enumerate(node)]}
        if isinstance(node, SCALARS):
            return {"value": node}
        raise TypeError(f"cannot store a value of type {type(node).__qualname__!r} at {_where(path)}: a cache entry "
                        "holds only tensors, dicts, lists and tuples of them, and str, int, float, bool or None")

    def tensor(self, tensor: Tensor, path: tuple) -> dict[str, Any]:
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
            raise TypeError(f"cannot store the {tensor.layout} {'quantized ' * tensor.is_quantized}tensor at "
                            f"{_where(path)}: only dense tensors with data are kept")
        plain = tensor.detach().cpu().contiguous()
        if plain.untyped_storage().data_ptr() in self.storages:
            plain = plain.clone()  # a view of a tensor stored already, or a tied weight: safetensors refuses both
        self.storages.add(plain.untyped_storage().data_ptr())
        name = self.name(path)
        encoded: dict[str, Any] = {"tensor": name}
        if plain.dtype not in NATIVE_DTYPES:
            encoded |= {"dtype": str(plain.dtype).removeprefix("torch."), "shape": list(plain.shape)}
            plain = plain.reshape(-1).view(torch.uint8)
        self.tensors[name] = plain
        return encoded

    def name(self, path: tuple) -> str:
        """A tensor's name in the file: its path (a state dict's own keys), made unique if two paths spell alike."""
        base = "/".join(map(str, path)) or "tensor"
        name, n = base, 1
        while name in self.tensors:
            name, n = f"{base}#{n}", n + 1
        return name


class _Reader:
    """One :func:`loads`: the file's tensors, and those its tree has not used yet."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors
        self.unused = set(tensors)

    def decode(self, node: dict[str, Any]) -> Any:
        if "tensor" in node:
            return self.tensor(node)
        if "dict" in node:
            pairs = [(key, self.decode(value)) for key, value in node["dict"]]
            if not node.get("ordered"):
                return dict(pairs)
            ordered = OrderedDict(pairs)
            if "attr_metadata" in node:
                ordered._metadata = self.decode(node["attr_metadata"])
            return ordered
        if "list" in node:
            return [self.decode(value) for value in node["list"]]
        if "tuple" in node:
            return tuple(self.decode(value) for value in node["tuple"])
        value = node["value"]
        if not isinstance(value, SCALARS):
            raise TensorFileError(f"a value {value!r} that no tree holds")
        return value

    def tensor(self, node: dict[str, Any]) -> Tensor:
        name = node["tensor"]
        if name not in self.unused:
            raise TensorFileError(f"the tree names tensor {name!r} twice or the file lacks it")
        self.unused.discard(name)
        tensor = self.tensors[name]
        if "dtype" not in node:
            return tensor
        dtype = getattr(torch, node["dtype"], None)
        if not isinstance(dtype, torch.dtype) or tensor.dtype != torch.uint8:
            raise TensorFileError(f"tensor {name!r} has an unknown dtype {node['dtype']!r}")
        return tensor.view(dtype).reshape(node["shape"])


def _where(path: tuple) -> str:
    return "the top of the tree" if not path else "key path " + " -> ".join(map(repr, path))
