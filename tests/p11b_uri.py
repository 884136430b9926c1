"""pkcs11: URIs (RFC 7512): building them, reading them, and finding them in
what `openssl storeutl` and `openssl pkey -text` print.
"""

import re
from urllib.parse import quote, unquote_to_bytes


QUERY_ATTRS = ("pin-value", "pin-source", "module-name", "module-path")


def pct_bytes(data):
    return "".join(f"%{b:02X}" for b in data)


def make_uri(token=None, object=None, type=None, id=None, **extra):
    """pkcs11: URI from attributes; underscores in names become dashes.

    id may be bytes or a hex string. Query attributes (pin-value, ...)
    go after '?'.
    """
    path, query = [], []
    if token is not None:
        path.append(("token", token))
    if object is not None:
        path.append(("object", object))
    if id is not None:
        if isinstance(id, str):
            id = bytes.fromhex(id)
        path.append(("id", id))
    for name, value in extra.items():
        name = name.replace("_", "-")
        (query if name in QUERY_ATTRS else path).append((name, value))
    if type is not None:
        path.append(("type", type))

    def enc(value, safe):
        if isinstance(value, bytes):
            return pct_bytes(value)
        return quote(str(value), safe=safe)

    s = "pkcs11:" + ";".join(f"{n}={enc(v, '-._~')}" for n, v in path)
    if query:
        s += "?" + "&".join(f"{n}={enc(v, '/:-._~')}" for n, v in query)
    return s


def parse_uri(uri):
    """Our own small RFC 7512 reader: {name: bytes} for path and query."""
    assert uri.lower().startswith("pkcs11:"), uri
    rest = uri[len("pkcs11:"):]
    path, _, query = rest.partition("?")
    out = {}
    for part in [p for p in path.split(";") if p] + \
            [q for q in query.split("&") if q]:
        name, eq, value = part.partition("=")
        assert eq, f"attribute without '=' in {uri}"
        assert name not in out, f"{name} twice in {uri}"
        out[name] = unquote_to_bytes(value)
    return out


def uris_in(text):
    """Every 'URI: pkcs11:...' line of storeutl/pkey -text output."""
    return re.findall(r"URI:\s*(pkcs11:\S+)", text)


def store_items(stdout):
    """[(index, kind)] from storeutl's 'N: Kind' lines, and the total."""
    items = re.findall(r"^(\d+): (Pkey|Public key|Certificate|Name|CRL|"
                       r"Parameters)\s*$", stdout, re.M)
    m = re.search(r"^Total found: (\d+)", stdout, re.M)
    total = int(m.group(1)) if m else None
    return [(int(i), k) for i, k in items], total
