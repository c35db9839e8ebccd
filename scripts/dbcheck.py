"""Used by scripts/setup: `reachable` (a MySQL server answers) or `login` (our credentials work)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymysql  # noqa: E402

import config  # noqa: E402

config.parse([sys.argv[0]])
db = config.mysql_settings()
try:
    pymysql.connect(
        host=db["host"], port=db["port"], user=db["user"], password=db["password"], connect_timeout=2
    ).close()
except pymysql.err.OperationalError as e:
    # 1045/1698: the server answered but refused these credentials.
    sys.exit(0 if sys.argv[1] == "reachable" and e.args[0] in (1045, 1698) else 1)
