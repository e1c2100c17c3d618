"""A loopback SMTP server for the email channel's tests (aiosmtpd).

Usage: smtp_server.py DIR USER PASSWORD CERT KEY MODE [FAIL_FIRST]

MODE is `starttls` (plain, STARTTLS required before AUTH) or `smtps` (TLS from the
first byte). AUTH PLAIN/LOGIN must succeed with USER and PASSWORD before MAIL. Each
message received is written to DIR as `<n>.eml`, with the authenticated user in
`<n>.auth`; each AUTH attempt is appended to DIR/auth.log as `ok USER` or `bad USER`
(never the password). With FAIL_FIRST set, the first DATA is answered
`451 4.3.0 try again later` and nothing is kept. Prints `listening on PORT` once
bound to 127.0.0.1 on a free port.
"""

import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    directory, user, password, cert, key, mode = sys.argv[1:7]
    fail_first = len(sys.argv) > 7
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = {"received": 0, "failed": False}

    def authenticate(server, session, envelope, mechanism, auth_data):
        good = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else "?"
        with open(os.path.join(directory, "auth.log"), "a") as log:
            log.write(f"{'ok' if good else 'bad'} {login}\n")
        if good:
            return AuthResult(success=True, auth_data=login)
        # Not `handled`: aiosmtpd answers 535 itself.
        return AuthResult(success=False, handled=False)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if fail_first and not state["failed"]:
                state["failed"] = True
                return "451 4.3.0 try again later"
            state["received"] += 1
            n = state["received"]
            path = os.path.join(directory, f"{n}.eml")
            with open(path + ".part", "wb") as out:
                out.write(envelope.original_content)
            with open(os.path.join(directory, f"{n}.auth"), "w") as out:
                out.write(str(session.auth_data))
            os.rename(path + ".part", path)
            return "250 2.0.0 kept"

    def factory():
        if mode == "smtps":
            return SMTP(Handler(), authenticator=authenticate, auth_required=True,
                        auth_require_tls=False)
        return SMTP(Handler(), authenticator=authenticate, auth_required=True,
                    tls_context=context, require_starttls=True)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        factory, "127.0.0.1", 0, ssl=context if mode == "smtps" else None))
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
