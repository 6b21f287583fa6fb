# The redis-py strategy's application instance (internal/lab/redispy.go).
# One process per instance: one redis.Redis with redis-py's default pool
# and retry settings, shared by the instance's clients as an application's
# threads share it. The first line on stdin is the instance's settings
# (JSON: host, port, workers; optional tls_ca, user, password, setup), so
# that no password is on a command line. Then the lab asks for each PING
# on stdin ("SEQ\n") and reads the outcome on stdout ("SEQ ok" or
# "SEQ err MESSAGE"); it keeps the clients' timing (period, command
# timeout) and counts dials in the kernel.
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

cfg = json.loads(sys.stdin.readline())
kw = {}
if cfg.get("tls_ca"):
    # TLS verified against the run's CA; every other ssl_* setting is
    # redis-py's default (no client certificate, no hostname check). The
    # lab sets SSL_CERT_FILE/SSL_CERT_DIR to the CA and an empty directory,
    # so the default context redis-py builds per connection loads a small
    # trust store instead of the system's (redispy.go, redisPyTLSEnv).
    kw.update(ssl=True, ssl_ca_certs=cfg["tls_ca"])
if cfg.get("password"):
    kw.update(username=cfg.get("user") or None, password=cfg["password"])
setup = cfg.get("setup", "none")
if setup == "auth":
    kw["client_name"] = "stormguard-lab"  # AUTH user pass, then CLIENT SETNAME
elif setup == "hello":
    # redis-py 4.3 sends nothing of its own; redis-py >= 5 and valkey-py
    # (RESP2 by default, so no HELLO) send CLIENT SETINFO LIB-NAME and
    # LIB-VER after AUTH, one round trip each, errors ignored. This is
    # their on_connect's addition, run on redis-py 4.3's connection.
    def setinfo(conn):
        conn.on_connect()
        for attr, val in (("LIB-NAME", "redis-py"), ("LIB-VER", redis.__version__)):
            try:
                conn.send_command("CLIENT", "SETINFO", attr, val)
                resp = conn.read_response()
                if isinstance(resp, Exception):
                    raise resp
            except redis.ResponseError:
                pass

    kw["redis_connect_func"] = setinfo
r = redis.Redis(host=cfg["host"], port=cfg["port"], **kw)  # every other setting: redis-py's default
out = threading.Lock()


def reply(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def ping(seq):
    try:
        r.ping()
        reply(seq + " ok")
    except Exception as e:  # the lab records the failure, whatever it is
        reply(seq + " err " + (type(e).__name__ + ": " + str(e)).replace("\n", " ")[:200])


print("ready redis-py " + redis.__version__, flush=True)
with ThreadPoolExecutor(max_workers=cfg["workers"]) as pool:
    for line in sys.stdin:
        seq = line.strip()
        if seq:
            pool.submit(ping, seq)
