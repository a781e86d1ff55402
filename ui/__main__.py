"""Start the clinicians' chat UI (Gradio) in front of the gateway.

Usage::

    python -m ui                                     # http://127.0.0.1:7860, gateway at 127.0.0.1:8000
    python -m ui --port 7861 --gateway-url http://127.0.0.1:9000
    python -m ui --config configs/ui/default.yaml embedder=lexical
    python -m ui --demo-account                      # also create demo accounts on first start

Accounts come from ``python -m feedback.users add``. The UI never trains and never talks to an
engine directly: every answer comes through the gateway (``python -m serve``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.errors import OncoLoopError, cli_command
from core.settings import private_dir

DEMO_ACCOUNTS = (("clinician", "clinician"), ("reviewer", "reviewer"), ("admin", "admin"))
DEMO_FILE = "demo-accounts.txt"  # under $ONCOLOOP_HOME, readable by its owner only


def ensure_demo_accounts(store, home: Path) -> list[tuple[str, str, str]]:
    """Create the demo accounts that do not exist yet, each with a random password, and append them to
    ``home/demo-accounts.txt`` (mode 600); returns the ones created (username, role, password).

    No password is shared between deployments: a later start finds the accounts and creates nothing.
    """
    import secrets

    existing = {u.username for u in store.list_users()}
    created = [(u, role, secrets.token_urlsafe(12)) for u, role in DEMO_ACCOUNTS if u not in existing]
    if not created:
        return []
    private_dir(home)
    fd = os.open(home / DEMO_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        for username, role, password in created:
            store.add_user(username, password, role)
            f.write(f"{username}\t{role}\t{password}\n")
    os.chmod(home / DEMO_FILE, 0o600)
    return created


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 7860)")
    parser.add_argument("--gateway-url", help="the gateway (default http://127.0.0.1:8000)")
    parser.add_argument("--config", type=Path, help="a UIConfig YAML file")
    parser.add_argument("--demo-account", action="store_true",
                        help="create demo accounts clinician/reviewer/admin with random passwords if missing "
                             f"(printed once, kept in $ONCOLOOP_HOME/{DEMO_FILE})")
    parser.add_argument("overrides", nargs="*", help="key=value UIConfig overrides, e.g. embedder=lexical")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from clinics
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from feedback.scrub import scrub_logs

    scrub_logs()  # no identifier reaches a log line

    from core.config import load_config
    from feedback.store import FeedbackStore
    from ui.app import build_app
    from ui.config import UIConfig
    from ui.handlers import Handlers

    overrides = list(args.overrides) + [f"{k}={v}" for k, v in (("host", args.host), ("port", args.port),
                                                                ("gateway_url", args.gateway_url)) if v is not None]
    cfg = load_config(UIConfig, args.config, overrides)
    if cfg.embedder not in ("auto", "minilm", "lexical"):
        raise OncoLoopError(f"embedder must be auto, minilm or lexical, not {cfg.embedder!r}.")
    store = FeedbackStore.open()
    if args.demo_account:
        from core.settings import get_settings

        home = get_settings().home
        for username, role, password in ensure_demo_accounts(store, home):
            print(f"ui: created demo account {username} ({role}), password {password}", flush=True)
        print(f"ui: demo accounts and their passwords are in {home / DEMO_FILE} (readable by you only)", flush=True)
    if not store.list_users():
        print("ui: no accounts yet; add one with `python -m feedback.users add --username U --password P "
              "--role clinician` (or start with --demo-account)", file=sys.stderr, flush=True)
    app = build_app(Handlers.create(cfg, store))
    app.queue(default_concurrency_limit=cfg.concurrency, max_size=cfg.queue_size)
    print(f"ui: chat on http://{cfg.host}:{cfg.port} (gateway {cfg.gateway_url})", flush=True)
    try:
        app.launch(server_name=cfg.host, server_port=cfg.port, show_error=True, quiet=True, ssr_mode=False,
                   max_threads=max(40, cfg.concurrency + 8))
    except OSError as e:
        raise OncoLoopError(f"cannot listen on {cfg.host}:{cfg.port} ({e}); choose another --port.") from e
    return 0


if __name__ == "__main__":
    sys.exit(main())
