#!/usr/bin/env python3
"""Verifies the topmost DKIM-Signature of the email on stdin with dkimpy, an implementation
independent of the Rust libraries the worker signs with (lettre) and its own tests verify
with (mail-auth).

Usage: dkimpy_verify.py NAME=RECORD... < email
  NAME=RECORD  the TXT record served for NAME, e.g.
               's1._domainkey.example.com=v=DKIM1; k=ed25519; p=...'; no DNS is queried.
Prints `pass`, or `fail` and dkimpy's log; exits 0 on pass, 1 on fail, 2 when dkimpy (or
PyNaCl, for Ed25519) is missing: Debian's python3-dkim and python3-nacl.
"""

import io
import logging
import sys

try:
    import dkim
    import nacl.signing  # noqa: F401  (dkimpy verifies Ed25519 with it)
except ImportError as missing:
    print(f"{missing}: install Debian's python3-dkim and python3-nacl", file=sys.stderr)
    sys.exit(2)

records = {}
for argument in sys.argv[1:]:
    name, _, record = argument.partition("=")
    records[name.lower().rstrip(".")] = record.encode()


def txt(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.lower().rstrip("."))


log = io.StringIO()
logger = logging.getLogger("dkimpy_verify")
logger.addHandler(logging.StreamHandler(log))
logger.setLevel(logging.DEBUG)

message = sys.stdin.buffer.read()
if dkim.verify(message, logger=logger, dnsfunc=txt):
    print("pass")
    sys.exit(0)
print("fail")
print(log.getvalue())
sys.exit(1)
