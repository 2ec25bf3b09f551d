#!/usr/bin/env python
"""A moto server (S3 + DynamoDB over HTTP) that counts the requests it serves.

    python benchmarks/counting_moto.py -H 127.0.0.1 -p 5000

It serves moto's own WSGI app, built as ``moto/server.py`` builds it
(``DomainDispatcherApplication(create_backend_app)`` under werkzeug's threaded server with
``MotoRequestHandler``), wrapped in a middleware that counts every request per
(service, operation) and the CPU time its thread spent in moto. So "requests per
operation" is what the endpoint saw, whichever client sent it.

Control paths (no S3 bucket can be named ``_bench``, so they never shadow a real request):

* ``GET /_bench/counts``: ``{"s3.PutObject": {"count": 2, "cpu_s": 0.01}, ...}``
* ``POST /_bench/reset``: set every count to zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

CONTROL = "/_bench/"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# The service is the one the request was signed for (SigV4 credential scope).
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Bucket-level GET/PUT/DELETE sub-resources and the operation names S3 gives them.
_BUCKET_SUB = {
    "list-type": "ObjectsV2",
    "uploads": "MultipartUploads",
    "versions": "ObjectVersions",
    "lifecycle": "BucketLifecycleConfiguration",
    "location": "BucketLocation",
    "versioning": "BucketVersioning",
    "policy": "BucketPolicy",
    "tagging": "BucketTagging",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
    "notification": "BucketNotificationConfiguration",
}


def classify(environ: Environ) -> tuple[str, str]:
    """(service, operation) of one AWS request, from its headers, method and path."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    auth = environ.get("HTTP_AUTHORIZATION", "") or environ.get("QUERY_STRING", "")
    scope = _SCOPE.search(auth.replace("%2F", "/"))
    service = scope.group(1) if scope else ("dynamodb" if "DynamoDB" in target else "s3")
    if target:  # JSON protocols (DynamoDB): "DynamoDB_20120810.PutItem"
        return service, target.rsplit(".", 1)[-1]
    if service != "s3":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        return service, query.get("Action", [environ.get("REQUEST_METHOD", "?")])[0]
    return service, s3_operation(environ)


def s3_operation(environ: Environ) -> str:
    """The S3 operation of a path-style request (``/bucket[/key]``)."""
    method = environ.get("REQUEST_METHOD", "GET")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploadId" in query:
            return {
                "PUT": "UploadPart",
                "GET": "ListParts",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
            }.get(method, f"{method}Upload")
        if "tagging" in query:
            verb = {"PUT": "Put", "GET": "Get", "DELETE": "Delete"}.get(method, method)
            return f"{verb}ObjectTagging"
        if method == "PUT":
            return "CopyObject" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "PutObject"
        if method == "POST":
            return "CreateMultipartUpload" if "uploads" in query else "PostObject"
        if method == "GET" and "attributes" in query:
            return "GetObjectAttributes"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(
            method, f"{method}Object"
        )
    if method == "POST":
        return "DeleteObjects" if "delete" in query else "PostBucket"
    if method == "HEAD":
        return "HeadBucket"
    sub = next((_BUCKET_SUB[name] for name in query if name in _BUCKET_SUB), None)
    if method == "GET":
        if sub in ("ObjectsV2", "MultipartUploads", "ObjectVersions"):
            return f"List{sub}"
        return f"Get{sub}" if sub else "ListObjects"
    if method == "PUT":
        return f"Put{sub}" if sub else "CreateBucket"
    if method == "DELETE":
        return f"Delete{sub}" if sub else "DeleteBucket"
    return f"{method}Bucket"


class CountingMiddleware:
    """Counts requests per (service, operation) and the CPU their threads spent."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts: dict[str, list[float]] = {}  # "service.Operation" -> [count, cpu s]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL):
            return self.control(path, start_response)
        service, operation = classify(environ)
        # werkzeug's threaded server runs each request on a thread of its own.
        cpu = time.thread_time()
        try:
            # Drain the body here so its production is counted with the request.
            return list(self.app(environ, start_response))
        finally:
            spent = time.thread_time() - cpu
            with self.lock:
                entry = self.counts.setdefault(f"{service}.{operation}", [0, 0.0])
                entry[0] += 1
                entry[1] += spent

    def control(self, path: str, start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            if path == f"{CONTROL}reset":
                self.counts.clear()
            body = json.dumps(
                {name: {"count": int(n), "cpu_s": cpu} for name, (n, cpu) in self.counts.items()}
            ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto/server.py does

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        CountingMiddleware(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
