"""Schemathesis hooks for `cargo xtask fuzz-api`.

The OpenAPI document says everything about a request that JSON Schema (as OpenAPI 3.0 has
it) can say. A few rules of the API cannot be said that way; the document's descriptions
give them, and the API answers 422 when they are broken, as for any invalid field. A
fuzzer that cannot read descriptions would report each of those 422s as "a valid request
was rejected". These hooks make the requests the fuzzer generates respect exactly those
rules, and nothing else:

- templates (step and variant subjects and contents) use a language with braces
  (`{{first_name}}`, spintax `{a|b}`) that no regular expression describes; text without
  braces is always a valid template, so generated braces become parentheses;
- attribute names (contact `attributes`) are identifiers that are not built-in variables,
  and OpenAPI 3.0 cannot constrain property names; generated names are replaced by valid
  ones;
- a CSV import is a CSV file with an email column, which a JSON Schema string cannot say;
  generated text becomes the note of one contact in such a file;
- a webhook URL's host (`https://` anywhere, `http://` only to an IP address the operator
  allows, no IP address that is not public, no user name or fragment) is a rule about the
  URL's parts and the server's configuration; a generated URL of the document's pattern
  becomes a valid one;
- two fields compared with each other: a sending window's start before its end (09:00 and
  17:00 when not given, on creation), a sequence's step orders unique, the step with the
  lowest order having a subject and not being `thread_with_previous`, a later step without
  a subject being sent in the thread.

And two things that are not about the document:
- `POST /mailboxes/{id}/verify` connects to the mailbox's SMTP and IMAP servers. A fuzzer
  run sends traffic to this machine only, so every valid host it generates becomes
  127.0.0.1 and every valid port 9 (where nothing listens: the check fails fast with
  "connection refused", which is a 200 as documented). Invalid hosts and ports are kept:
  they are refused before anything connects.
- the key the fuzzer authenticates with is never revoked (`DELETE /api-keys/{id}` of that
  key goes to an id that does not exist).

Everything else (every type, bound, pattern, enum, required field, unknown field, oneOf)
is generated and checked from the document alone, valid and invalid.

Also: Schemathesis has no serializer for `application/csv` (the import takes it beside
`text/csv`); it is sent as text.
"""

import copy
import os
import re

import schemathesis

TEMPLATE_FIELDS = ("subject", "content")
BUILT_INS = {"email", "first_name", "last_name", "full_name", "company", "title"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TIME = re.compile(r"^([0-9]{1,2}):([0-9]{1,2})$")
# crates/api/src/routes/sequences/model.rs MAX_STEP_ORDER
MAX_STEP_ORDER = 1_000_000_000


def _no_braces(value):
    if isinstance(value, str):
        return value.replace("{", "(").replace("}", ")")
    return value


def _templates(step):
    if not isinstance(step, dict):
        return
    for field in TEMPLATE_FIELDS:
        if field in step:
            step[field] = _no_braces(step[field])
    variants = step.get("variants")
    if isinstance(variants, list):
        for variant in variants:
            if isinstance(variant, dict):
                for field in TEMPLATE_FIELDS:
                    if field in variant:
                        variant[field] = _no_braces(variant[field])


def _attributes(contact):
    if not isinstance(contact, dict):
        return
    attributes = contact.get("attributes")
    if not isinstance(attributes, dict):
        return
    renamed = {}
    for index, (key, value) in enumerate(attributes.items()):
        if not IDENTIFIER.match(key) or key in BUILT_INS:
            key = f"attribute_{index}"
        renamed[key] = value
    contact["attributes"] = renamed


def _minutes(value, default):
    if value is None:
        return default
    match = TIME.match(value) if isinstance(value, str) else None
    if not match:
        return None
    return int(match.group(1)) * 60 + int(match.group(2))


def _window(window, defaults):
    """Swaps the times of a window whose start is not before its end."""
    if not isinstance(window, dict):
        return
    start = window.get("start_time")
    end = window.get("end_time")
    if not defaults and (start is None or end is None):
        return
    start_minutes = _minutes(start, 9 * 60)
    end_minutes = _minutes(end, 17 * 60)
    if start_minutes is None or end_minutes is None or start_minutes < end_minutes:
        return
    if start_minutes == end_minutes:
        window["start_time"], window["end_time"] = "09:00", "17:00"
    else:
        window["start_time"] = f"{end_minutes // 60:02}:{end_minutes % 60:02}"
        window["end_time"] = f"{start_minutes // 60:02}:{start_minutes % 60:02}"


def _steps(steps):
    """Unique orders; the first step (lowest order) with a subject and not threaded; a later
    step without a subject sent in the thread."""
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return
    # As the API numbers them: keys given are kept (made unique here), steps without one
    # come after the largest, in list order.
    seen = set()
    for step in steps:
        order = step.get("step_order")
        if isinstance(order, int) and not isinstance(order, bool):
            unique = order
            while unique in seen:
                unique += 1
            if unique > MAX_STEP_ORDER:
                unique = order
                while unique in seen:
                    unique -= 1
            step["step_order"] = unique
            seen.add(unique)
    following = max(seen) + 1 if seen else 1
    orders = []
    for step in steps:
        order = step.get("step_order")
        if isinstance(order, int) and not isinstance(order, bool):
            orders.append(order)
        else:
            orders.append(following)
            following += 1
    if not orders:
        return
    first = orders.index(min(orders))
    for index, step in enumerate(steps):
        subject = step.get("subject", "")
        if not isinstance(subject, str):
            continue
        if index == first:
            if not subject.strip():
                step["subject"] = "Hello"
            if step.get("thread_with_previous") is True:
                step["thread_with_previous"] = False
        elif not subject.strip() and step.get("thread_with_previous") is False:
            step["thread_with_previous"] = True


@schemathesis.serializer("application/csv")
def _csv(context, value):
    if value is None:
        return None
    return value.encode("utf-8") if isinstance(value, str) else str(value).encode("utf-8")


MAX_ATTRIBUTE_VALUE = 10_000


def _csv_file(text):
    note = text[:MAX_ATTRIBUTE_VALUE].strip().replace('"', '""')
    return f'email,note\r\nfuzz@example.com,"{note}"\r\n'


HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,253}$")
# crates/api/src/openapi/refine.rs patterns::HTTP_URL (the control and space characters it
# leaves out) and validation::MAX_URL_LEN.
HTTP_URL = re.compile(
    "^https?://[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
)
MAX_URL_LEN = 2000
WEBHOOK_URL = "https://hooks.example.com/fuzz"


def _webhook_url(body):
    """A URL valid by the document becomes one the API accepts too."""
    url = body.get("url")
    if isinstance(url, str) and len(url) <= MAX_URL_LEN and HTTP_URL.match(url):
        body["url"] = WEBHOOK_URL


def _loopback(settings):
    """Valid hosts and ports of SMTP/IMAP settings become 127.0.0.1:9."""
    if not isinstance(settings, dict):
        return
    host = settings.get("host")
    if isinstance(host, str) and HOST.match(host):
        settings["host"] = "127.0.0.1"
    port = settings.get("port")
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        settings["port"] = 9


def _fix_body(path, method, body):
    if path.endswith("/contacts/import") and isinstance(body, str):
        return _csv_file(body)
    if not isinstance(body, dict):
        return body
    if path.endswith("/sequences") and method == "POST":
        steps = body.get("steps")
        if isinstance(steps, list):
            for step in steps:
                _templates(step)
        _steps(steps)
        _window(body.get("sending_window"), defaults=True)
    elif path.endswith("/sequences/{id}") and method == "PUT":
        _window(body.get("sending_window"), defaults=False)
    elif "/steps" in path:
        _templates(body)
    if path.endswith("/webhooks") or path.endswith("/webhooks/{id}"):
        _webhook_url(body)
    if path.endswith("/contacts") or path.endswith("/contacts/{id}"):
        _attributes(body)
        contacts = body.get("contacts")
        if isinstance(contacts, list):
            for contact in contacts:
                _attributes(contact)
    return body


OWN_KEY_ID = os.environ.get("SEQ_FUZZ_API_KEY_ID", "")
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    """Every request of every phase (examples, coverage, fuzzing, stateful) passes here;
    Schemathesis then re-derives whether the request is valid by the document."""
    operation = case.operation
    path = operation.path
    method = operation.method.upper()
    # The fuzzer's own key must outlive the run: revoking it would turn every later request
    # into a 401 (revoking the key of the request itself is covered by the api's tests).
    if (
        method == "DELETE"
        and path.endswith("/api-keys/{id}")
        and isinstance(case.path_parameters, dict)
        and str(case.path_parameters.get("id", "")).lower() == OWN_KEY_ID.lower()
    ):
        case.path_parameters = {**case.path_parameters, "id": NO_SUCH_ID}
    body = getattr(case, "body", None)
    if "/mailboxes" in path and isinstance(body, dict):
        body = copy.deepcopy(body)
        _loopback(body.get("smtp"))
        _loopback(body.get("imap"))
        case.body = body
    # The document's own examples are sent as they are (they are valid, braces included).
    phase = getattr(getattr(getattr(case, "meta", None), "phase", None), "name", "")
    if "example" in str(phase).lower():
        return
    if isinstance(body, (dict, str)):
        case.body = _fix_body(path, method, copy.deepcopy(body))
