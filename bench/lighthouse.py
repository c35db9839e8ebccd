"""Lighthouse scores of the index and a story, phone and desktop: a fresh server on its own
database filled by tests/content.py, Lighthouse from npm (bench/lighthouse/, pinned) driving
Debian's Chromium. Too slow for the test suite (about 15 s a run), so a bench script.

    (cd bench/lighthouse && npm ci) && .venv/bin/python bench/lighthouse.py [--out bench/out/lighthouse]

Prints one line per page and form factor: performance, accessibility, best practices, SEO, and
the audits that cost points.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import content  # noqa: E402
from tests import serverproc as sp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LIGHTHOUSE = os.path.join(HERE, "lighthouse", "node_modules", ".bin", "lighthouse")
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")


def run(url, form_factor, out):
    """One Lighthouse run; returns its report (dict)."""
    args = [
        LIGHTHOUSE,
        url,
        "--output=json",
        "--output-path=" + out,
        "--quiet",
        "--only-categories=" + ",".join(CATEGORIES),
        "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
    ]
    if form_factor == "desktop":
        args.append("--preset=desktop")
    subprocess.run(args, check=True, env=dict(os.environ, CHROME_PATH="/usr/bin/chromium"), timeout=300)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(HERE, "out", "lighthouse"))
    args = parser.parse_args()
    if not os.path.exists(LIGHTHOUSE):
        sys.exit("lighthouse is not installed: (cd bench/lighthouse && npm ci)")
    os.makedirs(args.out, exist_ok=True)
    database = sp.database_name("lighthouse")
    sp.drop_databases(database)
    try:
        with sp.running_server(database) as (_server, port):
            ids = content.seed(port, database)
            base = "http://127.0.0.1:%d" % port
            pages = {"index": "/", "story": "/story/%d" % ids["rich"]}
            for name, path in pages.items():
                for form_factor in ("mobile", "desktop"):
                    out = os.path.join(args.out, "%s-%s.json" % (name, form_factor))
                    report = run(base + path, form_factor, out)
                    scores = [round(report["categories"][c]["score"] * 100) for c in CATEGORIES]
                    lost = [
                        a["id"]
                        for a in report["audits"].values()
                        if a.get("score") is not None
                        and a["score"] < 1
                        and a.get("scoreDisplayMode") == "binary"
                    ]
                    print(
                        "%-6s %-8s performance %3d  accessibility %3d  best practices %3d  SEO %3d  %s"
                        % (name, form_factor, *scores, " ".join(lost))
                    )
    finally:
        sp.drop_databases(database)


if __name__ == "__main__":
    main()
