"""The container health check of every ordermesh process (deploy/docker/Dockerfile's HEALTHCHECK, the health checks
of deploy/compose.yaml): exit 0 when the process's ``/healthz`` answers 200 (it is connected to NATS), 1 otherwise.

The port is the image's convention, 9100, unless ``ORDERMESH_HEALTH_PORT`` says otherwise. Standard library only:
it runs in the image's interpreter every few seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    host = os.environ.get("ORDERMESH_HEALTH_HOST", "127.0.0.1")
    port = os.environ.get("ORDERMESH_HEALTH_PORT", "9100")
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
