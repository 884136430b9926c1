"""The test PINs, and the checks that none of them leaks.

The PINs are distinctive so that a leak is findable in any output or log.
SECRETS is the one list every check reads; a token rig with PINs of its
own adds them with add_secrets(), so every check sees them from then on.
"""

from pathlib import Path


PIN = "p11b-Pin-7d3f"  # distinctive, so a leak is findable in any log
SO_PIN = "p11b-So-4c9e"
WRONG_PIN = "p11b-Wrong-0a5b"  # also distinctive: it must not leak either
# A list, changed only in place (add_secrets): every module that imported
# it, p11b_util included, sees the PINs a rig adds later.
SECRETS = [PIN, SO_PIN, WRONG_PIN]


def add_secrets(*values):
    """Check for these PINs too, from now on (a token rig's own PINs)."""
    SECRETS.extend(v for v in values if v not in SECRETS)


def _hide_args(text, argv):
    # openssl echoes a URI it could not load: an argument carrying a PIN may
    # come back verbatim, which is the app's doing, not a leak. Anything
    # else that contains a PIN is.
    for a in argv:
        a = str(a)
        if any(s in a for s in SECRETS):
            text = text.replace(a, "<arg>")
    return text


def check_no_secret(text, what, argv=()):
    text = _hide_args(text, argv)
    for s in SECRETS:
        assert s not in text, f"a PIN ({s!r}) appears in {what}"


def assert_no_secret(*items):
    """No PIN (SECRETS) in any of items: (what, str | bytes | Path).

    A Path that does not exist is skipped; everything else is searched as
    bytes, so a PIN in any encoding-agnostic form is found.
    """
    for what, data in items:
        if isinstance(data, Path):
            if not data.exists():
                continue
            data = data.read_bytes()
        if isinstance(data, str):
            data = data.encode(errors="surrogateescape")
        for secret in SECRETS:
            assert secret.encode() not in data, \
                f"a PIN ({secret!r}) appears in {what}"
