//! Response encoding (RFC 9112 §4 status line, §6 `Content-Length` framing).

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroize;

use super::reason_phrase;

/// Content type of JSON bodies.
pub const JSON: &str = "application/json";
/// Content type of binary TTLV bodies (`POST /kmip`).
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Content type of plain-text (error message) bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response to encode. The body can hold key material (Get/Export): zeroized on drop and never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Send `Connection: close`; the caller closes the connection after writing this response.
    pub close: bool,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: JSON,
            body,
            close: false,
        }
    }

    /// A binary (TTLV) response.
    pub fn binary(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: OCTET_STREAM,
            body,
            close: false,
        }
    }

    /// A plain-text response (error messages, Cosmian style: the body is the message).
    pub fn text(status: u16, message: &str) -> Self {
        Response {
            status,
            content_type: TEXT,
            body: Vec::from(message.as_bytes()),
            close: false,
        }
    }

    /// Append the encoded response (status line, headers, body) to `out` (growing it with
    /// [`crate::wipe::extend`]: earlier responses in `out` can hold key material).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = fmt::Write::write_fmt(
            &mut VecWriter(out),
            format_args!(
                "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{}\r\n",
                self.status,
                reason_phrase(self.status),
                self.content_type,
                self.body.len(),
                if self.close {
                    "connection: close\r\n"
                } else {
                    ""
                },
            ),
        );
        crate::wipe::extend(out, &self.body);
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .field("close", &self.close)
            .finish()
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::wipe::extend(self.0, s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpError, Limits, parse_request};

    #[test]
    fn encode_exact_bytes() {
        let mut out = Vec::from(&b"prefix|"[..]);
        Response::json(200, Vec::from(&b"{\"a\":1}"[..])).encode(&mut out);
        assert_eq!(
            out,
            b"prefix|HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let mut out = Vec::new();
        let mut r = Response::text(413, "too big");
        r.close = true;
        r.encode(&mut out);
        assert_eq!(
            out,
            &b"HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 7\r\nconnection: close\r\n\r\ntoo big"[..]
        );
    }

    #[test]
    fn encoded_response_frames_like_a_message() {
        // The response framing is the same as the request framing: parse it back with httparse.
        let mut out = Vec::new();
        Response::text(422, "bad").encode(&mut out);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = resp.parse(&out).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(resp.code, Some(422));
        assert_eq!(&out[n..], b"bad");
        // And a request parser refuses it (status line is not a request line).
        assert_eq!(
            parse_request(&out, &Limits::DEFAULT),
            Err(HttpError::Malformed("invalid token in request line"))
        );
    }
}
