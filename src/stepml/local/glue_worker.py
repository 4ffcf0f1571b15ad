"""One long-lived Glue job runner: runs job scripts one after another in the same process.

Started by ``stepml.local.glue`` as ``python -m stepml.local.glue_worker``. A Glue script gets
its SparkSession with ``getOrCreate()`` and leaves it running, so the second script in this
process finds a JVM whose classes are loaded, whose generated code is cached and whose JIT
has warmed up: a job that takes 25-45 s in a new JVM takes 3-6 s here. The price is that
scripts share one driver JVM (never at the same time), which AWS Glue does not do; the
engine documents it.

The protocol is one JSON object per line: a request ``{"script", "argv", "cwd", "log"}`` on
stdin, a reply ``{"exit_code": N}`` on the original stdout. During a run, file descriptors 1
and 2 point at the run's log file, so the script's prints, its logging and its traceback land
there as they would in the job's CloudWatch log.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from typing import Any


def _run_script(request: dict[str, Any]) -> int:
    # The run's own variables (its role's credentials) for this run only.
    saved = {name: os.environ.get(name) for name in request.get("environment", {})}
    os.environ.update(request.get("environment", {}))
    try:
        return _run_script_file(request)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_script_file(request: dict[str, Any]) -> int:
    script = request["script"]
    sys.argv = [script, *request["argv"]]
    os.chdir(request["cwd"])
    # As `python script.py` would: the script's folder first on the import path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # a script's failure is the run's result, never the worker's
        traceback.print_exc()
        return 1
    finally:
        sys.path.pop(0)
    return 0


def serve(requests: Any, replies: Any) -> None:
    """Run each request's script with fds 1 and 2 on its log; reply with its exit code."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        saved = (os.dup(1), os.dup(2))
        with open(request["log"], "ab", buffering=0) as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                exit_code = _run_script(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        replies.write(json.dumps({"exit_code": exit_code}) + "\n")
        replies.flush()


def main() -> None:
    # The protocol owns the original stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
