# The redis-py strategy's application instance (internal/lab/redispy.go).
# One process per instance: one redis.Redis with redis-py's default pool
# and retry settings, shared by the instance's clients as an application's
# threads share it. The lab asks for each PING on stdin ("SEQ\n") and reads
# the outcome on stdout ("SEQ ok" or "SEQ err MESSAGE"); it keeps the
# clients' timing (period, command timeout) and counts dials in the
# kernel. argv: host port workers.
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = redis.Redis(host=host, port=port)  # every other setting: redis-py's default
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
with ThreadPoolExecutor(max_workers=workers) as pool:
    for line in sys.stdin:
        seq = line.strip()
        if seq:
            pool.submit(ping, seq)
