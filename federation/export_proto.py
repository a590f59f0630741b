"""Exports the Fleet API's message definitions from flwr's own protobuf descriptors.

Reads the FileDescriptorProtos that flwr's generated `*_pb2` modules embed (the wheel ships
no `.proto` files) and writes them in protobuf.js's JSON form, which the page's Fleet client
(www/federation/fleet.js) loads with `protobuf.Root.fromJSON`. Field names stay as in the
`.proto` (snake_case); type references are fully qualified (`.flwr.proto.Node`).

Usage: python export_proto.py OUT.json
"""

import json
import sys

from google.protobuf.descriptor import FieldDescriptor

# The modules whose messages the Fleet API's requests and responses use (their imports come
# along: recorddict, transport, node, error, heartbeat, run, fab).
from flwr.proto import fleet_pb2, message_pb2  # noqa: F401  pylint: disable=E0611

SCALAR = {
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64", FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def type_name(f):
    if f.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        return "." + f.message_type.full_name
    if f.type == FieldDescriptor.TYPE_ENUM:
        return "." + f.enum_type.full_name
    return SCALAR[f.type]


def message_json(m):
    fields, oneofs = {}, {}
    for f in m.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            fields[f.name] = {"keyType": type_name(key), "type": type_name(value), "id": f.number}
            continue
        entry = {"type": type_name(f), "id": f.number}
        if (f.is_repeated if hasattr(type(f), "is_repeated") else f.label == FieldDescriptor.LABEL_REPEATED):
            entry["rule"] = "repeated"
        fields[f.name] = entry
    for o in m.oneofs:
        # proto3 `optional` fields are synthetic one-member oneofs: kept, harmless.
        oneofs[o.name] = {"oneof": [f.name for f in o.fields]}
    out = {"fields": fields}
    if oneofs:
        out["oneofs"] = oneofs
    nested = {n.name: message_json(n) for n in m.nested_types if not n.GetOptions().map_entry}
    nested.update({e.name: {"values": {v.name: v.number for v in e.values}} for e in m.enum_types})
    if nested:
        out["nested"] = nested
    return out


def main(out_path):
    root = {}
    seen = set()

    def add_file(fd):
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add_file(dep)
        ns = root
        for part in fd.package.split("."):
            ns = ns.setdefault("nested", {}).setdefault(part, {})
        nested = ns.setdefault("nested", {})
        for m in fd.message_types_by_name.values():
            nested[m.name] = message_json(m)
        for e in fd.enum_types_by_name.values():
            nested[e.name] = {"values": {v.name: v.number for v in e.values}}

    for module in (fleet_pb2, message_pb2):
        add_file(module.DESCRIPTOR)
    import flwr

    root["flwrVersion"] = flwr.__version__ if hasattr(flwr, "__version__") else ""
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(root, f, indent=None, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
