"""A TCP relay to PostgreSQL that can go silent, as a cut network does.

``cut()``: from now on nothing is forwarded either way and nothing is closed (no FIN, no
RST), on the open connections and on new ones: each side waits for the other.
``release()``: the open connections are closed (the server notices its client is gone,
as its TCP keepalives would) and new ones are relayed again.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Blackhole:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silent = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._mutex = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.silent = True

    def release(self) -> None:
        with self._mutex:
            sockets, self._open = self._open, []
            self.silent = False
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.release()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._mutex:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.silent:      # swallow: neither forwarded nor answered
                    data = b""
                    if not src.recv(65536):
                        return
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            if not self.silent:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
