//! The kernel command line: space-separated `ckms.<key>=<value>` items, parsed strictly.
//!
//! The command line is part of the launch measurement (the SEV-SNP kernel-hashes table and
//! TDX RTMRs cover it), so it is the one trusted configuration channel: every item must be a
//! known key with a well-formed value, each key at most once. Anything else (an unknown key,
//! a token without `=`, a duplicate, a malformed value) is an error and stops the boot with
//! the message of [`ParseError`]. An empty command line gives [`BootConfig::default`].
//!
//! | key | value | default |
//! |---|---|---|
//! | `ckms.ip` | `dhcp`, `dhcp,fallback=A.B.C.D/N`, `A.B.C.D/N` (netstack's grammar, may carry `gw=`) | `dhcp` |
//! | `ckms.gw` | `A.B.C.D`: gateway for the static or fallback address | none |
//! | `ckms.port` | KMS (and bootstrap) TCP port, 1–65535 | 9998 |
//! | `ckms.ratls_port` | second RA-TLS port, 1–65535, distinct from `ckms.port` | 9999 |
//! | `ckms.kmip_port` | KMIP port (binary TTLV over mutual TLS, after provisioning), 1–65535, distinct from the two above; 5696 is KMIP's | none (closed) |
//! | `ckms.provisioner` | `sha256:<64 hex>`: SPKI hash of the only client allowed to provision | none |
//! | `ckms.attestation` | `none` or `emulated` | `none` |
//! | `ckms.log` | `off`, `error`, `warn`, `info`, `debug`, `trace` | `info` |
//! | `ckms.test` | `echo`, `attest`, `fault`, `vc` or `unmapped-bar` (loopback-GHCB build only): run a test service instead of the KMS | none |
//! | `ckms.test_report_data` | 128 hex digits: report_data for the `attest` self-test | none |

use core::fmt;

use netstack::{Ipv4Address, Ipv4Mode};

/// Default KMS port.
pub const DEFAULT_PORT: u16 = 9998;
/// Default RA-TLS port.
pub const DEFAULT_RATLS_PORT: u16 = 9999;

/// Which attestation backend the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationMode {
    /// Whatever the hardware provides (SNP/TDX when detected), else none.
    None,
    /// The `snp-emu` service over COM2 (test builds only).
    Emulated,
}

/// Console log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors.
    Error,
    /// Warnings and above.
    Warn,
    /// Info and above.
    Info,
    /// Debug and above.
    Debug,
    /// Everything.
    Trace,
}

/// A test service that replaces the KMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestService {
    /// TCP echo on the KMS port.
    Echo,
    /// Print an attestation report for `ckms.test_report_data` on the console.
    Attest,
    /// Raise a page fault after boot, to exercise the exception report.
    Fault,
    /// Drive the #VC handler with synthetic frames on real instructions, print the result.
    Vc,
    /// Loopback-GHCB build only: leave the device BARs unmapped, so real `mov`s on them fault
    /// into the MMIO emulation (decoder → GHCB MMIO exit), check it, then serve TCP echo.
    UnmappedBar,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// IPv4 configuration (gateway from `ckms.gw` already merged in).
    pub ip: Ipv4Mode,
    /// KMS port.
    pub port: u16,
    /// RA-TLS port.
    pub ratls_port: u16,
    /// KMIP port (binary TTLV), if opened.
    pub kmip_port: Option<u16>,
    /// SHA-256 of the provisioner's SPKI.
    pub provisioner: Option<[u8; 32]>,
    /// Attestation backend.
    pub attestation: AttestationMode,
    /// Log level.
    pub log: LogLevel,
    /// Test service.
    pub test: Option<TestService>,
    /// report_data for the attest self-test.
    pub test_report_data: Option<[u8; 64]>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            ip: Ipv4Mode::Dhcp {
                fallback: None,
                timeout: netstack::config::DEFAULT_DHCP_TIMEOUT,
            },
            port: DEFAULT_PORT,
            ratls_port: DEFAULT_RATLS_PORT,
            kmip_port: None,
            provisioner: None,
            attestation: AttestationMode::None,
            log: LogLevel::Info,
            test: None,
            test_report_data: None,
        }
    }
}

/// What is wrong with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not of the form `key=value`.
    NotKeyValue,
    /// The key is not one of the table.
    UnknownKey,
    /// The key appeared before.
    Duplicate,
    /// The value is malformed (with what was expected).
    BadValue(&'static str),
    /// The IP configuration is malformed.
    BadIp(netstack::ConfigError),
    /// Items contradict each other.
    Conflict(&'static str),
}

/// A refused command line: the offending item and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError<'a> {
    /// The item (`key=value` token), or the key for conflicts.
    pub item: &'a str,
    /// Why.
    pub kind: ErrorKind,
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command line item `{}`: ", self.item)?;
        match self.kind {
            ErrorKind::NotKeyValue => f.write_str("expected ckms.<key>=<value>"),
            ErrorKind::UnknownKey => f.write_str("unknown key"),
            ErrorKind::Duplicate => f.write_str("key given more than once"),
            ErrorKind::BadValue(expected) => write!(f, "malformed value, expected {expected}"),
            ErrorKind::BadIp(e) => write!(f, "{e}"),
            ErrorKind::Conflict(why) => f.write_str(why),
        }
    }
}

impl core::error::Error for ParseError<'_> {}

fn parse_port(v: &str) -> Option<u16> {
    if v.is_empty() || v.len() > 5 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    v.parse::<u16>().ok().filter(|p| *p != 0)
}

fn parse_hex<const N: usize>(v: &str) -> Option<[u8; N]> {
    let bytes = v.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

fn parse_gateway(v: &str) -> Option<Ipv4Address> {
    let a: Ipv4Address = v.parse().ok()?;
    (!a.is_unspecified() && !a.is_broadcast() && !a.is_multicast()).then_some(a)
}

/// Parses the command line (see the [module docs](self)).
pub fn parse(cmdline: &str) -> Result<BootConfig, ParseError<'_>> {
    let mut cfg = BootConfig::default();
    let mut seen: u16 = 0;
    let mut gw: Option<(&str, Ipv4Address)> = None;
    let mut ip_item: Option<&str> = None;
    for item in cmdline.split(' ').filter(|s| !s.is_empty()) {
        let err = |kind| ParseError { item, kind };
        let (key, value) = item.split_once('=').ok_or(err(ErrorKind::NotKeyValue))?;
        let bit = match key {
            "ckms.ip" => 0,
            "ckms.gw" => 1,
            "ckms.port" => 2,
            "ckms.ratls_port" => 3,
            "ckms.provisioner" => 4,
            "ckms.attestation" => 5,
            "ckms.log" => 6,
            "ckms.test" => 7,
            "ckms.test_report_data" => 8,
            "ckms.kmip_port" => 9,
            _ => return Err(err(ErrorKind::UnknownKey)),
        };
        if seen & (1 << bit) != 0 {
            return Err(err(ErrorKind::Duplicate));
        }
        seen |= 1 << bit;
        match bit {
            0 => {
                cfg.ip = Ipv4Mode::parse(value).map_err(|e| err(ErrorKind::BadIp(e)))?;
                ip_item = Some(item);
            }
            1 => {
                let a = parse_gateway(value)
                    .ok_or(err(ErrorKind::BadValue("a unicast IPv4 address")))?;
                gw = Some((item, a));
            }
            2 => cfg.port = parse_port(value).ok_or(err(ErrorKind::BadValue("a port 1-65535")))?,
            3 => {
                cfg.ratls_port =
                    parse_port(value).ok_or(err(ErrorKind::BadValue("a port 1-65535")))?
            }
            4 => {
                let hex = value
                    .strip_prefix("sha256:")
                    .ok_or(err(ErrorKind::BadValue("sha256:<64 hex digits>")))?;
                cfg.provisioner = Some(
                    parse_hex::<32>(hex)
                        .ok_or(err(ErrorKind::BadValue("sha256:<64 hex digits>")))?,
                );
            }
            5 => {
                cfg.attestation = match value {
                    "none" => AttestationMode::None,
                    "emulated" => AttestationMode::Emulated,
                    _ => return Err(err(ErrorKind::BadValue("none or emulated"))),
                }
            }
            6 => {
                cfg.log = match value {
                    "off" => LogLevel::Off,
                    "error" => LogLevel::Error,
                    "warn" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => {
                        return Err(err(ErrorKind::BadValue(
                            "off, error, warn, info, debug or trace",
                        )));
                    }
                }
            }
            7 => {
                cfg.test = Some(match value {
                    "echo" => TestService::Echo,
                    "attest" => TestService::Attest,
                    "fault" => TestService::Fault,
                    "vc" => TestService::Vc,
                    "unmapped-bar" => TestService::UnmappedBar,
                    _ => {
                        return Err(err(ErrorKind::BadValue(
                            "echo, attest, fault, vc or unmapped-bar",
                        )));
                    }
                })
            }
            9 => {
                cfg.kmip_port =
                    Some(parse_port(value).ok_or(err(ErrorKind::BadValue("a port 1-65535")))?)
            }
            _ => {
                cfg.test_report_data =
                    Some(parse_hex::<64>(value).ok_or(err(ErrorKind::BadValue("128 hex digits")))?);
            }
        }
    }
    if let Some((item, gateway)) = gw {
        let conflict = |why| ParseError {
            item,
            kind: ErrorKind::Conflict(why),
        };
        let target = match &mut cfg.ip {
            Ipv4Mode::Static(s) => Some(s),
            Ipv4Mode::Dhcp { fallback, .. } => fallback.as_mut(),
        };
        let Some(target) = target else {
            return Err(conflict(
                "ckms.gw needs a static or fallback address in ckms.ip",
            ));
        };
        if target.gateway.is_some() {
            return Err(conflict("gateway given both in ckms.ip and ckms.gw"));
        }
        target.gateway = Some(gateway);
    }
    let _ = ip_item;
    if cfg.port == cfg.ratls_port {
        return Err(ParseError {
            item: "ckms.ratls_port",
            kind: ErrorKind::Conflict("must differ from ckms.port"),
        });
    }
    if cfg
        .kmip_port
        .is_some_and(|k| k == cfg.port || k == cfg.ratls_port)
    {
        return Err(ParseError {
            item: "ckms.kmip_port",
            kind: ErrorKind::Conflict("must differ from ckms.port and ckms.ratls_port"),
        });
    }
    match (cfg.test, cfg.test_report_data.is_some()) {
        (Some(TestService::Attest), false) => {
            return Err(ParseError {
                item: "ckms.test=attest",
                kind: ErrorKind::Conflict("needs ckms.test_report_data"),
            });
        }
        (
            Some(
                TestService::Echo | TestService::Fault | TestService::Vc | TestService::UnmappedBar,
            )
            | None,
            true,
        ) => {
            return Err(ParseError {
                item: "ckms.test_report_data",
                kind: ErrorKind::Conflict("only meaningful with ckms.test=attest"),
            });
        }
        _ => {}
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{format, string::ToString};

    use super::*;
    use netstack::{Ipv4Cidr, StaticIpv4};

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(parse(""), Ok(BootConfig::default()));
        assert_eq!(parse("   "), Ok(BootConfig::default()));
    }

    #[test]
    fn kmip_port() {
        assert_eq!(BootConfig::default().kmip_port, None);
        assert_eq!(parse("ckms.kmip_port=5696").unwrap().kmip_port, Some(5696));
    }

    #[test]
    fn unmapped_bar_test_service() {
        assert_eq!(
            parse("ckms.test=unmapped-bar").map(|c| c.test),
            Ok(Some(TestService::UnmappedBar))
        );
        assert!(matches!(
            parse("ckms.test=unmapped"),
            Err(ParseError {
                item: "ckms.test=unmapped",
                kind: ErrorKind::BadValue(_),
            })
        ));
        let line = format!(
            "ckms.test=unmapped-bar ckms.test_report_data={}",
            "00".repeat(64)
        );
        assert!(matches!(
            parse(&line),
            Err(ParseError {
                item: "ckms.test_report_data",
                kind: ErrorKind::Conflict(_),
            })
        ));
    }

    #[test]
    fn vc_self_test_service() {
        assert_eq!(
            parse("ckms.test=vc").map(|c| c.test),
            Ok(Some(TestService::Vc))
        );
        let line = format!("ckms.test=vc ckms.test_report_data={}", "00".repeat(64));
        let r = parse(&line);
        assert!(matches!(
            r,
            Err(ParseError {
                item: "ckms.test_report_data",
                kind: ErrorKind::Conflict(_)
            })
        ));
    }

    #[test]
    fn full_line() {
        let line = "ckms.ip=10.0.2.15/24 ckms.gw=10.0.2.2 ckms.port=443 ckms.ratls_port=8443 \
            ckms.provisioner=sha256:00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF \
            ckms.attestation=emulated ckms.log=debug";
        let c = parse(line).unwrap();
        assert_eq!(
            c.ip,
            Ipv4Mode::Static(StaticIpv4 {
                address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
                gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            })
        );
        assert_eq!((c.port, c.ratls_port), (443, 8443));
        let p = c.provisioner.unwrap();
        assert_eq!((p[0], p[1], p[15], p[31]), (0x00, 0x11, 0xff, 0xff));
        assert_eq!(c.attestation, AttestationMode::Emulated);
        assert_eq!(c.log, LogLevel::Debug);
        assert_eq!(c.test, None);
    }

    #[test]
    fn dhcp_with_fallback_and_separate_gateway() {
        let c = parse("ckms.ip=dhcp,fallback=10.0.2.15/24 ckms.gw=10.0.2.2").unwrap();
        match c.ip {
            Ipv4Mode::Dhcp {
                fallback: Some(f), ..
            } => {
                assert_eq!(f.gateway, Some(Ipv4Address::new(10, 0, 2, 2)))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn attest_test_needs_report_data() {
        let rd = "ab".repeat(64);
        let line = format!("ckms.test=attest ckms.test_report_data={rd}");
        let c = parse(&line).unwrap();
        assert_eq!(c.test, Some(TestService::Attest));
        assert_eq!(c.test_report_data, Some([0xab; 64]));
        assert_eq!(
            parse("ckms.test=attest").unwrap_err().kind,
            ErrorKind::Conflict("needs ckms.test_report_data")
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str, ErrorKind)] = &[
            ("ckms.bogus=1", "ckms.bogus=1", ErrorKind::UnknownKey),
            ("console=ttyS0", "console=ttyS0", ErrorKind::UnknownKey),
            ("ckms.port", "ckms.port", ErrorKind::NotKeyValue),
            (
                "ckms.port=1 ckms.port=2",
                "ckms.port=2",
                ErrorKind::Duplicate,
            ),
            (
                "ckms.port=0",
                "ckms.port=0",
                ErrorKind::BadValue("a port 1-65535"),
            ),
            (
                "ckms.port=65536",
                "ckms.port=65536",
                ErrorKind::BadValue("a port 1-65535"),
            ),
            (
                "ckms.port=+80",
                "ckms.port=+80",
                ErrorKind::BadValue("a port 1-65535"),
            ),
            (
                "ckms.port=080",
                "ckms.port=080",
                ErrorKind::BadValue("a port 1-65535"),
            ),
            (
                "ckms.attestation=snp",
                "ckms.attestation=snp",
                ErrorKind::BadValue("none or emulated"),
            ),
            (
                "ckms.provisioner=abcd",
                "ckms.provisioner=abcd",
                ErrorKind::BadValue("sha256:<64 hex digits>"),
            ),
            (
                "ckms.provisioner=sha256:zz",
                "ckms.provisioner=sha256:zz",
                ErrorKind::BadValue("sha256:<64 hex digits>"),
            ),
            (
                "ckms.log=loud",
                "ckms.log=loud",
                ErrorKind::BadValue("off, error, warn, info, debug or trace"),
            ),
            (
                "ckms.gw=10.0.2.2",
                "ckms.gw=10.0.2.2",
                ErrorKind::Conflict("ckms.gw needs a static or fallback address in ckms.ip"),
            ),
            (
                "ckms.gw=255.255.255.255",
                "ckms.gw=255.255.255.255",
                ErrorKind::BadValue("a unicast IPv4 address"),
            ),
            (
                "ckms.ratls_port=9998",
                "ckms.ratls_port",
                ErrorKind::Conflict("must differ from ckms.port"),
            ),
            (
                "ckms.test=fuzz",
                "ckms.test=fuzz",
                ErrorKind::BadValue("echo, attest, fault, vc or unmapped-bar"),
            ),
            (
                "ckms.kmip_port=9999",
                "ckms.kmip_port",
                ErrorKind::Conflict("must differ from ckms.port and ckms.ratls_port"),
            ),
            (
                "ckms.kmip_port=0",
                "ckms.kmip_port=0",
                ErrorKind::BadValue("a port 1-65535"),
            ),
            (
                "ckms.ip=10.0.2.15",
                "ckms.ip=10.0.2.15",
                ErrorKind::BadIp(netstack::ConfigError::BadPrefix),
            ),
        ];
        for (line, item, kind) in cases {
            let e = parse(line).unwrap_err();
            assert_eq!((e.item, e.kind), (*item, *kind), "{line}");
        }
    }

    #[test]
    fn error_message_names_the_item() {
        assert_eq!(
            parse("ckms.nope=1").unwrap_err().to_string(),
            "command line item `ckms.nope=1`: unknown key"
        );
    }
}
