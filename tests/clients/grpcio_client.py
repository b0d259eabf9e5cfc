"""A grpcio client (Debian's python3-grpcio) driving one node with the connection patterns real services have.

Made from nothing but the wire contract: method paths and protobuf bytes written by hand, no generated code.
Prints one JSON object: {"ok": n, "failed": {code: n}, "answers": {id: {totalPurchases, amountSpent}}, ...}.

    python3 grpcio_client.py HOST:PORT PATTERN USERS

PATTERN: ask         each user once
         rounds      5 rounds of 200 concurrent calls on one channel, each round ending with close()
         midflight   300 concurrent calls, the channel closed while they are in flight, 3 times
         sequential  500 sequential calls on each of 3 channels, each then closed
         services    health Check and reflection (v1 and v1alpha) list_services: "health" and "services" keys
USERS: comma-separated ids to ask for, in turn.
"""
import json
import os
import sys

import grpc

target, pattern, user_list = sys.argv[1:4]
# GRPC_TEST_CA: speak TLS, trusting the CA in that PEM file; GRPC_TEST_CERT and
# GRPC_TEST_KEY: present this client certificate (mutual TLS).
ca = os.environ.get("GRPC_TEST_CA")
cert = os.environ.get("GRPC_TEST_CERT")
key = os.environ.get("GRPC_TEST_KEY")


def read(path):
    if path is None:
        return None
    with open(path, "rb") as pem:
        return pem.read()


def open_channel():
    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    return grpc.secure_channel(target, credentials)

users = user_list.split(",")
result = {"ok": 0, "failed": {}, "answers": {}}


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def fields(data):
    """The (number, value) pairs of a protobuf message: varints as ints, length-delimited as bytes."""
    at = 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = read_varint(data, at)
        elif wire == 2:
            length, at = read_varint(data, at)
            value, at = data[at:at + length], at + length
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def user_stats(channel):
    return channel.unary_unary("/UserService/UserStats", request_serializer=None, response_deserializer=None)


def request(user):
    encoded = user.encode()
    return b"\x0a" + varint(len(encoded)) + encoded


def record(user, future):
    try:
        response = dict(fields(future.result()))
        result["ok"] += 1
        result["answers"][user] = {"totalPurchases": response.get(2, 0), "amountSpent": response.get(3, 0)}
    except grpc.RpcError as error:
        name = error.code().name
        result["failed"][name] = result["failed"].get(name, 0) + 1
    except grpc.FutureCancelledError:
        result["failed"]["CANCELLED"] = result["failed"].get("CANCELLED", 0) + 1


def ask():
    with open_channel() as channel:
        call = user_stats(channel)
        for user in users:
            record(user, call.future(request(user), timeout=20))


def rounds():
    for _ in range(5):
        channel = open_channel()
        call = user_stats(channel)
        futures = [(users[i % len(users)], call.future(request(users[i % len(users)]), timeout=20)) for i in range(200)]
        for user, future in futures:
            record(user, future)
        channel.close()


def midflight():
    for _ in range(3):
        channel = open_channel()
        call = user_stats(channel)
        record(users[0], call.future(request(users[0]), timeout=20))
        futures = [(users[i % len(users)], call.future(request(users[i % len(users)]), timeout=20)) for i in range(300)]
        channel.close()
        for user, future in futures:
            record(user, future)


def sequential():
    for _ in range(3):
        with open_channel() as channel:
            call = user_stats(channel)
            for i in range(500):
                user = users[i % len(users)]
                record(user, call.future(request(user), timeout=20))


def services():
    with open_channel() as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
        result["health"] = dict(fields(check(b"", timeout=20))).get(1, 0)
        result["services"] = {}
        for version in ["v1", "v1alpha"]:
            info = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                         request_serializer=None, response_deserializer=None)
            # list_services is field 7 of ServerReflectionRequest.
            [response] = list(info(iter([b"\x3a\x00"]), timeout=20))
            listed = dict(fields(response))[6]  # list_services_response
            names = [dict(fields(value))[1].decode() for number, value in fields(listed) if number == 1]
            result["services"][version] = sorted(names)


patterns = {"ask": ask, "rounds": rounds, "midflight": midflight, "sequential": sequential, "services": services}
if pattern not in patterns:
    sys.exit(f"unknown pattern {pattern}; one of {', '.join(patterns)}")
patterns[pattern]()
print(json.dumps(result))
