//! The `smtp` check (keepalived's `SMTP_CHECK`, check/check_smtp.c):
//! connect, expect a `220` greeting, send `HELO name`, expect `250`, send
//! `QUIT`. A reply may span lines (`250-...` then `250 ...`); its code is
//! the last line's. Lines are read with a bound: a server that talks
//! without end fails the check, and the caller's timeout covers one that
//! says nothing.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use super::CheckError;

/// keepalived's `helo_name` default (`SMTP_DEFAULT_HELO`), kept so mail
/// servers that allow keepalived's checks allow lb's.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// The longest reply line read (RFC 5321: 512 bytes with CRLF).
const MAX_LINE: usize = 1024;
/// The most lines of one reply.
const MAX_LINES: usize = 64;

/// What an `smtp` check says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCheck {
    /// The name after `HELO`.
    pub helo: String,
}

/// One reply line: its code, and whether more lines follow (`250-`).
/// `None`: not a reply line (keepalived: three digits, then a space or
/// the end).
#[must_use]
pub fn reply_line(line: &str) -> Option<(u16, bool)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let more = match line.as_bytes().get(3) {
        None | Some(b' ') => false,
        Some(b'-') => true,
        Some(_) => return None,
    };
    Some((code.parse().ok()?, more))
}

/// Read one reply (all its lines): its code and last line.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    step: &'static str,
) -> Result<(u16, String), CheckError> {
    for _ in 0..MAX_LINES {
        let mut buf = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|source| CheckError::SmtpIo { step, source })?;
        let line = String::from_utf8_lossy(&buf).into_owned();
        if n == 0 {
            return Err(CheckError::Smtp {
                step,
                reply: "connection closed".into(),
            });
        }
        if !buf.ends_with(b"\n") {
            return Err(CheckError::Smtp {
                step,
                reply: format!("a line longer than {MAX_LINE} bytes"),
            });
        }
        match reply_line(&line) {
            Some((_, true)) => {}
            Some((code, false)) => return Ok((code, line.trim_end().to_owned())),
            None => {
                return Err(CheckError::Smtp {
                    step,
                    reply: format!("not a reply: {:?}", line.trim_end()),
                });
            }
        }
    }
    Err(CheckError::Smtp {
        step,
        reply: format!("more than {MAX_LINES} lines"),
    })
}

/// Check the SMTP server at `addr:port`, from `bind` if set.
///
/// # Errors
/// [`CheckError::Connect`], [`CheckError::SmtpIo`], or
/// [`CheckError::Smtp`] naming the step (greeting, HELO) and the reply.
pub async fn probe(
    check: &SmtpCheck,
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
) -> Result<(), CheckError> {
    let stream = super::connect(bind, SocketAddr::new(addr, port)).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let expect = |(code, line): (u16, String), want: u16, step| {
        if code == want {
            Ok(())
        } else {
            Err(CheckError::Smtp { step, reply: line })
        }
    };
    expect(reply(&mut r, "greeting").await?, 220, "greeting")?;
    let helo = format!("HELO {}\r\n", check.helo);
    w.write_all(helo.as_bytes())
        .await
        .map_err(|source| CheckError::SmtpIo {
            step: "HELO",
            source,
        })?;
    expect(reply(&mut r, "HELO").await?, 250, "HELO")?;
    // keepalived passes once QUIT is answered, whatever the answer; a
    // server that closes at once passes too.
    if w.write_all(b"QUIT\r\n").await.is_ok() {
        let _ = reply(&mut r, "QUIT").await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_as_keepalived_reads_them() {
        assert_eq!(reply_line("220 mail.lb.test ESMTP\r\n"), Some((220, false)));
        assert_eq!(reply_line("250-PIPELINING\r\n"), Some((250, true)));
        assert_eq!(reply_line("250\r\n"), Some((250, false)));
        for bad in ["", "22", "2x0 hi", "220x", "hello"] {
            assert_eq!(reply_line(bad), None, "{bad:?}");
        }
    }

    /// A one-connection server answering each of `replies` after reading
    /// a line (the first one at once); what the client sent.
    async fn server(
        replies: &'static [&'static str],
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let mut got = Vec::new();
            for (i, reply) in replies.iter().enumerate() {
                if i > 0 {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    got.push(line.trim_end().to_owned());
                }
                if w.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
            got
        });
        (port, task)
    }

    async fn check(replies: &'static [&'static str]) -> (Result<(), String>, Vec<String>) {
        let (port, task) = server(replies).await;
        let c = SmtpCheck {
            helo: "lb.test".into(),
        };
        let result = probe(&c, None, "127.0.0.1".parse().unwrap(), port)
            .await
            .map_err(|e| e.to_string());
        (result, task.await.unwrap())
    }

    #[tokio::test]
    async fn greeting_helo_and_quit() {
        let (r, sent) = check(&[
            "220-mail.lb.test ESMTP\r\n220 ready\r\n",
            "250 hello\r\n",
            "221 bye\r\n",
        ])
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(sent, ["HELO lb.test", "QUIT"]);
        // A server that closes after HELO's answer passes too.
        let (r, _) = check(&["220 ready\r\n", "250 hello\r\n"]).await;
        assert_eq!(r, Ok(()));
    }

    #[tokio::test]
    async fn a_bad_greeting_or_helo_answer_fails_with_the_reply() {
        let (r, sent) = check(&["554 no service\r\n"]).await;
        assert_eq!(r, Err("SMTP greeting: 554 no service".into()));
        assert!(sent.is_empty());
        let (r, _) = check(&["220 ready\r\n", "501 who are you\r\n"]).await;
        assert_eq!(r, Err("SMTP HELO: 501 who are you".into()));
        let (r, _) = check(&["SSH-2.0-OpenSSH\r\n"]).await;
        assert_eq!(
            r,
            Err("SMTP greeting: not a reply: \"SSH-2.0-OpenSSH\"".into())
        );
        let (r, _) = check(&[]).await;
        assert_eq!(r, Err("SMTP greeting: connection closed".into()));
    }
}
