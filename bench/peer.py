"""The peer: the same pages in Flask, served by gunicorn with 2 gthread workers, on the same database.

What a straightforward Flask app does: one pymysql connection per worker thread, the same SQL as
models/stories.py and models/sessions.py (imported, so both read the same rows the same way, the
search through models.search), Jinja2 templates that produce the same HTML (bench/peer_templates/),
the same security headers, an XSRF cookie when the browser has none, and the session read from
Storyhouse's own signed cookie (so one logged-in cookie works on both). No caching.

bench/pages.py starts it as:
    PEER_DATABASE=storyhouse_bench_pages PEER_COOKIE_SECRET=... .venv/bin/gunicorn -w 2 \
        -k gthread --threads 8 -b 127.0.0.1:18814 bench.peer:app
"""

import hashlib
import os
import secrets
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flask  # noqa: E402
import pymysql  # noqa: E402
import pymysql.cursors  # noqa: E402
import tornado.web  # noqa: E402  (only its signed-cookie decoder: Storyhouse's session cookie)

import config  # noqa: E402
from models import search  # noqa: E402
from models.sessions import token_hash  # noqa: E402
from models.stories import _COLUMNS, _LIST_COLUMNS, PAGE_SIZE  # noqa: E402
from views.base import CSP, SESSION_COOKIE, THEMES  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
config.parse([sys.argv[0], "--mysql_database=" + os.environ.get("PEER_DATABASE", "storyhouse_bench_pages")])
DB = config.mysql_settings()
SECRET = os.environ.get("PEER_COOKIE_SECRET", "")

app = flask.Flask(__name__, template_folder=os.path.join(HERE, "peer_templates"), static_folder=None)
_local = threading.local()
_static_versions = {}


def db():
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = pymysql.connect(
            **DB, charset="utf8mb4", cursorclass=pymysql.cursors.DictCursor, autocommit=True
        )
    return con


def query(sql, params, one=False):
    try:
        with db().cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone() if one else cur.fetchall()
    except pymysql.err.OperationalError:
        _local.con = None
        raise


def static_url(path):
    if path not in _static_versions:
        with open(os.path.join(config.BASE_DIR, "static", path), "rb") as f:
            _static_versions[path] = hashlib.sha512(f.read()).hexdigest()
    return "/static/%s?v=%s" % (path, _static_versions[path])


def index_url(q="", page=1):
    params = [(k, v) for k, v in (("q", q), ("page", page if page > 1 else "")) if v]
    return "/" + ("?" + urllib.parse.urlencode(params) if params else "")


def xsrf_token():
    token = flask.g.get("xsrf")
    if token is None:
        token = flask.request.cookies.get("_xsrf") or secrets.token_hex(16)
        flask.g.xsrf = token
    return token


def current_user():
    raw = flask.request.cookies.get(SESSION_COOKIE)
    if not raw or not SECRET:
        return None
    token = tornado.web.decode_signed_value(SECRET, SESSION_COOKIE, raw, max_age_days=30, min_version=2)
    if not token:
        return None
    return query(
        "SELECT s.id AS session_id, s.user_id AS id, u.username"
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s AND s.expires_at > NOW()",
        (token_hash(token.decode()),),
        one=True,
    )


def render(template, **kwargs):
    theme = flask.request.cookies.get("theme")
    return flask.render_template(
        template,
        current_user=current_user(),
        theme=theme if theme in THEMES else "",
        static_url=static_url,
        index_url=index_url,
        xsrf_token=xsrf_token,
        **kwargs,
    )


@app.after_request
def headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if "xsrf" in flask.g and "_xsrf" not in flask.request.cookies:
        response.set_cookie("_xsrf", flask.g.xsrf, httponly=True, samesite="Lax")
    return response


@app.route("/")
def index():
    page = flask.request.args.get("page", "1")
    page = int(page) if page.isdigit() and 1 <= int(page) <= 100000 else flask.abort(400)
    q = flask.request.args.get("q", "")[:200]
    offset = (page - 1) * PAGE_SIZE
    rows = []
    if q:
        terms = search.query(q)
        if terms:
            rows = query(
                _LIST_COLUMNS + " WHERE MATCH (s.search_text) AGAINST (%s IN BOOLEAN MODE)"
                " ORDER BY s.id DESC LIMIT %s OFFSET %s",
                (terms, PAGE_SIZE + 1, offset),
            )
    else:
        rows = query(_LIST_COLUMNS + " ORDER BY s.id DESC LIMIT %s OFFSET %s", (PAGE_SIZE + 1, offset))
    return render("index.html", stories=rows[:PAGE_SIZE], page=page, query=q, has_next=len(rows) > PAGE_SIZE)


@app.route("/story/<int:story_id>")
def story(story_id):
    row = query(_COLUMNS + " WHERE s.id = %s", (story_id,), one=True)
    if row is None:
        flask.abort(404)
    return render("story.html", story=row)


@app.route("/login")
def login():
    return render("login.html", next=flask.request.args.get("next", ""))
