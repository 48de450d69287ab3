"""Sparkplug B protobuf messages, built at import from the descriptor of ``sparkplug_b.proto``.

The descriptor is embedded (base64 of the ``FileDescriptorProto`` protoc makes from the .proto next to this
file) rather than generated ``_pb2`` code, so it works with any protobuf runtime from 4.21 on without
regeneration. Only the protobuf runtime is needed (the ``sparkplug`` extra).
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import descriptor_pool

PROTO_PACKAGE = "org.eclipse.tahu.protobuf"
FILE_DESCRIPTOR = base64.b64decode(
    "ChFzcGFya3BsdWdfYi5wcm90bxIZb3JnLmVjbGlwc2UudGFodS5wcm90b2J1ZiKHHAoHUGF5bG9hZBIcCgl0aW1lc3RhbXAYASAB"
    "KARSCXRpbWVzdGFtcBJDCgdtZXRyaWNzGAIgAygLMikub3JnLmVjbGlwc2UudGFodS5wcm90b2J1Zi5QYXlsb2FkLk1ldHJpY1IH"
    "bWV0cmljcxIQCgNzZXEYAyABKARSA3NlcRISCgR1dWlkGAQgASgJUgR1dWlkEhIKBGJvZHkYBSABKAxSBGJvZHkaxAUKCFRlbXBs"
    "YXRlEhgKB3ZlcnNpb24YASABKAlSB3ZlcnNpb24SQwoHbWV0cmljcxgCIAMoCzIpLm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYu"
    "UGF5bG9hZC5NZXRyaWNSB21ldHJpY3MSVQoKcGFyYW1ldGVycxgDIAMoCzI1Lm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5"
    "bG9hZC5UZW1wbGF0ZS5QYXJhbWV0ZXJSCnBhcmFtZXRlcnMSIQoMdGVtcGxhdGVfcmVmGAQgASgJUgt0ZW1wbGF0ZVJlZhIjCg1p"
    "c19kZWZpbml0aW9uGAUgASgIUgxpc0RlZmluaXRpb24arwMKCVBhcmFtZXRlchISCgRuYW1lGAEgASgJUgRuYW1lEhIKBHR5cGUY"
    "AiABKA1SBHR5cGUSHQoJaW50X3ZhbHVlGAMgASgNSABSCGludFZhbHVlEh8KCmxvbmdfdmFsdWUYBCABKARIAFIJbG9uZ1ZhbHVl"
    "EiEKC2Zsb2F0X3ZhbHVlGAUgASgCSABSCmZsb2F0VmFsdWUSIwoMZG91YmxlX3ZhbHVlGAYgASgBSABSC2RvdWJsZVZhbHVlEiUK"
    "DWJvb2xlYW5fdmFsdWUYByABKAhIAFIMYm9vbGVhblZhbHVlEiMKDHN0cmluZ192YWx1ZRgIIAEoCUgAUgtzdHJpbmdWYWx1ZRJ4"
    "Cg9leHRlbnNpb25fdmFsdWUYCSABKAsyTS5vcmcuZWNsaXBzZS50YWh1LnByb3RvYnVmLlBheWxvYWQuVGVtcGxhdGUuUGFyYW1l"
    "dGVyLlBhcmFtZXRlclZhbHVlRXh0ZW5zaW9uSABSDmV4dGVuc2lvblZhbHVlGiMKF1BhcmFtZXRlclZhbHVlRXh0ZW5zaW9uKggI"
    "ARCAgICAAkIHCgV2YWx1ZSoICAYQgICAgAIangUKB0RhdGFTZXQSJAoObnVtX29mX2NvbHVtbnMYASABKARSDG51bU9mQ29sdW1u"
    "cxIYCgdjb2x1bW5zGAIgAygJUgdjb2x1bW5zEhQKBXR5cGVzGAMgAygNUgV0eXBlcxJCCgRyb3dzGAQgAygLMi4ub3JnLmVjbGlw"
    "c2UudGFodS5wcm90b2J1Zi5QYXlsb2FkLkRhdGFTZXQuUm93UgRyb3dzGogDCgxEYXRhU2V0VmFsdWUSHQoJaW50X3ZhbHVlGAEg"
    "ASgNSABSCGludFZhbHVlEh8KCmxvbmdfdmFsdWUYAiABKARIAFIJbG9uZ1ZhbHVlEiEKC2Zsb2F0X3ZhbHVlGAMgASgCSABSCmZs"
    "b2F0VmFsdWUSIwoMZG91YmxlX3ZhbHVlGAQgASgBSABSC2RvdWJsZVZhbHVlEiUKDWJvb2xlYW5fdmFsdWUYBSABKAhIAFIMYm9v"
    "bGVhblZhbHVlEiMKDHN0cmluZ192YWx1ZRgGIAEoCUgAUgtzdHJpbmdWYWx1ZRJ4Cg9leHRlbnNpb25fdmFsdWUYByABKAsyTS5v"
    "cmcuZWNsaXBzZS50YWh1LnByb3RvYnVmLlBheWxvYWQuRGF0YVNldC5EYXRhU2V0VmFsdWUuRGF0YVNldFZhbHVlRXh0ZW5zaW9u"
    "SABSDmV4dGVuc2lvblZhbHVlGiEKFURhdGFTZXRWYWx1ZUV4dGVuc2lvbioICAEQgICAgAJCBwoFdmFsdWUaZAoDUm93ElMKCGVs"
    "ZW1lbnRzGAEgAygLMjcub3JnLmVjbGlwc2UudGFodS5wcm90b2J1Zi5QYXlsb2FkLkRhdGFTZXQuRGF0YVNldFZhbHVlUghlbGVt"
    "ZW50cyoICAIQgICAgAIqCAgFEICAgIACGvUECg1Qcm9wZXJ0eVZhbHVlEhIKBHR5cGUYASABKA1SBHR5cGUSFwoHaXNfbnVsbBgC"
    "IAEoCFIGaXNOdWxsEh0KCWludF92YWx1ZRgDIAEoDUgAUghpbnRWYWx1ZRIfCgpsb25nX3ZhbHVlGAQgASgESABSCWxvbmdWYWx1"
    "ZRIhCgtmbG9hdF92YWx1ZRgFIAEoAkgAUgpmbG9hdFZhbHVlEiMKDGRvdWJsZV92YWx1ZRgGIAEoAUgAUgtkb3VibGVWYWx1ZRIl"
    "Cg1ib29sZWFuX3ZhbHVlGAcgASgISABSDGJvb2xlYW5WYWx1ZRIjCgxzdHJpbmdfdmFsdWUYCCABKAlIAFILc3RyaW5nVmFsdWUS"
    "XQoRcHJvcGVydHlzZXRfdmFsdWUYCSABKAsyLi5vcmcuZWNsaXBzZS50YWh1LnByb3RvYnVmLlBheWxvYWQuUHJvcGVydHlTZXRI"
    "AFIQcHJvcGVydHlzZXRWYWx1ZRJjChJwcm9wZXJ0eXNldHNfdmFsdWUYCiABKAsyMi5vcmcuZWNsaXBzZS50YWh1LnByb3RvYnVm"
    "LlBheWxvYWQuUHJvcGVydHlTZXRMaXN0SABSEXByb3BlcnR5c2V0c1ZhbHVlEnIKD2V4dGVuc2lvbl92YWx1ZRgLIAEoCzJHLm9y"
    "Zy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5bG9hZC5Qcm9wZXJ0eVZhbHVlLlByb3BlcnR5VmFsdWVFeHRlbnNpb25IAFIOZXh0"
    "ZW5zaW9uVmFsdWUaIgoWUHJvcGVydHlWYWx1ZUV4dGVuc2lvbioICAEQgICAgAJCBwoFdmFsdWUadQoLUHJvcGVydHlTZXQSEgoE"
    "a2V5cxgBIAMoCVIEa2V5cxJICgZ2YWx1ZXMYAiADKAsyMC5vcmcuZWNsaXBzZS50YWh1LnByb3RvYnVmLlBheWxvYWQuUHJvcGVy"
    "dHlWYWx1ZVIGdmFsdWVzKggIAxCAgICAAhptCg9Qcm9wZXJ0eVNldExpc3QSUAoLcHJvcGVydHlzZXQYASADKAsyLi5vcmcuZWNs"
    "aXBzZS50YWh1LnByb3RvYnVmLlBheWxvYWQuUHJvcGVydHlTZXRSC3Byb3BlcnR5c2V0KggIAhCAgICAAhrvAQoITWV0YURhdGES"
    "IgoNaXNfbXVsdGlfcGFydBgBIAEoCFILaXNNdWx0aVBhcnQSIQoMY29udGVudF90eXBlGAIgASgJUgtjb250ZW50VHlwZRISCgRz"
    "aXplGAMgASgEUgRzaXplEhAKA3NlcRgEIAEoBFIDc2VxEhsKCWZpbGVfbmFtZRgFIAEoCVIIZmlsZU5hbWUSGwoJZmlsZV90eXBl"
    "GAYgASgJUghmaWxlVHlwZRIQCgNtZDUYByABKAlSA21kNRIgCgtkZXNjcmlwdGlvbhgIIAEoCVILZGVzY3JpcHRpb24qCAgJEICA"
    "gIACGpwHCgZNZXRyaWMSEgoEbmFtZRgBIAEoCVIEbmFtZRIUCgVhbGlhcxgCIAEoBFIFYWxpYXMSHAoJdGltZXN0YW1wGAMgASgE"
    "Ugl0aW1lc3RhbXASGgoIZGF0YXR5cGUYBCABKA1SCGRhdGF0eXBlEiMKDWlzX2hpc3RvcmljYWwYBSABKAhSDGlzSGlzdG9yaWNh"
    "bBIhCgxpc190cmFuc2llbnQYBiABKAhSC2lzVHJhbnNpZW50EhcKB2lzX251bGwYByABKAhSBmlzTnVsbBJHCghtZXRhZGF0YRgI"
    "IAEoCzIrLm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5bG9hZC5NZXRhRGF0YVIIbWV0YWRhdGESTgoKcHJvcGVydGllcxgJ"
    "IAEoCzIuLm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5bG9hZC5Qcm9wZXJ0eVNldFIKcHJvcGVydGllcxIdCglpbnRfdmFs"
    "dWUYCiABKA1IAFIIaW50VmFsdWUSHwoKbG9uZ192YWx1ZRgLIAEoBEgAUglsb25nVmFsdWUSIQoLZmxvYXRfdmFsdWUYDCABKAJI"
    "AFIKZmxvYXRWYWx1ZRIjCgxkb3VibGVfdmFsdWUYDSABKAFIAFILZG91YmxlVmFsdWUSJQoNYm9vbGVhbl92YWx1ZRgOIAEoCEgA"
    "Ugxib29sZWFuVmFsdWUSIwoMc3RyaW5nX3ZhbHVlGA8gASgJSABSC3N0cmluZ1ZhbHVlEiEKC2J5dGVzX3ZhbHVlGBAgASgMSABS"
    "CmJ5dGVzVmFsdWUSUQoNZGF0YXNldF92YWx1ZRgRIAEoCzIqLm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5bG9hZC5EYXRh"
    "U2V0SABSDGRhdGFzZXRWYWx1ZRJUCg50ZW1wbGF0ZV92YWx1ZRgSIAEoCzIrLm9yZy5lY2xpcHNlLnRhaHUucHJvdG9idWYuUGF5"
    "bG9hZC5UZW1wbGF0ZUgAUg10ZW1wbGF0ZVZhbHVlEmkKD2V4dGVuc2lvbl92YWx1ZRgTIAEoCzI+Lm9yZy5lY2xpcHNlLnRhaHUu"
    "cHJvdG9idWYuUGF5bG9hZC5NZXRyaWMuTWV0cmljVmFsdWVFeHRlbnNpb25IAFIOZXh0ZW5zaW9uVmFsdWUaIAoUTWV0cmljVmFs"
    "dWVFeHRlbnNpb24qCAgBEICAgIACQgcKBXZhbHVlKggIBhCAgICAAiryAwoIRGF0YVR5cGUSCwoHVW5rbm93bhAAEggKBEludDgQ"
    "ARIJCgVJbnQxNhACEgkKBUludDMyEAMSCQoFSW50NjQQBBIJCgVVSW50OBAFEgoKBlVJbnQxNhAGEgoKBlVJbnQzMhAHEgoKBlVJ"
    "bnQ2NBAIEgkKBUZsb2F0EAkSCgoGRG91YmxlEAoSCwoHQm9vbGVhbhALEgoKBlN0cmluZxAMEgwKCERhdGVUaW1lEA0SCAoEVGV4"
    "dBAOEggKBFVVSUQQDxILCgdEYXRhU2V0EBASCQoFQnl0ZXMQERIICgRGaWxlEBISDAoIVGVtcGxhdGUQExIPCgtQcm9wZXJ0eVNl"
    "dBAUEhMKD1Byb3BlcnR5U2V0TGlzdBAVEg0KCUludDhBcnJheRAWEg4KCkludDE2QXJyYXkQFxIOCgpJbnQzMkFycmF5EBgSDgoK"
    "SW50NjRBcnJheRAZEg4KClVJbnQ4QXJyYXkQGhIPCgtVSW50MTZBcnJheRAbEg8KC1VJbnQzMkFycmF5EBwSDwoLVUludDY0QXJy"
    "YXkQHRIOCgpGbG9hdEFycmF5EB4SDwoLRG91YmxlQXJyYXkQHxIQCgxCb29sZWFuQXJyYXkQIBIPCgtTdHJpbmdBcnJheRAhEhEK"
    "DURhdGVUaW1lQXJyYXkQIkIsChlvcmcuZWNsaXBzZS50YWh1LnByb3RvYnVmQg9TcGFya3BsdWdCUHJvdG8="
)


def _message_class(pool: descriptor_pool.DescriptorPool, name: str) -> Any:
    descriptor = pool.FindMessageTypeByName(f"{PROTO_PACKAGE}.{name}")
    try:
        from google.protobuf.message_factory import GetMessageClass

        return GetMessageClass(descriptor)
    except ImportError:  # protobuf < 4.22
        from google.protobuf import message_factory

        return message_factory.MessageFactory(pool).GetPrototype(descriptor)


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(FILE_DESCRIPTOR)

Payload: Any = _message_class(_pool, "Payload")
"""The Sparkplug B ``Payload`` message class (``Payload.Metric`` and the others nested in it)."""


class DataType:
    """Sparkplug B metric data types (the ``DataType`` enum of the specification)."""

    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
