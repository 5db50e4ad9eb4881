//! Intel TDX evidence: the CC event log and its RTMR replay ([`eventlog`]), the DCAP quote v4
//! ([`quote`]), the TD's `TDREPORT` ([`report`]); with feature `std`, the quote's signature
//! checks to an explicitly given root (`local`, used for `tdx-emu`'s test chain); with feature
//! `tdx-verify`, quote verification against Intel collateral (`verify`). The MRTD of a TDVF
//! image and the RTMR1/RTMR2 of a direct boot are computed in [`crate::measure::tdx`].

pub mod eventlog;
#[cfg(feature = "std")]
pub mod local;
pub mod quote;
pub mod report;
#[cfg(feature = "tdx-verify")]
pub mod verify;

pub use quote::{Quote, QuoteError, TdQuoteBody};
