"""flwr's own side of the object format, for tests/e2e/flower-objects.test.mjs.

  python flower_objects.py inflate IN.json   reads a message the page's encoder made
      ({"tree": ObjectTree as JSON, "metadata": {...}, "objects": {id: base64}}), checks every id
      with flwr's validate_object_content and inflates it with flwr's own
      inflate_object_from_contents; prints {"arrays": {name: {"shape", "values"}}, "metrics": {...}}
  python flower_objects.py make OUT.json      writes a message as FedAvg's configure_train makes
      it (ArrayRecord weight/bias, ConfigRecord), deflated by flwr, in the same JSON form
"""

import base64
import json
import sys

import numpy as np
from google.protobuf.json_format import MessageToDict, ParseDict

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.proto.message_pb2 import ObjectTree  # pylint: disable=E0611
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents, validate_object_content
from flwr.supercore.task_identity import TaskIdentity


def inflate(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    contents = {k: base64.b64decode(v) for k, v in doc["objects"].items()}
    for content in contents.values():
        validate_object_content(content)
    tree = ParseDict(doc["tree"], ObjectTree())
    msg = inflate_object_from_contents(tree.object_id, contents, keep_object_contents=False)
    assert isinstance(msg, Message), type(msg)
    out = {"arrays": {}, "metrics": {}}
    for rec in msg.content.array_records.values():
        for name, arr in rec.items():
            nd = arr.numpy()
            out["arrays"][name] = {"shape": list(nd.shape), "dtype": str(nd.dtype), "values": nd.ravel().tolist()}
    for rec in msg.content.metric_records.values():
        out["metrics"].update(dict(rec))
    print(json.dumps(out))


def make(path):
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((3, 5)).astype(np.float32)
    bias = rng.standard_normal((3,)).astype(np.float64)  # FedAvg's averages may come back float64
    content = RecordDict(
        {
            "arrays": ArrayRecord({"weight": Array.from_numpy_ndarray(weight), "bias": Array.from_numpy_ndarray(bias)}),
            "config": ConfigRecord({"classes": "a,b,c", "server-round": 2, "learning-rate": 0.5, "flag": True}),
            "metrics": MetricRecord({"num-examples": 12}),
        }
    )
    TaskIdentity.run_id = 42  # what a ServerApp's runtime sets
    TaskIdentity.task_id = 7
    TaskIdentity.node_id = 1
    msg = Message(content=content, dst_node_id=5, message_type="train")
    objects = get_all_nested_objects(msg)
    doc = {
        "tree": MessageToDict(get_object_tree(msg), preserving_proto_field_name=True),
        "objects": {k: base64.b64encode(o.deflate()).decode() for k, o in objects.items()},
        "expect": {"weight": weight.ravel().tolist(), "bias": bias.astype(np.float32).ravel().tolist()},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    {"inflate": inflate, "make": make}[sys.argv[1]](sys.argv[2])
