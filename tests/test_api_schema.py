"""The OpenAPI document is true: schemathesis (as a CLI subprocess, so this process's IOLoop keeps
serving) runs against the live app with a session cookie + XSRF header and with an API token, and
finds no 500, no undocumented status, and no response that breaks the schema."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import cookie_header, eventually

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",  # what the schema forbids is refused (the schema is not too loose)
        "missing_required_header",
        "use_after_free",  # a deleted story stays gone
        "ensure_resource_availability",  # a created story can be read back
        "ignored_auth",  # a write without credentials is refused
    ]
)


RUN_TIMEOUT = 150  # about 20 s on an idle machine; generous for a loaded CI box


async def run_schemathesis(base_url, headers, workdir, max_examples=10):
    args = [SCHEMATHESIS, "run", base_url + "/api/openapi.json", "--url", base_url]
    args += ["--checks", CHECKS, "--max-examples", str(max_examples), "--seed", "8", "--workers", "1"]
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
