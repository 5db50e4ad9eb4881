//! DHCPv4 against a minimal test server built from smoltcp's wire types, and the static fallback.

mod common;

use common::PipeNic;
use netstack::{
    Config, Duration, Instant, Ipv4Address, Ipv4Cidr, Ipv4Mode, Ipv4Source, Limits, NetEvent, Nic,
    Stack, StaticIpv4,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const OFFER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);

/// Answers DISCOVER with OFFER and REQUEST with ACK (RFC 2131 §3.1), as QEMU's slirp does.
fn serve(server_mac: [u8; 6], frame: &[u8]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let packet = DhcpPacket::new_checked(udp.payload()).ok()?;
    let request = DhcpRepr::parse(&packet).ok()?;
    let message_type = match request.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let reply = DhcpRepr {
        message_type,
        transaction_id: request.transaction_id,
        secs: 0,
        client_hardware_address: request.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: OFFER_IP,
        server_ip: SERVER_IP,
        router: Some(SERVER_IP),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(SERVER_IP),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };
    let udp_len = 8 + reply.buffer_len();
    let ip_repr = Ipv4Repr {
        src_addr: SERVER_IP,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let mut out = vec![0u8; 14 + ip_repr.buffer_len() + udp_len];
    let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
    eth.set_src_addr(EthernetAddress(server_mac));
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let caps = ChecksumCapabilities::default();
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip_repr.emit(&mut ip, &caps);
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp_repr.emit(
        &mut udp,
        &SERVER_IP.into(),
        &Ipv4Address::BROADCAST.into(),
        reply.buffer_len(),
        |buf| {
            reply
                .emit(&mut DhcpPacket::new_unchecked(buf))
                .expect("emit dhcp")
        },
        &caps,
    );
    Some(out)
}

fn dhcp_config(fallback: Option<StaticIpv4>) -> Config {
    Config {
        ipv4: Ipv4Mode::Dhcp {
            fallback,
            timeout: Duration::from_secs(10),
        },
        random_seed: 7,
        limits: Limits::default(),
    }
}

#[test]
fn gets_an_address_from_a_dhcp_server() {
    let (mut server_nic, client_nic) = PipeNic::pair(None);
    let fallback = StaticIpv4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 0, 9), 24),
        gateway: None,
    };
    let mut now = Instant::from_secs(5);
    let mut stack = Stack::new(client_nic, dhcp_config(Some(fallback)), now).expect("stack");
    let mut frame = vec![0u8; 1514];
    let mut answered = 0;
    while stack.ipv4_settings().is_none() && now < Instant::from_secs(8) {
        stack.poll(now);
        while let Ok(Some(n)) = server_nic.receive(&mut frame) {
            if let Some(reply) = serve(server_nic.mac_address(), &frame[..n]) {
                server_nic.transmit(&reply).expect("transmit");
                answered += 1;
            }
        }
        now += Duration::from_millis(10);
    }
    assert_eq!(answered, 2, "one OFFER, one ACK");
    let settings = stack.ipv4_settings().expect("configured");
    assert_eq!(settings.address, Ipv4Cidr::new(OFFER_IP, 24));
    assert_eq!(settings.gateway, Some(SERVER_IP));
    assert_eq!(settings.source, Ipv4Source::Dhcp);
    assert_eq!(stack.take_event(), Some(NetEvent::Configured(settings)));
    assert_eq!(
        settings.to_string(),
        "10.0.2.15/24 (dhcp, gateway 10.0.2.2)"
    );
    // The fallback deadline passes without effect.
    for _ in 0..200 {
        stack.poll(now);
        now += Duration::from_millis(100);
    }
    assert_eq!(stack.ipv4_settings(), Some(settings));
    assert_eq!(stack.take_event(), None);
}

#[test]
fn falls_back_to_static_when_dhcp_is_silent() {
    let (_silent, client_nic) = PipeNic::pair(None);
    let fallback = StaticIpv4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
    };
    let start = Instant::from_secs(1);
    let mut stack = Stack::new(client_nic, dhcp_config(Some(fallback)), start).expect("stack");
    let mut now = start;
    while now < start + Duration::from_millis(9_900) {
        stack.poll(now);
        let delay = stack.poll_delay(now).expect("DHCP has a deadline");
        now += delay.max(Duration::from_millis(1));
    }
    assert_eq!(stack.ipv4_settings(), None);
    stack.poll(start + Duration::from_secs(10));
    let expected = netstack::Ipv4Settings {
        address: fallback.address,
        gateway: fallback.gateway,
        source: Ipv4Source::Fallback,
    };
    assert_eq!(stack.ipv4_settings(), Some(expected));
    assert_eq!(stack.take_event(), Some(NetEvent::Configured(expected)));
}

#[test]
fn reports_a_dhcp_timeout_without_fallback() {
    let (_silent, client_nic) = PipeNic::pair(None);
    let mut stack = Stack::new(client_nic, dhcp_config(None), Instant::ZERO).expect("stack");
    stack.poll(Instant::from_secs(11));
    assert_eq!(stack.take_event(), Some(NetEvent::DhcpTimedOut));
    assert_eq!(stack.ipv4_settings(), None);
    assert_eq!(
        stack.connect(netstack::IpEndpoint::new(SERVER_IP.into(), 80)),
        Err(netstack::StackError::NoAddress)
    );
}
