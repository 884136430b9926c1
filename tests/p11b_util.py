"""Every helper of the test modules under one name (`import p11b_util as u`).

This module defines nothing: it hands on the names of the modules that
hold them, one module per concern (the right-hand comments). New code may
import from those modules directly; the tests call `u.<name>` so that
their call sites did not change when the helpers were split.
"""

# the PINs and the checks that none leaks
from p11b_secrets import (  # noqa: F401
    add_secrets, assert_no_secret, check_no_secret, _hide_args, PIN, SECRETS,
    SO_PIN, WRONG_PIN)
# running programs, their environment, openssl
from p11b_run import (  # noqa: F401
    base_env, CommandFailed, default_only_env, describe, kill_group, log_path,
    LOGS, OPENSSL, openssl, openssl_version, ops_tool, provider_env, read_log,
    require_program, run, run_ops, sanitizer_env, sanitizers_enabled, TIMEOUT,
    USED_LOGS, with_log)
# a program on a pseudo-terminal
from p11b_pty import (  # noqa: F401
    PtyResult, run_with_pty)
# pkcs11: URIs
from p11b_uri import (  # noqa: F401
    make_uri, parse_uri, pct_bytes, QUERY_ATTRS, store_items, uris_in)
# the debug log and OpenSSL's error lines
from p11b_logs import (  # noqa: F401
    calls_by_pid, cryptoki_calls, found_counts, log_lines_of, log_logins,
    openssl_errors, pids_calling_cryptoki, provider_errors, sign_inits)
# keys, DER, digests: independent checks
from p11b_crypto import (  # noqa: F401
    crypto_hash, CURVE_OIDS, der_children, der_read, digest_of, DIGESTS,
    flip_byte, normalize_spki, OID_EC, OID_RSA, oid_to_str, pem_blocks,
    spki_algorithm, spki_der_from_pem)
# faultmod's control and count files, CK_RVs
from p11b_faultmod import (  # noqa: F401
    CKR, count_file_calls, open_session_peaks, rvs_of, write_control)
# servers for one test and their clients
from p11b_servers import (  # noqa: F401
    curl_fetch, dn_pattern, free_port, LineReader, port_open, s_client_summary,
    Server, SServer)
# docs/HOWTO.md's recipes
from p11b_recipes import (  # noqa: F401
    HOWTO, recipe, recipe_command, recipe_commands, RECIPE_DIR, recipe_subs,
    RECIPE_TOKEN, recipes, run_shell_recipe)
