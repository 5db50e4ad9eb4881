//! Request parsing: head with `httparse`, body by `Content-Length`.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroize;

use super::{HttpError, Limits};

/// Request method (RFC 9110 §9). Methods the router never serves are folded into `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// Any other syntactically valid method.
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// One header field. The name is stored lower-cased (field names are case-insensitive,
/// RFC 9110 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Lower-cased field name.
    pub name: String,
    /// Raw field value (not necessarily UTF-8).
    pub value: Vec<u8>,
}

/// A complete request: head and body.
///
/// The body can hold key material (Import, Register): it is zeroized on drop and never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path part of the origin-form request target, still percent-encoded, always starting with `/`.
    pub path: String,
    /// Query part of the request target (after `?`), if any.
    pub query: Option<String>,
    /// HTTP minor version: 0 or 1.
    pub minor_version: u8,
    /// Header fields in the order received.
    pub headers: Vec<Header>,
    /// Body (exactly `Content-Length` bytes).
    pub body: Vec<u8>,
    /// Whether the client wants the connection kept open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
}

impl Request {
    /// First value of a header field, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("minor_version", &self.minor_version)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

/// Try to frame one request at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((request, used)))` when a whole request
/// (head and body) is present in `buf[..used]`, or an error when the bytes can never become a
/// valid request within `limits`. Errors are reported as early as possible: an oversized
/// `Content-Length` is refused as soon as the head is complete, before the body arrives.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    // Only look at the first `max_head_bytes`: a head that does not end within them is refused.
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head_bytes {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::UnsupportedVersion),
        Err(e) => return Err(HttpError::Malformed(httparse_reason(e))),
    };

    let method = Method::parse(req.method.ok_or(HttpError::Malformed("no method"))?);
    let target = req.path.ok_or(HttpError::Malformed("no request target"))?;
    let minor_version = req.version.ok_or(HttpError::UnsupportedVersion)?;
    if minor_version > 1 {
        return Err(HttpError::UnsupportedVersion);
    }
    // Origin-form only (RFC 9112 §3.2.1): absolute-form and `*` are not served here.
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("request target must start with '/'"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(String::from(q))),
        None => (target, None),
    };

    let mut content_length: Option<usize> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            // Repeated Content-Length fields must agree (RFC 9112 §6.3 item 5).
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::LengthRequired);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    connection_keep_alive = true;
                }
            }
        }
        headers.push(Header {
            name: h.name.to_ascii_lowercase(),
            value: Vec::from(h.value),
        });
    }

    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body_bytes {
        return Err(HttpError::BodyTooLarge);
    }
    let total = head_len
        .checked_add(body_len)
        .ok_or(HttpError::BodyTooLarge)?;
    let Some(body) = buf.get(head_len..total) else {
        return Ok(None);
    };
    let keep_alive = if minor_version == 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };
    Ok(Some((
        Request {
            method,
            path: String::from(path),
            query,
            minor_version,
            headers,
            body: Vec::from(body),
            keep_alive,
        },
        total,
    )))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), without overflow.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    const BAD: HttpError = HttpError::Malformed("invalid Content-Length");
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(BAD);
    }
    let mut n: usize = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(BAD);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(HttpError::BodyTooLarge)?;
    }
    Ok(n)
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Decode `%XX` escapes of one path segment (RFC 3986 §2.1) into a UTF-8 string.
pub fn percent_decode(segment: &str) -> Result<String, HttpError> {
    const BAD: HttpError = HttpError::Malformed("invalid percent-encoding in path");
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_val(*c)).ok_or(BAD)?;
            let lo = bytes.get(i + 2).and_then(|c| hex_val(*c)).ok_or(BAD)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BAD)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_body_bytes: 16,
    };

    #[test]
    fn get_without_body() {
        let raw = b"GET /access/list/abc?x=1 HTTP/1.1\r\nHost: kms\r\n\r\n";
        let (req, used) = parse_request(raw, &LIMITS).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/access/list/abc");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.header("HOST"), Some(&b"kms"[..]));
        assert!(req.body.is_empty());
        assert!(req.keep_alive);
    }

    #[test]
    fn post_body_arrives_in_pieces() {
        let raw = b"POST /kmip/2_1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello GET";
        let full = raw.len() - 4;
        // Every strict prefix shorter than the full request is incomplete, not an error.
        for cut in 0..full {
            assert_eq!(
                parse_request(&raw[..cut], &LIMITS),
                Ok(None),
                "cut at {cut}"
            );
        }
        let (req, used) = parse_request(raw, &LIMITS).unwrap().unwrap();
        assert_eq!(used, full);
        assert_eq!(req.body, b"hello");
        assert_eq!(req.method, Method::Post);
    }

    #[test]
    fn pipelined_requests_are_framed_one_by_one() {
        let raw = b"GET /health HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\nConnection: close\r\n\r\n";
        let (a, used) = parse_request(raw, &LIMITS).unwrap().unwrap();
        assert_eq!(a.path, "/health");
        let (b, used2) = parse_request(&raw[used..], &LIMITS).unwrap().unwrap();
        assert_eq!(b.path, "/version");
        assert!(!b.keep_alive);
        assert_eq!(used + used2, raw.len());
    }

    #[test]
    fn http10_defaults_to_close() {
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        assert!(!parse_request(raw, &LIMITS).unwrap().unwrap().0.keep_alive);
        let raw = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(parse_request(raw, &LIMITS).unwrap().unwrap().0.keep_alive);
    }

    #[test]
    fn oversized_body_is_refused_before_it_arrives() {
        let raw = b"POST /kmip/2_1 HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(parse_request(raw, &LIMITS), Err(HttpError::BodyTooLarge));
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(parse_request(huge, &LIMITS), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn head_limits() {
        let mut long = Vec::from(&b"GET /"[..]);
        long.resize(300, b'a');
        assert_eq!(parse_request(&long, &LIMITS), Err(HttpError::HeadTooLarge));
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n";
        assert_eq!(parse_request(many, &LIMITS), Err(HttpError::TooManyHeaders));
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn malformed_heads() {
        for (raw, reason) in [
            (
                &b"\x00\x01\x02 garbage\r\n\r\n"[..],
                "invalid token in request line",
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                "conflicting Content-Length",
            ),
            (
                b"GET http://x/ HTTP/1.1\r\n\r\n",
                "request target must start with '/'",
            ),
        ] {
            assert_eq!(
                parse_request(raw, &LIMITS),
                Err(HttpError::Malformed(reason)),
                "{raw:?}"
            );
        }
        assert_eq!(HttpError::Malformed("x").status(), 400);
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n", &LIMITS),
            Err(HttpError::UnsupportedVersion)
        );
        assert_eq!(
            parse_request(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                &LIMITS
            ),
            Err(HttpError::LengthRequired)
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%5B%22t%22%5D").unwrap(), "[\"t\"]");
        assert_eq!(percent_decode("plain-uid").unwrap(), "plain-uid");
        for bad in ["%2", "%zz", "%FF"] {
            assert_eq!(
                percent_decode(bad),
                Err(HttpError::Malformed("invalid percent-encoding in path")),
                "{bad}"
            );
        }
    }
}
