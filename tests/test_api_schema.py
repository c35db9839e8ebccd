"""The OpenAPI document is true: schemathesis (as a CLI subprocess, so this process's IOLoop keeps
serving) runs every one of its checks against the live app with a session cookie + XSRF header and
with an API token: no 500, no undocumented status or header, no response that breaks the schema,
what the schema allows is accepted and what it forbids refused, deleted stories stay gone.

Schemathesis generates strings with Python's regex rules and validates with ECMA's, so it cannot
be trusted to find where the two read a pattern differently: tests/test_api.py checks the title
and body patterns character by character against the server."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import cookie_header, eventually

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
CHECKS = "all"  # every check schemathesis has, stateful ones included (use_after_free, ...)
# Schemathesis' expected answers to a request the schema forbids, plus 413: a body over the size
# limits is refused before it is read as JSON (the schema's maxLength is in characters, the
# server's limits in bytes).
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"""


RUN_TIMEOUT = 150  # about 20 s on an idle machine; generous for a loaded CI box


async def run_schemathesis(base_url, headers, workdir, max_examples=None, seed=None):
    config_path = os.path.join(workdir, "schemathesis.toml")
    with open(config_path, "w") as f:
        f.write(CONFIG)
    # A longer or another run to look for more: STORYHOUSE_SCHEMATHESIS=examples[,seed].
    wanted = os.environ.get("STORYHOUSE_SCHEMATHESIS", "").split(",")
    max_examples = max_examples or int(wanted[0] or 10)
    seed = seed or (wanted[1] if len(wanted) > 1 else "8")
    args = [SCHEMATHESIS, "--config-file", config_path, "run", base_url + "/api/openapi.json"]
    args += ["--url", base_url, "--checks", CHECKS, "--max-examples", str(max_examples)]
    args += ["--seed", str(seed), "--workers", "1"]
    args += ["--request-timeout", "10", "--suppress-health-check", "all"]
    for name, value in headers.items():
        args += ["-H", "%s: %s" % (name, value)]
    env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false", COLUMNS="200")
    # Output goes to a file (read at the end, also after a kill): a pipe nobody reads could fill up.
    # Polled rather than tornado.process.Subprocess, whose SIGCHLD handler stays on the first
    # test's IOLoop (pytest-tornado makes a new loop per test).
    log_path = os.path.join(workdir, "schemathesis.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    # the app under test runs on this loop meanwhile
    await eventually(lambda: proc.poll() is not None, RUN_TIMEOUT, interval=0.2)
    code = proc.poll()
    if code is None:
        proc.kill()
        proc.wait()
        code = "killed after %d s" % RUN_TIMEOUT
    with open(log_path, encoding="utf-8", errors="replace") as log:
        return code, log.read()


async def token_for(client, name="alice"):
    await client.register(name)
    page = (await client.post("/account/tokens", {"name": "schemathesis"})).body.decode()
    return re.search(r'id="new-token"[^>]*value="([^"]+)"', page).group(1)


@pytest.mark.gen_test(timeout=RUN_TIMEOUT + 30)
async def test_schema_holds_with_an_api_token(http_server, base_url, client, tmp_path):
    token = await token_for(client)
    await client.new_story("Seed", "A story to read, patch and delete.")
    code, out = await run_schemathesis(base_url, {"Authorization": "Bearer " + token}, tmp_path)
    assert code == 0, out
    assert "Server error" not in out


@pytest.mark.gen_test(timeout=RUN_TIMEOUT + 30)
async def test_schema_holds_with_a_session_and_xsrf(http_server, base_url, client, tmp_path):
    await client.register("alice")
    await client.new_story("Seed", "A story to read, patch and delete.")
    cookie = cookie_header(client.cookies)
    headers = {"Cookie": cookie, "X-XSRFToken": client.xsrf}
    code, out = await run_schemathesis(base_url, headers, tmp_path)
    assert code == 0, out
