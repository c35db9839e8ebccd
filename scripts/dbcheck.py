"""Used by scripts/setup, with the server's own options (defaults, var/storyhouse.conf, --config,
the command line):
    dbcheck.py reachable [OPTIONS]   exit 0 when a MySQL server answers at the configured address
    dbcheck.py login [OPTIONS]       exit 0 when the configured credentials work
    dbcheck.py local [OPTIONS]       exit 0 when the configured server is on this machine
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymysql  # noqa: E402

import config  # noqa: E402

check = sys.argv[1]
config.parse([sys.argv[0], *sys.argv[2:]])
db = config.mysql_settings()
if check == "local":
    sys.exit(0 if db["host"] in ("127.0.0.1", "localhost", "::1") else 1)
if check == "where":
    print("%s:%s" % (db["host"], db["port"]))
    sys.exit(0)
try:
    pymysql.connect(
        host=db["host"], port=db["port"], user=db["user"], password=db["password"], connect_timeout=2
    ).close()
except pymysql.err.OperationalError as e:
    # 1045/1698: the server answered but refused these credentials.
    sys.exit(0 if check == "reachable" and e.args[0] in (1045, 1698) else 1)
