"""The wire contract, loaded at run time from the shipped FileDescriptorSet (embedding_cache.desc).

No generated *_pb2.py code: generated code is tied to the protobuf runtime that made it, while a descriptor
works with protobuf 3.21/4.21 (Debian 12) as well as current releases. The descriptor goes into a private
DescriptorPool, so it never clashes with a generated copy of the same proto that a user may also import.
"""
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "embeddingcache.v1"
SERVICE = f"{PACKAGE}.EmbeddingCache"
DESCRIPTOR_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embedding_cache.desc")


def _load_pool(path=DESCRIPTOR_PATH):
    with open(path, "rb") as f:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptor_set.file:
        pool.AddSerializedFile(file_proto.SerializeToString())
    return pool


_factory = None


def _message_class(descriptor):
    global _factory
    get_message_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_message_class is not None:
        return get_message_class(descriptor)
    if _factory is None:  # protobuf 3.21/4.21
        _factory = message_factory.MessageFactory(POOL)
    return _factory.GetPrototype(descriptor)


POOL = _load_pool()
SERVICE_DESCRIPTOR = POOL.FindServiceByName(SERVICE)


def message(name):
    """The message class `embeddingcache.v1.<name>`."""
    return _message_class(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def enum_values(name):
    """{value name: number} of the enum `embeddingcache.v1.<name>`."""
    return {v.name: v.number for v in POOL.FindEnumTypeByName(f"{PACKAGE}.{name}").values}


def methods():
    """{method name: (full path, request class, response class)} for every RPC of the service."""
    result = {}
    for method in SERVICE_DESCRIPTOR.methods:
        request = _message_class(method.input_type)
        response = _message_class(method.output_type)
        result[method.name] = (f"/{SERVICE}/{method.name}", request, response)
    return result
