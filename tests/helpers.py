"""Small helpers shared by test modules: read the test database, read a Set-Cookie."""

import http.cookies

import pymysql

from models.db import connect_args


def query(db_settings, sql, params=()):
    """Rows (dicts) of one statement, run on a connection of the test's own."""
    s = db_settings
    con = pymysql.connect(**connect_args(s["host"], s["port"], s["user"], s["password"], s["database"]))
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.close()


def set_cookie(response, name):
    """The Set-Cookie of `name` in a response, as a Morsel, or None."""
    for header in response.headers.get_list("Set-Cookie"):
        jar = http.cookies.SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name]
    return None
