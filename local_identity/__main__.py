"""``python -m local_identity serve``: run the development identity provider.
``python -m local_identity token alice``: print an access token for a development user (or ``--backend``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from local_identity.directory import DEV_AUDIENCE, USERS

DEFAULT_PORT = 7075


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from local_identity.server import build_identity_app
    from local_servers.ports import listening_socket
    from service_platform.inherited_socket import inherited_listener
    from local_identity.signing_keys import SigningKeys
    from service_platform.logs import configure_json_logging

    configure_json_logging("local-identity")
    listener = inherited_listener() or listening_socket(args.port)
    issuer = args.issuer or f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = build_identity_app(SigningKeys(args.data_dir), issuer=issuer, audience=args.audience,
                             token_lifetime_seconds=args.token_lifetime)
    logging.getLogger("local_identity").info("identity provider ready", extra={"issuer": issuer})
    uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False)).run(sockets=[listener])
    return 0


def _token(args: argparse.Namespace) -> int:
    import httpx

    from local_identity.client import development_token

    try:
        print(development_token(args.url, None if args.backend else args.user))
    except httpx.HTTPError as error:
        print(f"error: the identity provider at {args.url} did not give a token ({error}); "
              "start the system with scripts/run first", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_identity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the identity provider")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one")
    serve.add_argument("--data-dir", type=Path, default=Path(".local/identity"), help="where the signing keys live")
    serve.add_argument("--issuer", help="the issuer URL (default http://127.0.0.1:<port>)")
    serve.add_argument("--audience", default=DEV_AUDIENCE, help=f"the API's audience (default {DEV_AUDIENCE})")
    serve.add_argument("--token-lifetime", type=int, default=3600, help="seconds a token is valid (default 3600)")
    token = commands.add_parser("token", help="print an access token from the running identity provider")
    token.add_argument("user", nargs="?", default="alice", choices=sorted(USERS), help="development user (default alice)")
    token.add_argument("--backend", action="store_true", help="an app-only token of the backend client instead")
    token.add_argument("--url", default=os.environ.get("LOCAL_IDENTITY_URL", f"http://127.0.0.1:{DEFAULT_PORT}"),
                       help="the identity provider's URL (default $LOCAL_IDENTITY_URL, else port 7075)")
    args = parser.parse_args(argv)
    return _serve(args) if args.command == "serve" else _token(args)


if __name__ == "__main__":
    sys.exit(main())
