"""A private MariaDB primary and a replica of it (GTID), on free loopback ports, for the replica
tests and the soak: `with replicated_pair() as pair: pair.primary_port, pair.replica_port`.

Each server gets a fresh data directory (mariadb-install-db) under a temporary folder, binary
logs, its own server id, and root without a password on 127.0.0.1 only. Everything is killed and
removed afterwards."""

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pymysql

from tests import serverproc as sp

MARIADBD = shutil.which("mariadbd") or shutil.which("/usr/sbin/mariadbd")
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


def available():
    return bool(MARIADBD and INSTALL_DB)


def connect(port, database=None):
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password="",
        database=database,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
        connect_timeout=2,
        read_timeout=10,
    )


def run_sql(port, statement, params=(), database=None):
    """Run one statement (placeholders, as everywhere); its rows."""
    con = connect(port, database)
    try:
        with con.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        con.close()


class Server:
    def __init__(self, root, name, server_id):
        self.dir = os.path.join(root, name)
        self.port = sp.free_port()
        self.server_id = server_id
        self.proc = None

    def install(self, user_args):
        done = subprocess.run(
            [INSTALL_DB, "--no-defaults", "--datadir=" + self.dir, "--auth-root-authentication-method=normal"]
            + ["--skip-test-db"]
            + user_args,
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: %s" % done.stderr.decode(errors="replace")[-2000:])

    def start(self, user_args):
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", "--datadir=" + self.dir, "--port=%d" % self.port]
            + ["--bind-address=127.0.0.1", "--socket=%s.sock" % self.dir, "--pid-file=%s.pid" % self.dir]
            + ["--server-id=%d" % self.server_id, "--log-bin=binlog", "--log-basename=n%d" % self.server_id]
            + ["--binlog-format=ROW", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"]
            + ["--log-error=" + self.dir + ".err", "--character-set-server=utf8mb4"]
            + user_args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited:\n" + self.log())
            try:
                run_sql(self.port, "SELECT 1")
                return
            except pymysql.err.MySQLError:
                time.sleep(0.1)
        raise RuntimeError("mariadbd did not answer within 60 s:\n" + self.log())

    def log(self):
        try:
            with open(self.dir + ".err", errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Pair:
    def __init__(self, primary, replica, user_args):
        self.primary, self.replica = primary, replica
        self.primary_port, self.replica_port = primary.port, replica.port
        self.user_args = user_args

    def restart_replica(self):
        """After replica.stop(): start it again; it resumes replicating where it stopped."""
        self.replica.start(self.user_args + ["--read-only=1"])
        with contextlib.suppress(pymysql.err.MySQLError):
            run_sql(self.replica_port, "START SLAVE")  # already running again: nothing to do

    def replica_status(self):
        rows = run_sql(self.replica_port, "SHOW SLAVE STATUS")
        return rows[0] if rows else None

    def wait_caught_up(self, timeout=20):
        """Until the replica has applied everything the primary has written."""
        pos = run_sql(self.primary_port, "SELECT @@gtid_binlog_pos AS p")[0]["p"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run_sql(self.replica_port, "SELECT MASTER_GTID_WAIT(%s, 1) AS w", (pos,))[0]["w"] == 0:
                return
        raise AssertionError("the replica did not catch up: %s" % self.replica_status())


@contextlib.contextmanager
def replicated_pair():
    root = tempfile.mkdtemp(prefix="storyhouse-repl-")
    user_args = []
    if os.geteuid() == 0:  # mariadbd will not run as root: as the mysql user, in a folder it owns
        mysql = pwd.getpwnam("mysql")
        os.chown(root, mysql.pw_uid, mysql.pw_gid)
        os.chmod(root, 0o700)
        user_args = ["--user=mysql"]
    primary, replica = Server(root, "primary", 1), Server(root, "replica", 2)
    try:
        primary.install(user_args)
        shutil.copytree(primary.dir, replica.dir, symlinks=True)  # the same start: nothing to copy over
        if user_args:
            subprocess.run(["chown", "-R", "mysql:mysql", replica.dir], check=True)
        primary.start(user_args)
        replica.start(user_args + ["--read-only=1"])
        run_sql(
            replica.port,
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER='root',"
            " MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            (primary.port,),
        )
        run_sql(replica.port, "START SLAVE")
        yield Pair(primary, replica, user_args)
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
