"""docs/HOWTO.md's recipes as tests run them: the text of a marked block,
its placeholders replaced, as argv lists or as a bash script.
"""

import re
import shlex
from pathlib import Path

from p11b_run import run


HOWTO = Path(__file__).resolve().parent.parent / "docs" / "HOWTO.md"
RECIPE_DIR = "/srv/p11bridge"  # the recipes' one directory
RECIPE_TOKEN = "pkcs11:token=my-token"
_RECIPE_RX = re.compile(r"^<!-- recipe: (\S+) -->[ \t]*\n```[^\n]*\n(.*?)^```",
                        re.S | re.M)


def recipes():
    """{name: text} of every block marked <!-- recipe: name --> in HOWTO."""
    found = {}
    for name, body in _RECIPE_RX.findall(HOWTO.read_text()):
        assert name not in found, f"recipe {name!r} appears twice in {HOWTO}"
        found[name] = body
    return found


def recipe(name, subs=None):
    """The text of a docs/HOWTO.md recipe with its placeholders replaced.

    subs maps placeholder text to its value; the replacement is one pass
    (longest placeholder first), so a value is never replaced again.
    """
    every = recipes()
    assert name in every, \
        f"{HOWTO} has no recipe {name!r}; it has {sorted(every)}"
    text = every[name]
    if subs:
        keys = sorted(subs, key=len, reverse=True)
        rx = re.compile("|".join(re.escape(k) for k in keys))
        text = rx.sub(lambda m: str(subs[m.group(0)]), text)
    return text


def recipe_subs(directory, token=None, keys=None, port=None,
                s_server_port=0, provider=None, module=None):
    """The placeholder values of HOWTO.md for a test.

    keys maps a recipe key name (server-key, client-key, ca-key) to the
    label of the test token's key that plays it.
    """
    subs = {RECIPE_DIR: str(directory), "4433": str(s_server_port)}
    if port is not None:
        subs["8443"] = str(port)
    for role, label in (keys or {}).items():
        subs[f"{RECIPE_TOKEN};object={role}"] = token.uri(label)
    if provider is not None:
        subs["module = pkcs11.so"] = f"module = {provider}"
    if module is not None:
        subs["/usr/lib/softhsm/libsofthsm2.so"] = module
    return subs


def recipe_commands(text):
    """Each command of a shell recipe as an argv list: comment lines are
    dropped and backslash-newline continuations joined."""
    cmds = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            cmds.append(shlex.split(line, comments=True))
    return cmds


def recipe_command(name, subs, extra=()):
    """The one command of a shell recipe as argv, with extra args added."""
    cmds = recipe_commands(recipe(name, subs))
    assert len(cmds) == 1, f"recipe {name!r} has {len(cmds)} commands"
    return cmds[0] + [str(a) for a in extra]


def run_shell_recipe(name, subs, env, **kw):
    """Run a shell recipe's text with bash -e, as a user would paste it."""
    return run(["/bin/bash", "-e", "-o", "pipefail", "-c",
                recipe(name, subs)], env, **kw)
