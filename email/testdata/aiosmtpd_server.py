#!/usr/bin/env python3
"""An SMTP server for otpd's email tests: aiosmtpd, an implementation
independent of the Go client and of go-smtp.

It listens on 127.0.0.1:PORT, requires STARTTLS (with the given certificate
and key) before anything else, then AUTH (PLAIN or LOGIN, only over TLS) with
the one user and password given, and stores every message accepted in the
Maildir MAILDIR (files in MAILDIR/new). It prints "ready" once it accepts
connections and runs until its standard input closes or it is killed.

    aiosmtpd_server.py --port PORT --cert CERT.pem --key KEY.pem \
        --maildir DIR --user USER [--exclude-auth MECHANISM]...

The password is read from the environment variable AIOSMTPD_PASSWORD, so
that it does not show in the process list.
"""

import argparse
import hmac
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--exclude-auth", action="append", default=[],
                   help="an AUTH mechanism not to offer (PLAIN or LOGIN)")
    args = p.parse_args()
    password = os.environ.get("AIOSMTPD_PASSWORD", "").encode()
    user = args.user.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, user)
            and hmac.compare_digest(auth_data.password, password)
        )
        # handled=False makes aiosmtpd answer a failure itself (535 5.7.8);
        # its default, True, would leave the client waiting for an answer.
        return AuthResult(success=ok, handled=False)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)

    controller = Controller(
        Mailbox(args.maildir),
        hostname="127.0.0.1",
        port=args.port,
        server_hostname="aiosmtpd.test",
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=args.exclude_auth,
    )
    controller.start()
    try:
        print("ready", flush=True)
        # Block until the Go test closes our standard input (or kills us).
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
