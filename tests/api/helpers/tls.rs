//! Certificates for the tests' own TLS servers.

use std::path::PathBuf;

use super::{Announced, Dir, require_tool};

/// `openssl s_server` on 127.0.0.1 answering 200 over TLS with a certificate for
/// localhost and 127.0.0.1, valid for one day, made by [`certificates`] in a
/// directory of its own; `ca` is its CA. Killed on drop.
pub struct TlsServer {
    pub server: Announced,
    pub ca: PathBuf,
    _dir: Dir,
}

impl TlsServer {
    pub fn start() -> Self {
        let dir = Dir::new("tls-server");
        let (ca, cert, key) = certificates(&dir);
        let mut command = std::process::Command::new(require_tool("openssl", "openssl"));
        // Port 0: s_server binds a free port and names it (`ACCEPT 127.0.0.1:41234`).
        command
            .args(["s_server", "-www", "-accept", "127.0.0.1:0", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key);
        let server = Announced::spawn(command, |line| {
            line.strip_prefix("ACCEPT ")?
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(|a| a.port())
        });
        TlsServer {
            server,
            ca,
            _dir: dir,
        }
    }
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, made with openssl.
pub fn certificates(dir: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&openssl)
            .args(args)
            .current_dir(&dir.0)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=svc test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (
        dir.path("ca.pem"),
        dir.path("server.pem"),
        dir.path("server.key"),
    )
}
