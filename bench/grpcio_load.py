"""Query load from grpcio (Debian's python3-grpcio), an independent client: keeps CONCURRENCY calls in flight on
one channel until TOTAL calls are done, then prints {"qps", "p50", "p99", "failed"} (milliseconds) as JSON.

    python3 grpcio_load.py HOST:PORT USERS TOTAL CONCURRENCY
"""
import json
import sys
import threading
import time

import grpc

target, user_list, total, concurrency = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])


def request(user):
    encoded = user.encode()
    return b"\x0a" + bytes([len(encoded)]) + encoded


requests = [request(user) for user in user_list]
latencies = []
failed = 0
issued = 0
lock = threading.Lock()
done = threading.Event()

with grpc.insecure_channel(target) as channel:
    call = channel.unary_unary("/UserService/UserStats", request_serializer=None, response_deserializer=None)
    call(requests[0], timeout=30)

    def issue():
        global issued
        with lock:
            if issued >= total:
                return
            index = issued
            issued += 1
        started = time.perf_counter()
        future = call.future(requests[index % len(requests)], timeout=30)
        future.add_done_callback(lambda f: finished(f, started))

    def finished(future, started):
        global failed
        with lock:
            if future.exception() is None:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
            complete = len(latencies) + failed >= total
        if complete:
            done.set()
        else:
            issue()

    began = time.perf_counter()
    for _ in range(concurrency):
        issue()
    done.wait()
    seconds = time.perf_counter() - began

latencies.sort()
at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
print(json.dumps({"qps": round(total / seconds), "p50": round(at(0.5), 2), "p99": round(at(0.99), 2), "failed": failed}))
