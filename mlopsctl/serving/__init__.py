"""`mlopsctl serve`: a registered model as an HTTP prediction service.

    serve(options, on_ready=..., say=...)   blocks until SIGTERM/SIGINT, then stops gracefully

Layout: options.py (ServeOptions and their checks), supervisor.py (one worker, or N forked
workers on one port), worker.py (one worker: store, model or arms, logs, follower, the event
loop, the graceful stop), listen.py (the bound socket, SO_REUSEPORT), http.py (HTTP/1.1 on
asyncio), app.py (routes), codecs.py (MLflow and Open Inference Protocol inputs, signature
checks), predictor.py (the numpy fast path), logs.py (prediction and feedback logs to the
store), follow.py (alias and deployment-record following, smoke loads), arms.py (weighted sticky
arms and the deployment record), metrics.py (Prometheus counters shared across workers),
feedback.py (ground truth from files), smoke.py (the child-process smoke load).

One process by default. With ``workers > 1`` the parent binds the port and forks that many
workers before anything heavy is imported; each binds the same port with SO_REUSEPORT (the
kernel spreads connections), loads its own model, and has its own log writer and follower.
"""

from mlopsctl.serving.options import DEFAULT_MAX_BODY, ServeOptions, check_options
from mlopsctl.serving.supervisor import serve
from mlopsctl.serving.worker import SHUTDOWN_GRACE_S

__all__ = ["DEFAULT_MAX_BODY", "SHUTDOWN_GRACE_S", "ServeOptions", "check_options", "serve"]
