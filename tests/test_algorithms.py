"""What the provider registers, and the parameters each algorithm says it
takes and gives, compared with tests/data/algorithms.txt.

The settable and gettable tables must list exactly the keys the setters
and getters handle (STYLE.md section 6): a change to either shows up here
as a diff to review, and the expected file is updated in the same commit.
"""

import re
from pathlib import Path

import p11b_util as u

EXPECTED = Path(__file__).parent / "data" / "algorithms.txt"
LISTS = ["key-managers", "signature-algorithms", "asymcipher-algorithms",
         "key-exchange-algorithms", "encoders", "decoders", "store-loaders"]


def our_entries(text):
    """The blocks of `openssl list -X -verbose` that belong to pkcs11."""
    out, keep = [], False
    for line in text.splitlines():
        entry = re.match(r"\s*(IDs: )?(\{.*\}|\S+) @ (\S+)", line)
        if entry:
            keep = entry.group(3) == "pkcs11"
        if keep:
            out.append(line.rstrip())
    return out


def current(token):
    lines = []
    for what in LISTS:
        p = token.ossl("list", f"-{what}", "-verbose")
        lines.append(f"== {what}")
        lines += our_entries(p.stdout)
    return "\n".join(lines) + "\n"


def test_registered_algorithms_and_parameters_are_as_declared(token):
    got = current(token)
    want = EXPECTED.read_text()
    assert got == want, (
        "the provider's algorithms or parameter tables changed; if that is "
        f"intended, update {EXPECTED} with this output:\n{got}")


def test_every_operation_has_algorithms(token):
    text = current(token)
    for what in LISTS:
        block = text.split(f"== {what}\n")[1].split("== ")[0]
        assert "@ pkcs11" in block, f"no {what} registered"
