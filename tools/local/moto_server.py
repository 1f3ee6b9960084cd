"""The local AWS emulator: moto's server (SQS, Secrets Manager, CloudFormation, Lambda, CloudWatch),
with two additions.

1. FIFO order. moto counts a message group as "in flight" while any of its messages is in its
   pending set, even a message whose visibility timeout has passed. When two messages of a group
   time out together (a consumer failed the first and held the second behind it), the first is then
   skipped because the second still looks in flight, and the second is delivered first: the order
   SQS promises is broken. Here a group is in flight only while one of its messages is invisible.
   (moto 5.2.5; remove when moto fixes `Queue.pending_message_groups`.)

2. The Smithy RPC v2 CBOR protocol, which the AWS SDK for Rust speaks to CloudWatch
   (`POST /service/GraniteServiceVersion20100801/operation/<Operation>`, CBOR bodies) and moto does
   not route. Such a request is handed to moto as the same operation in the JSON protocol, which
   moto serves, and the answer turned back into CBOR. The conversion follows botocore's model of
   the operation: timestamps become CBOR tag 1 (epoch seconds) and blobs byte strings, as the
   protocol requires; errors keep their `__type`. (Remove when moto serves the protocol.)
"""

import base64
import datetime
import io
import json
import re
import sys

import botocore.session
import cbor2
import moto.server
from moto.server import main
from moto.sqs.models import Queue


def pending_message_groups(self):
    return {m.group_id for m in self._pending_messages if m.group_id is not None and not m.visible}


Queue.pending_message_groups = property(pending_message_groups)

# The services whose RPC v2 CBOR requests are bridged, by the target prefix in their path.
CBOR_SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}
CBOR_PATH = re.compile(r"/service/(\w+)/operation/(\w+)")
_models = {}


def model(service):
    if service not in _models:
        _models[service] = botocore.session.get_session().get_service_model(service)
    return _models[service]


def convert(value, shape, to_json):
    """A value of `shape`, from CBOR's types to JSON's (to_json) or back."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {k: convert(v, shape.members.get(k), to_json) for k, v in value.items()}
    if kind == "list":
        return [convert(v, shape.member, to_json) for v in value]
    if kind == "map":
        return {k: convert(v, shape.value, to_json) for k, v in value.items()}
    if kind == "timestamp":
        if to_json:
            return value.timestamp() if isinstance(value, datetime.datetime) else value
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        if isinstance(value, str):
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
        return value
    if kind == "blob":
        return base64.b64encode(value).decode() if to_json else base64.b64decode(value)
    return value


class CborBridge(moto.server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        found = CBOR_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if not found or found.group(1) not in CBOR_SERVICES:
            return super().__call__(environ, start_response)
        try:
            return self.bridge(environ, start_response, *found.groups())
        except Exception as e:  # an answer in the protocol, not a dropped connection
            payload = cbor2.dumps({"__type": "InternalFailure", "message": f"cbor bridge: {e!r}"})
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), ("Content-Length", str(len(payload)))],
            )
            return [payload]

    def bridge(self, environ, start_response, prefix, operation):
        op = model(CBOR_SERVICES[prefix]).operation_model(operation)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = convert(cbor2.loads(raw) if raw else {}, op.input_shape, True)
        body = json.dumps(request).encode()
        inner = dict(environ)
        inner.update(
            {
                "PATH_INFO": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"{prefix}.{operation}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        answered = {}

        def capture(status, headers, exc_info=None):
            answered["status"], answered["headers"] = status, headers
            return lambda _: None

        text = b"".join(super().__call__(inner, capture))
        status = answered.get("status", "500 Internal Server Error")
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError:
            document = {"__type": "InternalFailure", "message": text.decode(errors="replace")[:500]}
        if status.startswith("2"):
            document = convert(document, op.output_shape, False) if op.output_shape else {}
        elif "__type" not in document:
            document = {"__type": "InternalFailure", "message": text.decode(errors="replace")}
        payload = cbor2.dumps(document, datetime_as_timestamp=True, timezone=datetime.timezone.utc)
        headers = [
            ("Content-Type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
            ("Content-Length", str(len(payload))),
        ]
        headers += [(k, v) for k, v in answered.get("headers", []) if k.lower().startswith("x-amzn-request")]
        start_response(status, headers)
        return [payload]


moto.server.DomainDispatcherApplication = CborBridge

if __name__ == "__main__":
    main(sys.argv[1:])
