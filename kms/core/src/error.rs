//! The public error of the KMS and its single mapping to HTTP statuses and KMIP result
//! reasons (the way the Cosmian KMS answers: KMIP errors are 422 with the message as body).
//!
//! Messages are static or built from static parts: they never echo request data, key
//! material or plaintexts.

use core::fmt;

use crate::crypto::CryptoError;
use crate::kmip::binary::{BinaryError, EncodeError};
use crate::kmip::json::JsonError;
use crate::kmip::ops::RequestError;
use crate::kmip::ttlv::FieldError;
use crate::kmip::types::ResultReason;
use crate::object::DecodeError;
use crate::store::StoreError;

/// What a KMIP failure says, beyond its reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A fixed message.
    Msg(&'static str),
    /// A request field problem.
    Field(FieldError),
    /// A cryptographic failure.
    Crypto(CryptoError),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Msg(m) => f.write_str(m),
            Detail::Field(e) => fmt::Display::fmt(e, f),
            Detail::Crypto(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// A KMIP-level failure: a result reason plus a message (KMIP 2.1 §9.2 Result Reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmipError {
    /// The KMIP result reason.
    pub reason: ResultReason,
    /// What went wrong.
    pub detail: Detail,
}

/// Every way a KMS call can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsError {
    /// The body is not JSON, or not JSON TTLV (400; 413 when too large).
    Malformed(JsonError),
    /// The body is not binary TTLV (422; 413 when too large).
    MalformedBinary(BinaryError),
    /// A KMIP error: invalid request, unsupported operation, object not found, permission
    /// denied, wrong state, usage mask, authentication failure of a ciphertext... (422).
    Kmip(KmipError),
    /// An object named in an access-rights call does not exist (404).
    UnknownObject,
    /// No authenticated user (401).
    Unauthenticated,
    /// The request is larger than allowed (413).
    TooLarge,
    /// The store failed (500; 503 when unavailable).
    Store(StoreError),
    /// An internal failure: corrupt record, RNG failure, encoding failure (500).
    Internal(&'static str),
}

impl KmsError {
    /// A KMIP error with a fixed message.
    pub const fn kmip(reason: ResultReason, msg: &'static str) -> Self {
        KmsError::Kmip(KmipError {
            reason,
            detail: Detail::Msg(msg),
        })
    }

    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::Malformed(JsonError::TooLarge) | KmsError::TooLarge => 413,
            KmsError::Malformed(JsonError::Syntax) => 400,
            KmsError::MalformedBinary(BinaryError::TooLarge) => 413,
            KmsError::Malformed(_) | KmsError::MalformedBinary(_) | KmsError::Kmip(_) => 422,
            KmsError::UnknownObject => 404,
            KmsError::Unauthenticated => 401,
            KmsError::Store(StoreError::Unavailable(_)) => 503,
            KmsError::Store(_) | KmsError::Internal(_) => 500,
        }
    }

    /// The KMIP result reason used for this error in a batch item.
    pub fn result_reason(&self) -> ResultReason {
        match self {
            KmsError::Kmip(k) => k.reason,
            KmsError::Malformed(_) | KmsError::MalformedBinary(_) => ResultReason::InvalidMessage,
            KmsError::UnknownObject => ResultReason::ObjectNotFound,
            KmsError::Unauthenticated => ResultReason::AuthenticationNotSuccessful,
            KmsError::TooLarge => ResultReason::ResponseTooLarge,
            KmsError::Store(_) | KmsError::Internal(_) => ResultReason::GeneralFailure,
        }
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmsError::Malformed(e) => write!(f, "invalid request: {e}"),
            KmsError::MalformedBinary(e) => write!(f, "invalid request: {e}"),
            KmsError::Kmip(k) => write!(f, "{}: {}", k.reason.name(), k.detail),
            KmsError::UnknownObject => f.write_str("object not found"),
            KmsError::Unauthenticated => f.write_str("authentication required"),
            KmsError::TooLarge => f.write_str("request too large"),
            KmsError::Store(e) => fmt::Display::fmt(e, f),
            KmsError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl core::error::Error for KmsError {}

impl From<JsonError> for KmsError {
    fn from(e: JsonError) -> Self {
        KmsError::Malformed(e)
    }
}

impl From<BinaryError> for KmsError {
    fn from(e: BinaryError) -> Self {
        KmsError::MalformedBinary(e)
    }
}

impl From<EncodeError> for KmsError {
    fn from(e: EncodeError) -> Self {
        KmsError::Internal(match e {
            EncodeError::UnknownTag => "the response has a tag with no binary TTLV code",
            EncodeError::UnknownEnumeration => {
                "the response has an enumeration name with no binary TTLV code"
            }
            EncodeError::TooLong => "the response is too long for binary TTLV",
        })
    }
}

impl From<FieldError> for KmsError {
    fn from(e: FieldError) -> Self {
        let reason = match e {
            FieldError::Missing(_) => ResultReason::MissingData,
            FieldError::WrongType(_) => ResultReason::InvalidField,
            FieldError::Invalid(_) => ResultReason::InvalidField,
        };
        KmsError::Kmip(KmipError {
            reason,
            detail: Detail::Field(e),
        })
    }
}

impl From<RequestError> for KmsError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::UnknownOperation => KmsError::kmip(
                ResultReason::OperationNotSupported,
                "operation not supported",
            ),
            RequestError::Field(f) => f.into(),
        }
    }
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        KmsError::Store(e)
    }
}

impl From<DecodeError> for KmsError {
    fn from(_: DecodeError) -> Self {
        KmsError::Internal("stored object record is corrupt")
    }
}

impl From<CryptoError> for KmsError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Rng => KmsError::Internal("random number generator failure"),
            CryptoError::Encoding => KmsError::Internal("key encoding failure"),
            CryptoError::Unsupported | CryptoError::KeyTooShort => KmsError::Kmip(KmipError {
                reason: ResultReason::UnsupportedCryptographicParameters,
                detail: Detail::Crypto(e),
            }),
            CryptoError::InvalidNonce
            | CryptoError::InvalidTag
            | CryptoError::InvalidSignature
            | CryptoError::InvalidLength => KmsError::Kmip(KmipError {
                reason: ResultReason::InvalidField,
                detail: Detail::Crypto(e),
            }),
            CryptoError::InvalidKey | CryptoError::AuthenticationFailed => {
                KmsError::Kmip(KmipError {
                    reason: ResultReason::CryptographicFailure,
                    detail: Detail::Crypto(e),
                })
            }
        }
    }
}
