"""Starts moto's AWS emulator (DynamoDB, SQS, API Gateway Management API) for the tests.

Usage: .venv/bin/python infra/emulator.py <port>   (listens on 127.0.0.1 only)

It is moto's own server application, served one request at a time. moto's stock
`moto_server` is threaded, and its TransactWriteItems checks conditions and writes without a
lock, so two concurrent conditional transactions can both succeed, which real DynamoDB never
allows. Serving requests in order gives the emulator DynamoDB's isolation, which the
store conformance suite checks (concurrent appends must get distinct seqs).
"""
import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

port = int(sys.argv[1])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
