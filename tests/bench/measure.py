#!/usr/bin/python3
"""Runs a command and prints its wall time, CPU time (user+sys) and peak RSS as JSON.

Usage: measure.py LABEL -- COMMAND ARGS...
"""
import json
import resource
import subprocess
import sys
import time

label = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
t0 = time.monotonic()
p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "label": label,
    "exit": p.returncode,
    "wall_s": round(wall, 3),
    "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
    "rss_mib": round(ru.ru_maxrss / 1024, 1),
}), flush=True)
if p.returncode != 0:
    sys.stderr.write(p.stderr.decode(errors="replace")[-4000:])
    sys.exit(p.returncode)
