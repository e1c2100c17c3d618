//! The email channel against a real SMTP server on loopback (aiosmtpd, run by
//! `tests/smtp_server.py`): AUTH with the channel's password over STARTTLS and over
//! implicit TLS (`smtps://`), both trusting the test's CA from `ca_file`. A target
//! flips down and up with three workers: each server keeps one message per flip, with
//! From, To, Subject, a plain-text and an HTML part naming the target and its state.
//! A channel with a wrong password records a failed delivery whose error gives the
//! server's reply; the password shows in no log at TRACE, `/api/*` answer or
//! `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    Announced, Dir, RedisServer, certificates, client, eventually, require_tool, role_process,
    try_json,
};
use crate::targets::Target;

pub(crate) const PASSWORD: &str = "smtp-pa55-3c9e";
const WRONG: &str = "wrong-pa55-77aa";

/// One run of `tests/smtp_server.py`: it keeps each message in `dir` as `<n>.eml`.
pub(crate) struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    _server: Announced,
}

impl SmtpServer {
    /// Starts a server in `mode` (`starttls` or `smtps`) with the certificate and key
    /// `tls` (made by [`certificates`]), keeping messages in `dir`'s folder `name`;
    /// with `fail_first` the first DATA is answered 451.
    pub fn start(dir: &Dir, name: &str, mode: &str, tls: (&Path, &Path), fail_first: bool) -> Self {
        let python = require_tool("python3", "python3");
        let module = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .expect("run python3");
        assert!(
            module.status.success(),
            "the Python module aiosmtpd is not installed: run tests/run.sh \
             (it installs what the tests need) or `python3 -m pip install aiosmtpd`"
        );
        let (cert, key) = tls;
        let kept = dir.path(name);
        std::fs::create_dir_all(&kept).expect("mkdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg(&kept)
            .args(["svc", PASSWORD])
            .arg(cert)
            .arg(key)
            .arg(mode);
        if fail_first {
            command.arg("fail-first");
        }
        let server = Announced::spawn(command, |line| {
            line.strip_prefix("listening on ")?.trim().parse().ok()
        });
        SmtpServer {
            port: server.port,
            dir: kept,
            _server: server,
        }
    }

    /// The messages kept so far, in the order they came.
    pub fn messages(&self) -> Vec<String> {
        (1..)
            .map_while(|n| std::fs::read_to_string(self.dir.join(format!("{n}.eml"))).ok())
            .collect()
    }

    /// The AUTH attempts so far: `ok svc` or `bad svc`, one a line.
    pub fn auth_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("auth.log")).unwrap_or_default()
    }
}

/// The value of `name` in a message's header (unfolded).
pub(crate) fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

#[tokio::test]
async fn a_flip_sends_one_email_per_change_over_starttls_and_smtps() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    let dir = Dir::new("email");
    let (ca, cert, key) = certificates(&dir);
    let starttls = SmtpServer::start(&dir, "starttls", "starttls", (&cert, &key), false);
    let smtps = SmtpServer::start(&dir, "smtps", "smtps", (&cert, &key), false);
    let ca = ca.display().to_string();
    let file = dir.path("targets.yaml");
    std::fs::write(
        &file,
        format!(
            "notify:
  - name: mail
    kind: email
    url: 'smtp://svc:${{SMTP_PASSWORD}}@127.0.0.1:{}?tls=required'
    from: 'svc <svc@example.com>'
    to: [oncall@example.com, ops@example.com]
    ca_file: {ca}
  - name: secure
    kind: email
    url: 'smtps://svc:${{SMTP_PASSWORD}}@127.0.0.1:{}'
    from: svc@example.com
    to: [oncall@example.com]
    subject: '[shop] web changed'
    ca_file: {ca}
  - name: badmail
    kind: email
    url: 'smtps://svc:${{WRONG_PASSWORD}}@127.0.0.1:{}'
    from: svc@example.com
    to: [oncall@example.com]
    ca_file: {ca}
    on: [down]
targets:
  - {{name: web, url: '{}', interval: 1s, failure_threshold: 1}}
",
            starttls.port, smtps.port, smtps.port, target.url
        ),
    )
    .expect("write");
    let file = file.display().to_string();
    let env = [
        ("TARGETS_FILE", file.as_str()),
        ("WORKER_INTERVAL", "1s"),
        ("REFRESH_PERIOD", "1s"),
        ("SMTP_PASSWORD", PASSWORD),
        ("WRONG_PASSWORD", WRONG),
        ("RUST_LOG", "trace"),
    ];
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(role_process("worker", &redis, &env).await);
    }
    let dashboard = role_process("dashboard", &redis, &env).await;

    let state = || async {
        let answer = try_json(&client(), &dashboard.url("/api/health-check")).await?;
        answer["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "web")
            .and_then(|s| s["status"].as_str().map(str::to_owned))
    };
    for want in ["healthy", "down", "healthy"] {
        if want == "down" {
            target.set(500);
        } else {
            target.set(200);
        }
        eventually(Duration::from_secs(30), want, || async {
            (state().await.as_deref() == Some(want)).then_some(())
        })
        .await;
    }
    for server in [&starttls, &smtps] {
        let deliveries = dashboard.url("/api/notifications");
        let messages = eventually(Duration::from_secs(30), "a message per change", || async {
            (server.messages().len() >= 2).then_some(())
        });
        if tokio::time::timeout(Duration::from_secs(31), messages)
            .await
            .is_err()
        {
            let said = try_json(&client(), &deliveries).await;
            panic!("no message per change; deliveries: {said:?}");
        }
    }

    let mail = starttls.messages();
    assert_eq!(mail.len(), 2, "one per change: {mail:?}");
    let (down, up) = (&mail[0], &mail[1]);
    assert_eq!(
        header(down, "From").as_deref(),
        Some("svc <svc@example.com>")
    );
    assert_eq!(
        header(down, "To").as_deref(),
        Some("oncall@example.com, ops@example.com")
    );
    let subject = header(down, "Subject").unwrap_or_default();
    assert!(subject.starts_with("web is down (was up)"), "{subject}");
    assert!(
        header(up, "Subject").is_some_and(|s| s.starts_with("web is up (was down)")),
        "{up}"
    );
    for message in [down, up] {
        assert!(
            header(message, "Content-Type").is_some_and(|t| t.starts_with("multipart/alternative")),
            "{message}"
        );
        assert!(
            message.contains("text/plain") && message.contains("text/html"),
            "{message}"
        );
        assert!(message.contains("Target: web"), "{message}");
        assert!(message.contains("<th"), "the HTML part's table: {message}");
    }
    assert!(down.contains("State: down (was up)"), "{down}");
    assert!(up.contains("State: up (was down)"), "{up}");
    assert_ne!(header(down, "Message-ID"), header(up, "Message-ID"));

    let secure = smtps.messages();
    assert_eq!(secure.len(), 2, "one per change: {secure:?}");
    assert_eq!(
        header(&secure[0], "Subject").as_deref(),
        Some("[shop] web changed")
    );
    // Each kept message came after AUTH with the right password, which is all the
    // server accepts.
    for server in [&starttls, &smtps] {
        for n in 1..=2 {
            let who = std::fs::read_to_string(server.dir.join(format!("{n}.auth")));
            assert_eq!(who.ok().as_deref(), Some("svc"));
        }
    }

    // The wrong password: a failed delivery, saying why, on the dashboard.
    let failed = eventually(Duration::from_secs(30), "the failed delivery", || async {
        let answer = try_json(&client(), &dashboard.url("/api/notifications")).await?;
        answer["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["channel"] == "badmail" && d["result"] == "failed")
            .cloned()
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("535"), "the server's reply: {error}");
    assert!(error.contains("smtps://127.0.0.1"), "{error}");
    assert!(smtps.auth_log().contains("bad svc"), "{}", smtps.auth_log());

    // Neither password anywhere svc speaks.
    let mut said = Vec::new();
    for path in ["/api/notifications", "/api/health-check", "/", "/metrics"] {
        said.push(crate::helpers::get_text(&dashboard.url(path)).await);
    }
    for worker in &workers {
        said.push(crate::helpers::get_text(&worker.url("/metrics")).await);
        said.push(worker.output());
    }
    said.push(dashboard.output());
    assert!(
        said.iter().any(|text| text.contains("TRACE")),
        "the workers log at TRACE"
    );
    for text in &said {
        for secret in [PASSWORD, WRONG] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }
}
