//! Intel TDX evidence: the DCAP quote v4 ([`quote`]), the MRTD of a TDVF image
//! ([`crate::measure::tdx`]), and with feature `tdx-verify` quote verification against Intel
//! collateral (`verify`).

pub mod quote;
#[cfg(feature = "tdx-verify")]
pub mod verify;

pub use quote::{Quote, QuoteError, TdQuoteBody};
