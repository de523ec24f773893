"""A real RTSP server (GStreamer's, from Debian packages) for the live-source tests.

Runs under the *system* Python, where the `gi` bindings live (not in the venv):
    /usr/bin/python3 tests/rtsp_server.py PORT [--user U --password P] [--tls CERT KEY]
It serves a live test pattern at rtsp://127.0.0.1:PORT/cam (H.264, 320x240, 10 fps, a keyframe a
second; rtsps://, RTSP over TLS, with --tls), prints "ready" once it listens, and runs until
killed. Install: see TESTING.md or .ci/run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="PEM files: serve RTSP over TLS (rtsps://)")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    if args.user or args.tls:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        if args.user:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        else:
            auth.set_default_token(token)  # TLS only: everyone may watch
        if args.tls:
            pem = "".join(Path(path).read_text() for path in args.tls)
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_pem(pem, -1))
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
