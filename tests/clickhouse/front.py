"""A small HTTP front that speaks ClickHouse's HTTP interface over the real ClickHouse engine.

Test support only. There is no ClickHouse server package on our CI machines, but the PyPI package
`chdb-core` embeds the ClickHouse engine (26.9) in-process. This front maps the parts of the HTTP
interface (port 8123 semantics) that TelemetryFlow uses onto one chDB session, so the product's
ClickHouse adapter runs against the real engine unchanged:

- `GET /ping` (and `GET /`) answer `Ok.`;
- `POST /?query=…` with the SQL in the `query` parameter and/or the body; for
  `INSERT … FORMAT X` the rest of the text is the data, written to a temporary file and loaded with
  `INSERT … FROM INFILE '<tmp>' FORMAT X`;
- `param_<name>=…` typed query parameters, `default_format`, `database` and any other parameter
  as a query-level setting (`insert_deduplication_token=…`, `max_execution_time=…`);
- errors as ClickHouse sends them: status 400 (syntax), 404 (unknown table or database) or 500,
  body `Code: N. DB::Exception: …`, header `X-ClickHouse-Exception-Code`.

Not implemented: authentication (any user is accepted), sessions, compression of bodies
(`decompress=1`), multipart external tables, progress headers. A real server does all of these;
point the suites at one with CLICKHOUSE_URL=http://host:8123.

Usage: python front.py --dir DATA_DIR [--host 127.0.0.1] [--port 8123]
The first line on stdout is `listening on HOST:PORT` once the server accepts connections.
"""

import argparse
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb.session

NOT_SETTINGS = {
    "query", "database", "default_format", "user", "password", "query_id", "session_id",
    "session_timeout", "session_check", "compress", "decompress", "enable_http_compression",
    "wait_end_of_query", "buffer_size", "quota_key",
}
INSERT_WITH_DATA = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)[ \t]*\r?\n?", re.I | re.S)
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.I)
SETTING_VALUE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
ERROR_CODE = re.compile(r"Code: (\d+)\.")


def quote(value):
    if SETTING_VALUE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Front:
    def __init__(self, data_dir):
        self.session = chdb.session.Session(data_dir)
        # chDB keeps query parameters and the current database on the session, not per query:
        # concurrent queries would see each other's. One query at a time, then (the engine still
        # runs each query on all cores).
        self.lock = threading.Lock()
        self.tmp = tempfile.mkdtemp(prefix="chfront-")

    def run(self, sql, fmt, params, database):
        with self.lock:
            if not database:
                return self.session.query(sql, fmt, params=params).bytes()
            self.session.query(f"USE `{database}`")
            try:
                return self.session.query(sql, fmt, params=params).bytes()
            finally:
                self.session.query("USE default")

    def execute(self, args, body):
        text = args.get("query", "")
        if body:
            text = (text + "\n" + body.decode("utf-8", "surrogateescape")) if text else None
        params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
        settings = ", ".join(
            f"{k} = {quote(v)}" for k, v in args.items()
            if k not in NOT_SETTINGS and not k.startswith("param_")
        )
        sql_head = args.get("query", "") if body and args.get("query") else None
        insert = INSERT_WITH_DATA.match(sql_head if sql_head is not None else (text or body.decode("utf-8", "surrogateescape")))
        if insert and sql_head is None:
            # The whole request is in the body: the data follows the FORMAT clause.
            raw = body
            head_len = len(insert.group(0).encode("utf-8", "surrogateescape"))
            data = raw[head_len:]
        elif insert:
            data = body
        if insert:
            target, fmt = insert.group(1), insert.group(2)
            if not data:
                return b""
            fd, path = tempfile.mkstemp(dir=self.tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                clause = f" SETTINGS {settings}" if settings else ""
                sql = f"{target} FROM INFILE '{path}'{clause} FORMAT {fmt}"
                return self.run(sql, "CSV", params, args.get("database"))
            finally:
                os.unlink(path)
        sql = text if text is not None else body.decode("utf-8", "surrogateescape")
        fmt = args.get("default_format", "TabSeparated")
        found = TRAILING_FORMAT.search(sql)
        if found:
            fmt = found.group(1)
            sql = sql[: found.start()]
        sql = sql.rstrip().rstrip(";")
        if settings:
            sql += f" SETTINGS {settings}"
        return self.run(sql, fmt, params, args.get("database"))


def handler(front):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, payload, extra=()):
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-ClickHouse-Server-Display-Name", "chdb-front")
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def handle_query(self, body):
            url = urlsplit(self.path)
            if url.path in ("/ping", "/") and not url.query and not body:
                return self.reply(200, b"Ok.\n")
            args = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                out = front.execute(args, body)
            except Exception as e:  # chDB raises ChdbError / RuntimeError with ClickHouse's text
                message = str(e).strip()
                m = ERROR_CODE.search(message)
                code = int(m.group(1)) if m else 1002
                status = 400 if code in (27, 36, 53, 62, 70, 117, 456, 457) else 404 if code in (60, 81) else 500
                return self.reply(status, (message + "\n").encode(), [("X-ClickHouse-Exception-Code", str(code))])
            self.reply(200, out)

        def do_GET(self):
            self.handle_query(b"")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            self.handle_query(body)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123)
    a = p.parse_args()
    front = Front(a.dir)
    server = ThreadingHTTPServer((a.host, a.port), handler(front))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
