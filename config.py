"""Every option of Storyhouse (tornado.options), the Application settings and the MySQL settings.

Options are read in this order, each overriding the one before: the defaults below, the file
`var/storyhouse.conf` written by `scripts/setup` (a MySQL account it created), the file given with
`--config=FILE`, then the command line.
"""

import os
import secrets

from tornado.options import define, options, parse_command_line, parse_config_file

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
VAR_DIR = os.path.join(BASE_DIR, "var")
LOCAL_CONFIG = os.path.join(VAR_DIR, "storyhouse.conf")

define("config", type=str, default="", help="path to a config file (Python syntax: name = value)")
define("port", type=int, default=8888, help="port to listen on")
define("address", type=str, default="", help="address to listen on (empty = all interfaces)")
define(
    "debug",
    type=bool,
    default=False,
    help="autoreload, uncached templates and static files, tracebacks (one process only)",
)
define("processes", type=int, default=1, help="1 = one process, N > 1 = N forked processes, 0 = one per core")
define("xheaders", type=bool, default=False, help="trust X-Forwarded-For/-Proto (behind a proxy)")
define(
    "allowed_hosts",
    type=str,
    multiple=True,
    default=[],
    help="comma-separated Host names the site answers to (empty = any, for development)",
)
define(
    "max_connections",
    type=int,
    default=0,
    help="open connections (HTTP and WebSocket) per process; 0 = the open-files limit minus 100",
)
define("max_sockets_per_member", type=int, default=16, help="open WebSockets one member may hold per process")
define("max_sockets_per_ip", type=int, default=100, help="open WebSockets one address may hold per process")
define("shutdown_timeout", type=float, default=10.0, help="seconds to wait for in-flight requests on SIGTERM")

define("mysql_host", type=str, default="127.0.0.1", help="MySQL/MariaDB host")
define("mysql_port", type=int, default=3306, help="MySQL/MariaDB port")
define("mysql_user", type=str, default="root", help="MySQL user")
define("mysql_password", type=str, default="", help="MySQL password")
define("mysql_database", type=str, default="storyhouse", help="database (created if missing)")
define(
    "mysql_query_timeout",
    type=float,
    default=5.0,
    help="seconds a page waits for one query before answering 503",
)
define(
    "mysql_replicas",
    type=str,
    default="",
    help="read replicas of the primary, host:port,host:port (stale-tolerant reads go to a healthy one)",
)
define(
    "mysql_replica_max_lag",
    type=float,
    default=5.0,
    help="seconds a replica may be behind the primary before reads avoid it",
)
define("mysql_pool_size", type=int, default=8, help="connections in the pool (and threads in its executor)")

define(
    "cookie_secret",
    type=str,
    default="",
    help="secret for signed cookies (empty = generated once and kept in var/cookie_secret)",
)
define(
    "upload_dir", type=str, default="uploads", help="where attachments are stored (relative to the project)"
)
define("max_upload_mb", type=int, default=50, help="largest upload in MB")
define("link_previews", type=bool, default=True, help="fetch preview cards for the links in stories")
define(
    "link_preview_allow_private",
    type=bool,
    default=False,
    help="let link previews reach loopback/private addresses (tests only: this opens SSRF)",
)
define("redis_url", type=str, default="", help="Redis URL for chat pub/sub (empty = in-process bus)")
define(
    "page_cache_seconds",
    type=float,
    default=5.0,
    help="how long the index and story pages may be served from memory (every write empties it)",
)
define(
    "session_cache_seconds",
    type=float,
    default=10.0,
    help="how long a process may remember a session lookup (any session end empties it everywhere; 0 = off)",
)
define("chat_redis_prefix", type=str, default="storyhouse", help="prefix of the chat's Redis channel, keys")
define(
    "chat_trusted_origins",
    type=str,
    multiple=True,
    default=[],
    help="comma-separated extra origins (https://host:port) allowed to open the chat socket",
)

MAX_BODY_BYTES = 1024 * 1024  # the HTTP server's limit; the upload route raises its own


def parse(args=None):
    """Read the options: defaults, var/storyhouse.conf, --config=FILE, then the command line again."""
    parse_command_line(args, final=False)
    if os.path.exists(LOCAL_CONFIG):
        parse_config_file(LOCAL_CONFIG, final=False)
    if options.config:
        parse_config_file(options.config, final=False)
    parse_command_line(args)  # again, so the command line wins whatever the order


def mysql_settings():
    """Connection settings for models.db.Database and models.migrate."""
    return dict(
        host=options.mysql_host,
        port=options.mysql_port,
        user=options.mysql_user,
        password=options.mysql_password,
        database=options.mysql_database,
    )


def parse_replicas(text):
    """The --mysql_replicas list (host:port,host:port) as [(host, port)]; the port defaults to 3306.
    ValueError when an item is malformed."""
    found = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "3306"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("mysql_replicas: %r is not host:port" % item)
        found.append((host, int(port)))
    return found


def project_path(path):
    """`var/` and a relative `upload_dir` belong to the project, not to the working directory."""
    return path if os.path.isabs(path) else os.path.join(BASE_DIR, path)


def load_cookie_secret():
    """The configured secret, or one generated once and kept in var/cookie_secret (mode 0600)."""
    if options.cookie_secret:
        return options.cookie_secret
    os.makedirs(VAR_DIR, mode=0o700, exist_ok=True)
    path = os.path.join(VAR_DIR, "cookie_secret")
    if not os.path.exists(path):
        # Written whole under a temporary name, then linked into place: two servers starting at
        # once never read a half-written file, and the first one's secret wins.
        tmp = "%s.%d" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as f:
        return f.read().strip()


def allowed_hosts():
    return [h.strip().lower() for h in options.allowed_hosts if h.strip()]


def settings(**overrides):
    """The tornado.web.Application settings; tests pass overrides (cookie_secret, cheap hashing)."""
    result = dict(
        debug=options.debug,
        template_path=os.path.join(BASE_DIR, "template"),
        static_path=os.path.join(BASE_DIR, "static"),
        cookie_secret=options.cookie_secret,
        xsrf_cookies=True,
        cross_origin_protection=True,
        xsrf_cookie_kwargs=dict(httponly=True, samesite="Lax"),
        compress_response=True,  # gzip text answers; views/compression.py says which (never attachments)
        allowed_hosts=allowed_hosts(),
        max_upload_mb=options.max_upload_mb,
        upload_dir=project_path(options.upload_dir),
        redis_url=options.redis_url,
        chat_redis_prefix=options.chat_redis_prefix,
        chat_trusted_origins=[o.strip().lower().rstrip("/") for o in options.chat_trusted_origins if o],
        max_sockets_per_member=options.max_sockets_per_member,
        max_sockets_per_ip=options.max_sockets_per_ip,
        websocket_max_message_size=64 * 1024,  # a bigger frame closes the socket with 1009
        websocket_ping_interval=30,  # dead peers are dropped after a missed pong
        websocket_ping_timeout=30,
        link_previews=options.link_previews,
        link_preview_allow_private=options.link_preview_allow_private,
        session_days=30,
        registrations_per_ip_hour=20,
        stories_per_hour=30,
        page_cache_seconds=options.page_cache_seconds,
        mysql_replicas=parse_replicas(options.mysql_replicas),
        mysql_replica_max_lag=options.mysql_replica_max_lag,
        session_cache_seconds=options.session_cache_seconds,
        argon2=dict(),  # argon2-cffi defaults (argon2id); tests use cheap parameters
    )
    result.update(overrides)
    return result
