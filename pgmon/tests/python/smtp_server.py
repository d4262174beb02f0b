"""A real SMTP server for pgmon's alerting test (aiosmtpd): STARTTLS required before anything
else, sign-in required (only over TLS), each message received written to a directory.

Usage: smtp_server.py CERT KEY USER PASSWORD OUT_DIR PORT
Prints "ready" once it accepts connections; runs until killed.
"""

import pathlib
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

certificate, key, user, password, out_dir, port = sys.argv[1:7]


class SaveMessages:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        content = envelope.original_content or envelope.content
        pathlib.Path(out_dir, f"{self.count:04}.eml").write_bytes(content)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    valid = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=valid, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(certificate, key)
controller = Controller(
    SaveMessages(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    auth_required=True,
    auth_require_tls=True,
    authenticator=authenticate,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
