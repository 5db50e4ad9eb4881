//! Intel TDX evidence: the CC event log and its RTMR replay ([`eventlog`]), the DCAP quote v4
//! ([`quote`]), the TD's `TDREPORT` ([`report`]); with feature `std`, the quote's signature
//! checks to an explicitly given root (`local`, used for `tdx-emu`'s test chain); with feature
//! `tdx-verify`, quote verification against Intel collateral (`verify`). [`policy`] is what a
//! verifier requires of the TD (MRTD, RTMRs, attributes, TEE TCB SVN, owner fields); with `std`,
//! `evidence` verifies a quote carrying an RA-TLS key binding by either path. The MRTD of a TDVF
//! image and the RTMR1/RTMR2 of a direct boot are computed in [`crate::measure::tdx`].

pub mod eventlog;
#[cfg(feature = "std")]
pub mod evidence;
#[cfg(feature = "std")]
pub mod local;
pub mod policy;
pub mod quote;
pub mod report;
#[cfg(feature = "tdx-verify")]
pub mod verify;

pub use quote::{Quote, QuoteError, TdQuoteBody};
