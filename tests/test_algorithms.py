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


ENTRY = re.compile(r"\s*(IDs: )?(\{.*\}|\S+) @ (\S+)")
HEAD = re.compile(r"\s*(Name|Type): ")


def our_entries(text):
    """The blocks of `openssl list -X -verbose` that belong to pkcs11, each
    with its "Name:" and "Type:" lines (key managers have them)."""
    out, head, keep = [], [], False
    for line in text.splitlines():
        if HEAD.match(line):
            keep = False
            head.append(line.rstrip())
            continue
        entry = ENTRY.match(line)
        if entry:
            keep = entry.group(3) == "pkcs11"
            if keep:
                out += head
            head = []
        if keep:
            out.append(line.rstrip())
    return out


def sections(text):
    """{list name: sorted blocks}. OpenSSL 3.6 lists a provider's algorithms
    in another order than 3.0 and 3.5; the order is not ours, the blocks
    are."""
    out = {}
    for part in text.split("== ")[1:]:
        name, _, body = part.partition("\n")
        blocks = []
        for line in body.splitlines():
            starts = HEAD.match(line) and line.lstrip().startswith("Name:")
            if ENTRY.match(line) and not (blocks and blocks[-1][-1].lstrip()
                                          .startswith("Type:")):
                starts = True
            if starts or not blocks:
                blocks.append([])
            blocks[-1].append(line)
        out[name] = sorted("\n".join(b) for b in blocks)
    return out


COMPOSITE = re.compile(r"\s*\{.*\b(RSA|ECDSA)-SHA2-\d+\b.*\} @ pkcs11")


def expected():
    """tests/data/algorithms.txt as this OpenSSL prints it. The file is
    3.6's output; older versions print less:
      - before 3.6 `list -store-loaders -verbose` prints a loader's name
        only, not its description and settable parameters;
      - before 3.4 there is no message-signing API, so no composite
        signature algorithms (RSA-SHA2-256, ECDSA-SHA2-256, ...);
      - before 3.2 there is no implicit rejection for PKCS#1 v1.5
        decryption, so no `implicit-rejection` parameter."""
    text = EXPECTED.read_text()
    version = u.openssl_version()
    if version < (3, 6, 0):
        head, _, loaders = text.partition("== store-loaders\n")
        kept = [line for line in loaders.splitlines() if ENTRY.match(line)
                and not line.startswith("    ")]
        text = head + "== store-loaders\n" + "".join(f"{x}\n" for x in kept)
    out, dropping = [], False
    for line in text.splitlines():
        if ENTRY.match(line) and not line.startswith("    "):
            dropping = version < (3, 4, 0) and bool(COMPOSITE.match(line))
        elif not line.startswith("    "):
            dropping = False
        if dropping:
            continue
        if version < (3, 2, 0) and "implicit-rejection:" in line:
            continue
        out.append(line)
    return "".join(f"{x}\n" for x in out)


def current(token):
    lines = []
    for what in LISTS:
        p = token.ossl("list", f"-{what}", "-verbose")
        lines.append(f"== {what}")
        lines += our_entries(p.stdout)
    return "\n".join(lines) + "\n"


def canonical(text):
    return "".join(f"== {name}\n" + "".join(f"{b}\n" for b in blocks)
                   for name, blocks in sections(text).items())


def test_registered_algorithms_and_parameters_are_as_declared(token):
    got = canonical(current(token))
    want = canonical(expected())
    assert got == want, (
        "the provider's algorithms or parameter tables changed; if that is "
        f"intended, update {EXPECTED} with this output:\n{got}")


def test_every_operation_has_algorithms(token):
    text = current(token)
    for what in LISTS:
        block = text.split(f"== {what}\n")[1].split("== ")[0]
        assert "@ pkcs11" in block, f"no {what} registered"
