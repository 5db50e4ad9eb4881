//! IPv4 configuration: DHCPv4 (RFC 2131) with an optional static fallback, or a static address.
//!
//! The kernel reads the configuration from its (measured) command line. [`Ipv4Mode::parse`] accepts the
//! value of one key, strictly:
//!
//! | value | meaning |
//! |---|---|
//! | `dhcp` | DHCP only; the stack has no address until a lease arrives |
//! | `dhcp,fallback=10.0.2.15/24,gw=10.0.2.2` | DHCP; if no lease within the timeout, use the static address |
//! | `10.0.2.15/24,gw=10.0.2.2` | static address (the gateway is optional) |

use core::fmt;
use core::str::FromStr;

use smoltcp::time::Duration;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// How long DHCP may take before the static fallback is applied, unless the caller sets another value.
pub const DEFAULT_DHCP_TIMEOUT: Duration = Duration::from_secs(10);

/// A static IPv4 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticIpv4 {
    /// Address and prefix length.
    pub address: Ipv4Cidr,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

/// How the interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Mode {
    /// DHCPv4. If `fallback` is set and no lease arrives within `timeout`, the fallback is applied and the
    /// DHCP client stops.
    Dhcp {
        /// Static configuration to use when DHCP does not answer.
        fallback: Option<StaticIpv4>,
        /// How long to wait for a lease before using `fallback`.
        timeout: Duration,
    },
    /// A fixed address.
    Static(StaticIpv4),
}

/// Where the current address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Source {
    /// A DHCP lease.
    Dhcp,
    /// The static configuration.
    Static,
    /// The static fallback after DHCP timed out.
    Fallback,
}

/// The interface's current IPv4 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Settings {
    /// Address and prefix length.
    pub address: Ipv4Cidr,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Address>,
    /// Where they came from.
    pub source: Ipv4Source,
}

impl fmt::Display for Ipv4Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Ipv4Source::Dhcp => "dhcp",
            Ipv4Source::Static => "static",
            Ipv4Source::Fallback => "fallback",
        };
        write!(f, "{} ({source}", self.address)?;
        if let Some(gw) = self.gateway {
            write!(f, ", gateway {gw}")?;
        }
        f.write_str(")")
    }
}

/// Errors of [`Ipv4Mode::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The value is empty.
    Empty,
    /// An IPv4 address is malformed.
    BadAddress,
    /// The prefix length is missing, not a number or above 32.
    BadPrefix,
    /// The address is not usable as a host address (unspecified, broadcast, multicast).
    NotUnicast,
    /// An item is not one of `dhcp`, `fallback=`, `gw=` or an address.
    UnknownItem,
    /// An item appears twice, or `fallback=` is combined with a static address.
    Conflict,
    /// `gw=` was given without an address to go with it.
    GatewayWithoutAddress,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty IP configuration",
            Self::BadAddress => "malformed IPv4 address",
            Self::BadPrefix => "missing or invalid prefix length (expected /0../32)",
            Self::NotUnicast => "address is not a unicast host address",
            Self::UnknownItem => {
                "unknown item (expected dhcp, A.B.C.D/N, fallback=A.B.C.D/N, gw=A.B.C.D)"
            }
            Self::Conflict => "conflicting or repeated items",
            Self::GatewayWithoutAddress => "gw= needs a static or fallback address",
        })
    }
}

impl core::error::Error for ConfigError {}

fn parse_addr(s: &str) -> Result<Ipv4Address, ConfigError> {
    Ipv4Address::from_str(s).map_err(|_| ConfigError::BadAddress)
}

fn parse_cidr(s: &str) -> Result<Ipv4Cidr, ConfigError> {
    let (addr, prefix) = s.split_once('/').ok_or(ConfigError::BadPrefix)?;
    let addr = parse_addr(addr)?;
    // Only plain decimal digits: `u8::from_str` would also take a leading `+`.
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::BadPrefix);
    }
    let prefix = u8::from_str(prefix).map_err(|_| ConfigError::BadPrefix)?;
    if prefix > 32 {
        return Err(ConfigError::BadPrefix);
    }
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(ConfigError::NotUnicast);
    }
    Ok(Ipv4Cidr::new(addr, prefix))
}

impl Ipv4Mode {
    /// Parses the command-line form described in the [module docs](self). DHCP gets
    /// [`DEFAULT_DHCP_TIMEOUT`].
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        if value.is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut dhcp = false;
        let mut address: Option<Ipv4Cidr> = None;
        let mut fallback: Option<Ipv4Cidr> = None;
        let mut gateway: Option<Ipv4Address> = None;
        for item in value.split(',') {
            if item == "dhcp" {
                if dhcp || address.is_some() {
                    return Err(ConfigError::Conflict);
                }
                dhcp = true;
            } else if let Some(v) = item.strip_prefix("fallback=") {
                if fallback.is_some() || address.is_some() {
                    return Err(ConfigError::Conflict);
                }
                fallback = Some(parse_cidr(v)?);
            } else if let Some(v) = item.strip_prefix("gw=") {
                if gateway.is_some() {
                    return Err(ConfigError::Conflict);
                }
                let gw = parse_addr(v)?;
                if gw.is_unspecified() || gw.is_broadcast() || gw.is_multicast() {
                    return Err(ConfigError::NotUnicast);
                }
                gateway = Some(gw);
            } else if item.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                if address.is_some() || dhcp || fallback.is_some() {
                    return Err(ConfigError::Conflict);
                }
                address = Some(parse_cidr(item)?);
            } else {
                return Err(ConfigError::UnknownItem);
            }
        }
        match (dhcp, address, fallback) {
            (true, None, fallback) => {
                if gateway.is_some() && fallback.is_none() {
                    return Err(ConfigError::GatewayWithoutAddress);
                }
                Ok(Self::Dhcp {
                    fallback: fallback.map(|address| StaticIpv4 { address, gateway }),
                    timeout: DEFAULT_DHCP_TIMEOUT,
                })
            }
            (false, Some(address), None) => Ok(Self::Static(StaticIpv4 { address, gateway })),
            (false, None, Some(_)) => Err(ConfigError::Conflict),
            (false, None, None) => Err(ConfigError::GatewayWithoutAddress),
            (true, Some(_), _) | (false, Some(_), Some(_)) => Err(ConfigError::Conflict),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(a: [u8; 4], p: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(a[0], a[1], a[2], a[3]), p)
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Ipv4Mode::parse("dhcp"),
            Ok(Ipv4Mode::Dhcp {
                fallback: None,
                timeout: DEFAULT_DHCP_TIMEOUT
            })
        );
        assert_eq!(
            Ipv4Mode::parse("dhcp,fallback=10.0.2.15/24,gw=10.0.2.2"),
            Ok(Ipv4Mode::Dhcp {
                fallback: Some(StaticIpv4 {
                    address: cidr([10, 0, 2, 15], 24),
                    gateway: Some(Ipv4Address::new(10, 0, 2, 2))
                }),
                timeout: DEFAULT_DHCP_TIMEOUT
            })
        );
        assert_eq!(
            Ipv4Mode::parse("192.168.7.3/30"),
            Ok(Ipv4Mode::Static(StaticIpv4 {
                address: cidr([192, 168, 7, 3], 30),
                gateway: None
            }))
        );
        assert_eq!(
            Ipv4Mode::parse("gw=10.0.0.1,10.0.0.2/8"),
            Ok(Ipv4Mode::Static(StaticIpv4 {
                address: cidr([10, 0, 0, 2], 8),
                gateway: Some(Ipv4Address::new(10, 0, 0, 1))
            }))
        );
    }

    #[test]
    fn rejects_malformed_values() {
        let cases = [
            ("", ConfigError::Empty),
            ("DHCP", ConfigError::UnknownItem),
            ("dhcp,", ConfigError::UnknownItem),
            ("dhcp,dhcp", ConfigError::Conflict),
            ("dhcp,gw=10.0.2.2", ConfigError::GatewayWithoutAddress),
            ("gw=10.0.2.2", ConfigError::GatewayWithoutAddress),
            ("10.0.2.15", ConfigError::BadPrefix),
            ("10.0.2.15/", ConfigError::BadPrefix),
            ("10.0.2.15/33", ConfigError::BadPrefix),
            ("10.0.2.15/+8", ConfigError::BadPrefix),
            ("10.0.2.15/024", ConfigError::BadPrefix),
            ("10.0.2.256/24", ConfigError::BadAddress),
            ("10.0.2/24", ConfigError::BadAddress),
            ("0.0.0.0/0", ConfigError::NotUnicast),
            ("224.0.0.1/4", ConfigError::NotUnicast),
            ("10.0.2.15/24,gw=255.255.255.255", ConfigError::NotUnicast),
            ("10.0.2.15/24,10.0.2.16/24", ConfigError::Conflict),
            ("10.0.2.15/24,fallback=10.0.2.16/24", ConfigError::Conflict),
            ("fallback=10.0.2.16/24", ConfigError::Conflict),
            ("dhcp,10.0.2.15/24", ConfigError::Conflict),
            (
                "10.0.2.15/24,gw=10.0.2.2,gw=10.0.2.3",
                ConfigError::Conflict,
            ),
            ("10.0.2.15/24 ", ConfigError::BadPrefix),
        ];
        for (input, err) in cases {
            assert_eq!(Ipv4Mode::parse(input), Err(err), "{input:?}");
        }
    }
}
