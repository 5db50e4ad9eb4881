//! HTTP/1.1 framing (sans-IO): request head/body parsing with limits, response encoding.
//!
//! [`parse_request`] takes the bytes received so far and returns either "need more bytes"
//! (`Ok(None)`), one complete [`Request`] plus the number of bytes it used, or a typed
//! [`HttpError`] that maps to a 4xx/5xx status. [`Response::encode`] writes a response into a
//! caller-owned buffer. Nothing here reads a socket.
//!
//! Message framing follows RFC 9112 (HTTP/1.1): §2.2 (message parsing), §6.3 (message body
//! length: a request without `Content-Length` or `Transfer-Encoding` has no body), §9.3
//! (persistent connections). Only `Content-Length` bodies are accepted: a request with
//! `Transfer-Encoding` gets 411 Length Required (RFC 9110 §15.5.12).

mod request;
mod response;

pub use request::{Header, Method, Request, parse_request, percent_decode};
pub use response::{JSON, OCTET_STREAM, Response, TEXT};

use core::fmt;

/// Resource limits applied while parsing one request. Requests beyond them are refused before
/// any allocation proportional to their size happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the request line plus headers, including the final empty line.
    pub max_head_bytes: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
    /// Maximum `Content-Length` accepted (larger bodies get 413).
    pub max_body_bytes: usize,
}

impl Limits {
    /// 16 KiB head, 64 headers, 1 MiB body.
    pub const DEFAULT: Limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 64,
        max_body_bytes: 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a request could not be framed. Every variant maps to an HTTP status
/// ([`HttpError::status`]); after any of them the connection must be closed, because the
/// position of the next request in the byte stream is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request line or a header is not valid HTTP/1.x syntax (400).
    Malformed(&'static str),
    /// The head (request line + headers) is larger than [`Limits::max_head_bytes`] (431).
    HeadTooLarge,
    /// More header fields than [`Limits::max_headers`] (431).
    TooManyHeaders,
    /// `Content-Length` larger than [`Limits::max_body_bytes`] (413).
    BodyTooLarge,
    /// The request uses `Transfer-Encoding` (chunked bodies are not supported) (411).
    LengthRequired,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    UnsupportedVersion,
}

impl HttpError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::LengthRequired => 411,
            HttpError::UnsupportedVersion => 505,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(what) => write!(f, "malformed HTTP request: {what}"),
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::TooManyHeaders => f.write_str("too many request headers"),
            HttpError::BodyTooLarge => f.write_str("request body too large"),
            HttpError::LengthRequired => {
                f.write_str("a Content-Length is required (Transfer-Encoding is not supported)")
            }
            HttpError::UnsupportedVersion => f.write_str("unsupported HTTP version"),
        }
    }
}

impl core::error::Error for HttpError {}

/// The reason phrase for the status codes this crate emits (RFC 9110 §15).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
