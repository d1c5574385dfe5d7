"""A real SMTP server for tests (aiosmtpd): every message it receives is written to
<dir>/<n>.eml, with its decoded text part in <dir>/<n>.txt and its recipients in <dir>/<n>.to.
Prints the port it listens on, then serves until killed."""

import argparse
import email
import email.policy
import itertools
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller


class Capture:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        html = msg.get_body(preferencelist=("html",))
        with open(os.path.join(self.out_dir, f"{n}.eml"), "wb") as f:
            f.write(raw)
        with open(os.path.join(self.out_dir, f"{n}.to"), "w") as f:
            f.write(",".join(envelope.rcpt_tos))
        tmp = os.path.join(self.out_dir, f"{n}.txt.tmp")
        with open(tmp, "w") as f:
            f.write(f"Subject: {msg['subject']}\n")
            f.write(f"Has-Html: {html is not None}\n\n")
            f.write(text)
        # the .txt appears last, whole: readers wait for it
        os.rename(tmp, os.path.join(self.out_dir, f"{n}.txt"))
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    controller = Controller(Capture(args.dir), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
