"""Feature importance of a trained XGBoost model, read from its ``model.tar.gz`` without xgboost.

The Evaluate Lambda has no xgboost (its layers are the stepml library and the AWS SDK for
pandas, close to Lambda's 250 MB), and SageMaker's built-in XGBoost 1.7-1 container writes no
importance of its own. So the trained booster itself is read: the container saves it with
``Booster.save_model("xgboost-model")``, which in 1.7 is XGBoost's binary format (a ``binf``
header, the learner's parameters, the objective and booster names, then per tree its
parameters, its nodes and their statistics, little-endian); a model saved as JSON is read as
well. The importance is XGBoost's ``gain``, as ``Booster.get_score(importance_type="gain")``
gives it: per feature the average loss reduction of the splits on it (``total_gain`` divided
by ``weight``, the number of those splits), over the nodes reachable from each tree's root.
The built-in algorithm trains on headerless CSV, so feature ``fI`` is the I-th feature of the
manifest's ``feature_order``.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stepml.utils import S3ReadError, read_s3_object

#: The largest model.tar.gz read: a model this big gets no importance rather than a slow Lambda.
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024
_LEARNER_PARAM_BYTES = 136  # base_score, num_feature, num_class, 2 flags, 2 version words, num_target, 26 reserved
_GBTREE_PARAM_BYTES = 4 * 4 + 8 + 4 * 2 + 32 * 4
_TREE_PARAM_BYTES = 6 * 4 + 31 * 4
_NODE = struct.Struct("<iiiIf")  # parent, left child, right child, split index (high bit: default left), value
_STAT = struct.Struct("<fffi")  # loss change, sum of hessians, base weight, leaf child count
_NO_CHILD = -1


class ImportanceError(ValueError):
    """The model cannot be read for its importance; the message names the file and the problem."""


class _Reader:
    """A little-endian cursor over the binary model."""

    def __init__(self, data: bytes, source: str):
        self.data, self.offset, self.source = data, 0, source

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise ImportanceError(f"{self.source}: the model ends early (at byte {self.offset}, wanted {size} more)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))

    def string(self) -> str:
        (length,) = struct.unpack("<Q", self.take(8))
        return self.take(length).decode("utf-8", errors="replace")


def _binary_trees(data: bytes, source: str) -> Iterator[tuple[list[tuple], list[tuple]]]:
    """Each tree's nodes and statistics of a binary (``binf``) model."""
    reader = _Reader(data, source)
    if data[:4] == b"binf":
        reader.take(4)
    reader.take(_LEARNER_PARAM_BYTES)
    reader.string()  # the objective
    booster = reader.string()
    if booster not in ("gbtree", "dart"):
        raise ImportanceError(f"{source}: booster {booster!r} has no trees (gbtree or dart expected)")
    (num_trees,) = struct.unpack("<i", reader.take(4))
    reader.take(_GBTREE_PARAM_BYTES - 4)
    for _ in range(num_trees):
        num_nodes = struct.unpack("<iiiiii", reader.take(24))[1]
        reader.take(_TREE_PARAM_BYTES - 24)
        nodes = [reader.unpack(_NODE) for _ in range(num_nodes)]
        stats = [reader.unpack(_STAT) for _ in range(num_nodes)]
        yield [(left, right, index & 0x7FFFFFFF) for _, left, right, index, _ in nodes], [s[0] for s in stats]


def _json_trees(data: bytes, source: str) -> Iterator[tuple[list[tuple], list[float]]]:
    try:
        trees = json.loads(data)["learner"]["gradient_booster"]["model"]["trees"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImportanceError(f"{source}: not an XGBoost JSON model with trees") from exc
    for tree in trees:
        nodes = list(zip(tree["left_children"], tree["right_children"], tree["split_indices"], strict=True))
        yield nodes, [float(v) for v in tree["loss_changes"]]


def gain_importance(data: bytes, source: str) -> dict[int, dict[str, float]]:
    """Per feature index that any split uses: ``weight`` (splits), ``total_gain`` and ``gain``."""
    trees = _json_trees(data, source) if data.lstrip()[:1] == b"{" else _binary_trees(data, source)
    found: dict[int, dict[str, float]] = {}
    for nodes, gains in trees:
        pending = [0] if nodes else []
        while pending:  # from the root: pruned (deleted) nodes are never reached
            node = pending.pop()
            left, right, feature = nodes[node]
            if left == _NO_CHILD:
                continue
            entry = found.setdefault(feature, {"weight": 0.0, "total_gain": 0.0})
            entry["weight"] += 1
            entry["total_gain"] += gains[node]
            pending += [left, right]
    for entry in found.values():
        entry["gain"] = entry["total_gain"] / entry["weight"]
    return found


def _booster_bytes(archive: bytes, source: str) -> bytes:
    """The booster file inside model.tar.gz (``xgboost-model``, else the only regular file)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            files = [member for member in tar.getmembers() if member.isfile()]
            named = [m for m in files if m.name.rsplit("/", 1)[-1] == "xgboost-model"]
            chosen = named or files
            if len(chosen) != 1:
                raise ImportanceError(f"{source}: expected one xgboost-model file, found {[m.name for m in files]}")
            handle = tar.extractfile(chosen[0])
            return handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImportanceError(f"{source}: not a readable model.tar.gz: {exc}") from exc


def read_importance(s3_client: Any, model_uri: str, feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """The model's gain importance per feature name, largest first (features without splits left out)."""
    try:
        archive = read_s3_object(s3_client, model_uri, max_bytes=MAX_ARCHIVE_BYTES)
    except S3ReadError as exc:
        raise ImportanceError(f"model artifact: {exc}") from exc
    return named_importance(gain_importance(_booster_bytes(archive, model_uri), model_uri), feature_names)


def named_importance(found: Mapping[int, Mapping[str, float]], feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """``gain_importance``'s indices as feature names (``fI`` when the index has no name), largest gain first."""
    rows = [
        {
            "feature": feature_names[index] if 0 <= index < len(feature_names) else f"f{index}",
            "gain": round(entry["gain"], 6),
            "total_gain": round(entry["total_gain"], 6),
            "weight": int(entry["weight"]),
        }
        for index, entry in found.items()
    ]
    return sorted(rows, key=lambda row: (-row["gain"], row["feature"]))
