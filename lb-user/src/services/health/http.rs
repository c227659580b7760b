//! The `http` and `https` checks (keepalived's `HTTP_GET` and `SSL_GET`):
//! one GET per URL, each over a connection of its own, every URL has to
//! answer with one of its status codes (and, with a digest, a body whose
//! MD5 is the digest).
//!
//! The HTTP exchange is hyper's HTTP/1.1 client; TLS is rustls (through
//! tokio-rustls, ring provider). As in keepalived, a server's certificate
//! is **not** verified unless asked: with [`Tls::ca_file`] it has to chain
//! to a certificate of that file and name the virtual host (else the
//! backend's address).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use md5::Digest as _;
use tokio_rustls::rustls;

use super::{CheckError, connect};

/// Bodies longer than this fail a digest check without being read further.
pub const MAX_BODY: usize = 4 << 20;

/// What an `http`/`https` check asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// `Some`: `https`.
    pub tls: Option<Tls>,
    /// The URLs asked, in order; all have to pass.
    pub urls: Vec<UrlCheck>,
    /// The `Host` header (and TLS server name); default: the backend's
    /// address.
    pub virtualhost: Option<String>,
}

/// TLS settings of an `https` check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Verify the server's certificate against the CA certificates (PEM)
    /// of this file; `None`: not verified (keepalived's `SSL_GET` does not
    /// verify either).
    pub ca_file: Option<PathBuf>,
}

/// One URL of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// Path (and query) requested.
    pub path: String,
    /// The status codes that pass.
    pub status: StatusCodes,
    /// MD5 of the body that passes (keepalived's `digest`), if any.
    pub digest: Option<[u8; 16]>,
}

/// A set of HTTP status codes: single codes and ranges (`200-299`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<(u16, u16)>);

impl StatusCodes {
    /// Exactly `code`.
    #[must_use]
    pub fn one(code: u16) -> Self {
        Self(vec![(code, code)])
    }

    /// The inclusive ranges (a single code is `(c, c)`), which must not be
    /// empty and each `lo <= hi`.
    ///
    /// # Errors
    /// A message when `ranges` is empty or a range is backwards or outside
    /// 100–999.
    pub fn new(ranges: Vec<(u16, u16)>) -> Result<Self, String> {
        if ranges.is_empty() {
            return Err("no status code".into());
        }
        if let Some((lo, hi)) = ranges
            .iter()
            .find(|(lo, hi)| lo > hi || *lo < 100 || *hi > 999)
        {
            return Err(if lo > hi {
                format!("{lo}-{hi} is backwards")
            } else {
                format!("{lo}-{hi} is not within 100-999")
            });
        }
        Ok(Self(ranges))
    }

    /// Whether `code` is one of them.
    #[must_use]
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }

    /// The ranges, a single code as `(c, c)`.
    #[must_use]
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

impl std::fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for StatusCodes {
    type Err = String;

    /// `200`, `200-299`, or several separated by commas or spaces.
    fn from_str(s: &str) -> Result<Self, String> {
        let code = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("{t:?} is not a status code"))
        };
        let ranges = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_once('-') {
                Some((lo, hi)) => Ok((code(lo)?, code(hi)?)),
                None => code(t).map(|c| (c, c)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(ranges)
    }
}

/// Parse a digest: 32 hex digits (either case).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_digest(s: &str) -> Result<[u8; 16], String> {
    let s = s.trim();
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not an MD5 digest (32 hex digits)"));
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Hex of a digest, as keepalived's `genhash` prints it.
#[must_use]
pub fn hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Check every URL of `check` against `addr:port` (from `bind` if set).
///
/// # Errors
/// The first URL that fails, and why ([`CheckError`]).
pub async fn probe(
    check: &HttpCheck,
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
) -> Result<(), CheckError> {
    let tls = match &check.tls {
        Some(t) => Some(connector(t)?),
        None => None,
    };
    let host = check.virtualhost.clone().unwrap_or_else(|| match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    });
    for url in &check.urls {
        let stream = connect(bind, SocketAddr::new(addr, port)).await?;
        let answer = match &tls {
            Some(tls) => {
                let name = server_name(check.virtualhost.as_deref(), addr);
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|source| CheckError::Tls { source })?;
                get(stream, &host, url).await?
            }
            None => get(stream, &host, url).await?,
        };
        judge(url, &answer)?;
    }
    Ok(())
}

/// What a server answered to one GET.
struct Answer {
    status: u16,
    /// The body, read only when a digest is checked.
    body: Option<Bytes>,
}

/// Whether `answer` passes `url`.
fn judge(url: &UrlCheck, answer: &Answer) -> Result<(), CheckError> {
    if !url.status.contains(answer.status) {
        return Err(CheckError::HttpStatus {
            path: url.path.clone(),
            status: answer.status,
            expected: url.status.to_string(),
        });
    }
    if let (Some(want), Some(body)) = (url.digest, &answer.body) {
        let got: [u8; 16] = md5::Md5::digest(body).into();
        if got != want {
            return Err(CheckError::Digest {
                path: url.path.clone(),
                got: hex(&got),
                expected: hex(&want),
            });
        }
    }
    Ok(())
}

/// GET `url` on `stream` (one request, then the connection closes).
async fn get<S>(stream: S, host: &str, url: &UrlCheck) -> Result<Answer, CheckError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| CheckError::Http { source })?;
    let request = hyper::Request::get(url.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "lbd-health")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| CheckError::BadRequest {
            path: url.path.clone(),
            reason: e.to_string(),
        })?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| CheckError::Http { source })?;
        let status = response.status().as_u16();
        let body = if url.digest.is_some() {
            let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY);
            let collected = limited.collect().await.map_err(|e| CheckError::Body {
                reason: e.to_string(),
            })?;
            Some(collected.to_bytes())
        } else {
            None
        };
        Ok(Answer { status, body })
    };
    // The connection runs beside the exchange and ends after the answer
    // (`Connection: close`); its own error shows up in the exchange's.
    let (answer, _) = tokio::join!(exchange, conn);
    answer
}

/// The TLS server name: the virtual host when it is a DNS name, else the
/// backend's address.
fn server_name(virtualhost: Option<&str>, addr: IpAddr) -> rustls::pki_types::ServerName<'static> {
    virtualhost
        .and_then(|h| rustls::pki_types::ServerName::try_from(h.to_owned()).ok())
        .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.into()))
}

/// A TLS connector for `tls`: verifying against its CA file, or not at all.
fn connector(tls: &Tls) -> Result<tokio_rustls::TlsConnector, CheckError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| CheckError::TlsConfig { source })?;
    let config = match &tls.ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let ca_error = |reason: String| CheckError::CaFile {
                path: path.clone(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
            {
                roots
                    .add(cert.map_err(|e| ca_error(e.to_string()))?)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no certificate in it".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts any server certificate (keepalived's `SSL_GET` without a CA),
/// but still checks the handshake's signatures, so the server holds the
/// key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_sets() {
        let s: StatusCodes = "200-299, 404".parse().unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(404));
        assert!(!s.contains(300) && !s.contains(403));
        assert_eq!(s.to_string(), "200-299, 404");
        assert_eq!(
            "301 302".parse::<StatusCodes>().unwrap().ranges(),
            [(301, 301), (302, 302)]
        );
        assert_eq!(
            "299-200".parse::<StatusCodes>().unwrap_err(),
            "299-200 is backwards"
        );
        assert_eq!("".parse::<StatusCodes>().unwrap_err(), "no status code");
        assert_eq!(
            "2xx".parse::<StatusCodes>().unwrap_err(),
            "\"2xx\" is not a status code"
        );
        assert_eq!(
            "1000".parse::<StatusCodes>().unwrap_err(),
            "1000-1000 is not within 100-999"
        );
    }

    #[test]
    fn digests() {
        let d = parse_digest("FF20ad2481f97b1754ef3e12ecd3a9cc").unwrap();
        assert_eq!(hex(&d), "ff20ad2481f97b1754ef3e12ecd3a9cc");
        assert!(parse_digest("ff20ad").is_err());
        assert!(parse_digest("zz20ad2481f97b1754ef3e12ecd3a9cc").is_err());
        // MD5 of the empty body, as `md5sum` prints it.
        let empty: [u8; 16] = md5::Md5::digest(b"").into();
        assert_eq!(hex(&empty), "d41d8cd98f00b204e9800998ecf8427e");
    }

    fn url(status: &str, digest: Option<&str>) -> UrlCheck {
        UrlCheck {
            path: "/".into(),
            status: status.parse().unwrap(),
            digest: digest.map(|d| parse_digest(d).unwrap()),
        }
    }

    #[test]
    fn answers_are_judged_by_status_then_digest() {
        let ok = Answer {
            status: 204,
            body: Some(Bytes::from_static(b"")),
        };
        assert!(judge(&url("200-299", None), &ok).is_ok());
        assert_eq!(
            judge(&url("200", None), &ok).unwrap_err().to_string(),
            "GET /: HTTP status 204, expected 200"
        );
        assert!(judge(&url("204", Some("d41d8cd98f00b204e9800998ecf8427e")), &ok).is_ok());
        assert_eq!(
            judge(&url("204", Some("ff20ad2481f97b1754ef3e12ecd3a9cc")), &ok)
                .unwrap_err()
                .to_string(),
            "GET /: body digest d41d8cd98f00b204e9800998ecf8427e, expected ff20ad2481f97b1754ef3e12ecd3a9cc"
        );
    }
}
