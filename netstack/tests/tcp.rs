//! TCP over two stacks joined by an in-memory cable: bulk transfer, many connections, limits, faults, the
//! blocking `embedded-io` view, and close semantics.

mod common;

use common::{Faults, Net, addr, pattern};
use netstack::{ConnId, ConnState, IpEndpoint, Limits, Stack, TcpError};

const PORT: u16 = 9998;

fn endpoint(last: u8, port: u16) -> IpEndpoint {
    IpEndpoint::new(addr(last).into(), port)
}

/// Connects b → a:PORT and returns (server side on a, client side on b).
fn connect(net: &mut Net) -> (ConnId, ConnId) {
    let l = net.a.listen(PORT, 2).expect("listen");
    let client = net.b.connect(endpoint(1, PORT)).expect("connect");
    for _ in 0..10_000 {
        net.step();
        if let Some(server) = net.a.accept(l) {
            assert_eq!(net.b.state(client), Ok(ConnState::Established));
            return (server, client);
        }
    }
    panic!("handshake did not complete");
}

/// Moves `up` from b to a and `down` from a to b at the same time; returns what each side received.
fn transfer(
    net: &mut Net,
    server: ConnId,
    client: ConnId,
    up: &[u8],
    down: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let (mut sent_up, mut sent_down) = (0, 0);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 8192];
    let mut steps = 0u64;
    while got_up.len() < up.len() || got_down.len() < down.len() {
        steps += 1;
        assert!(
            steps < 2_000_000,
            "transfer stalled at {} / {}",
            got_up.len(),
            got_down.len()
        );
        if sent_up < up.len() {
            match net.b.write(client, &up[sent_up..]) {
                Ok(n) => sent_up += n,
                Err(TcpError::WouldBlock) => {}
                Err(e) => panic!("client write: {e}"),
            }
        }
        if sent_down < down.len() {
            match net.a.write(server, &down[sent_down..]) {
                Ok(n) => sent_down += n,
                Err(TcpError::WouldBlock) => {}
                Err(e) => panic!("server write: {e}"),
            }
        }
        net.step();
        loop {
            match net.a.read(server, &mut buf) {
                Ok(0) => panic!("server saw end of stream early"),
                Ok(n) => got_up.extend_from_slice(&buf[..n]),
                Err(TcpError::WouldBlock) => break,
                Err(e) => panic!("server read: {e}"),
            }
        }
        loop {
            match net.b.read(client, &mut buf) {
                Ok(0) => panic!("client saw end of stream early"),
                Ok(n) => got_down.extend_from_slice(&buf[..n]),
                Err(TcpError::WouldBlock) => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
    (got_up, got_down)
}

#[test]
fn bulk_transfer_both_ways() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let (server, client) = connect(&mut net);
    let up = pattern(1, 4 << 20);
    let down = pattern(2, 4 << 20);
    let (got_up, got_down) = transfer(&mut net, server, client, &up, &down);
    assert!(got_up == up, "upload corrupted");
    assert!(got_down == down, "download corrupted");
}

#[test]
fn bulk_transfer_survives_lost_and_corrupted_frames() {
    let faults = Faults {
        seed: 0x5eed,
        drop_one_in: 20,
        corrupt_one_in: 50,
    };
    let mut net = Net::new(Some(faults), Limits::default(), Limits::default());
    let (server, client) = connect(&mut net);
    let up = pattern(3, 1 << 20);
    let down = pattern(4, 1 << 20);
    let (got_up, got_down) = transfer(&mut net, server, client, &up, &down);
    assert!(got_up == up && got_down == down, "data corrupted");
    let (dropped, corrupted) = (
        net.a.nic().dropped + net.b.nic().dropped,
        net.a.nic().corrupted + net.b.nic().corrupted,
    );
    assert!(
        dropped > 50 && corrupted > 20,
        "faults were not injected: {dropped} dropped, {corrupted} corrupted"
    );
}

#[test]
fn many_concurrent_connections_echo() {
    const N: usize = 48;
    let small = Limits {
        max_sockets: N + 8,
        reserved_outbound: 0,
        rx_buffer: 4096,
        tx_buffer: 4096,
        ..Limits::default()
    };
    let mut net = Net::new(None, small, small);
    let l = net.a.listen(PORT, 8).expect("listen");
    let clients: Vec<ConnId> = (0..N)
        .map(|_| net.b.connect(endpoint(1, PORT)).expect("connect"))
        .collect();
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| pattern(100 + i as u64, 3000 + i * 7))
        .collect();
    let mut sent = vec![0usize; N];
    let mut echoed: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut servers = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..200_000 {
        net.step();
        while let Some(c) = net.a.accept(l) {
            servers.push(c);
        }
        // Server: echo everything.
        for &s in &servers {
            while let Ok(n @ 1..) = net.a.read(s, &mut buf) {
                let mut off = 0;
                while off < n {
                    match net.a.write(s, &buf[off..n]) {
                        Ok(w) => off += w,
                        Err(TcpError::WouldBlock) => net.step(),
                        Err(e) => panic!("echo write: {e}"),
                    }
                }
            }
        }
        // Clients: send their message, collect the echo.
        for (i, &c) in clients.iter().enumerate() {
            if sent[i] < messages[i].len()
                && let Ok(n) = net.b.write(c, &messages[i][sent[i]..])
            {
                sent[i] += n;
            }
            while let Ok(n @ 1..) = net.b.read(c, &mut buf) {
                echoed[i].extend_from_slice(&buf[..n]);
            }
        }
        if echoed
            .iter()
            .zip(&messages)
            .all(|(e, m)| e.len() == m.len())
        {
            break;
        }
    }
    assert_eq!(servers.len(), N, "server accepted {} of {N}", servers.len());
    for i in 0..N {
        assert!(echoed[i] == messages[i], "connection {i}: echo differs");
    }
    // Close everything; all sockets except the listener's are freed.
    for c in clients {
        net.b.close(c).expect("close client");
    }
    for s in servers {
        net.a.close(s).expect("close server");
    }
    for _ in 0..1000 {
        net.step();
    }
    assert_eq!(net.b.tcp_sockets(), 0);
    assert_eq!(net.a.tcp_sockets(), 8, "only the listening sockets remain");
}

#[test]
fn socket_limit_refuses_connections_cleanly() {
    let tight = Limits {
        max_sockets: 3,
        reserved_outbound: 0,
        ..Limits::default()
    };
    let mut net = Net::new(None, tight, Limits::default());
    let l = net.a.listen(PORT, 1).expect("listen");
    let clients: Vec<ConnId> = (0..5)
        .map(|_| net.b.connect(endpoint(1, PORT)).expect("connect"))
        .collect();
    let mut accepted = Vec::new();
    for _ in 0..2000 {
        net.step();
        while let Some(c) = net.a.accept(l) {
            accepted.push(c);
        }
    }
    // 3 sockets: at most 3 connections get through (the last one without a spare listening socket).
    assert_eq!(accepted.len(), 3);
    let states: Vec<ConnState> = clients
        .iter()
        .map(|&c| net.b.state(c).expect("state"))
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ConnState::Established)
            .count(),
        3,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == ConnState::Reset).count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        net.a.connect(endpoint(2, 1)),
        Err(netstack::StackError::TooManySockets)
    );
    // Freeing one connection lets the listener accept again.
    net.a.abort(accepted.pop().expect("one")).expect("abort");
    let again = net.b.connect(endpoint(1, PORT)).expect("connect");
    for _ in 0..2000 {
        net.step();
        if net.a.accept(l).is_some() {
            break;
        }
    }
    assert_eq!(net.b.state(again), Ok(ConnState::Established));
}

#[test]
fn clients_cannot_take_the_sockets_reserved_for_outgoing_connections() {
    let limits = Limits {
        max_sockets: 6,
        reserved_outbound: 2,
        ..Limits::default()
    };
    let mut net = Net::new(None, limits, Limits::default());
    let l = net.a.listen(PORT, 2).expect("listen");
    // A flood of clients that connect and never leave.
    let clients: Vec<ConnId> = (0..10)
        .map(|_| net.b.connect(endpoint(1, PORT)).expect("connect"))
        .collect();
    let mut accepted = Vec::new();
    for _ in 0..2000 {
        net.step();
        while let Some(c) = net.a.accept(l) {
            accepted.push(c);
        }
    }
    // Listeners and their connections stop at 6 - 2 sockets.
    assert_eq!(accepted.len(), 4, "{} accepted", accepted.len());
    assert_eq!(net.a.tcp_sockets(), 4);
    // The service's own connections still get their two sockets, and no more.
    let out1 = net.a.connect(endpoint(2, 1)).expect("reserved socket 1");
    let out2 = net.a.connect(endpoint(2, 2)).expect("reserved socket 2");
    assert_eq!(
        net.a.connect(endpoint(2, 3)),
        Err(netstack::StackError::TooManySockets)
    );
    assert_ne!(out1, out2);
    assert_eq!(clients.len(), 10);
}

#[test]
fn a_reservation_that_leaves_no_listener_socket_is_refused() {
    let limits = Limits {
        max_sockets: 4,
        reserved_outbound: 4,
        ..Limits::default()
    };
    let nic = common::PipeNic::pair(None).0;
    let config = common::static_config(1, 1, limits);
    assert!(matches!(
        Stack::new(nic, config, netstack::Instant::from_millis(0)),
        Err(netstack::StackError::BadLimits(_))
    ));
}

#[test]
fn close_gives_end_of_stream_and_stale_ids() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let (server, client) = connect(&mut net);
    assert_eq!(net.b.write(client, b"bye"), Ok(3));
    net.b.close(client).expect("close");
    assert_eq!(net.b.write(client, b"x"), Err(TcpError::InvalidConnection));
    assert_eq!(net.b.close(client), Err(TcpError::InvalidConnection));
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    for _ in 0..1000 {
        net.step();
        match net.a.read(server, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(TcpError::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"bye");
    assert_eq!(net.a.state(server), Ok(ConnState::PeerClosed));
    assert_eq!(net.a.read(server, &mut buf), Ok(0));
    // The half-closed server can still answer... but the client has gone: its socket is freed.
    net.a.close(server).expect("close");
    for _ in 0..1000 {
        net.step();
    }
    assert_eq!(net.a.tcp_sockets(), 2, "only the listening sockets remain");
    assert_eq!(net.b.tcp_sockets(), 0);
}

#[test]
fn abort_resets_the_peer() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let (server, client) = connect(&mut net);
    net.a.abort(server).expect("abort");
    for _ in 0..100 {
        net.step();
    }
    assert_eq!(net.b.state(client), Ok(ConnState::Reset));
    assert_eq!(net.b.read(client, &mut [0u8; 4]), Err(TcpError::Reset));
    assert_eq!(net.b.write(client, b"x"), Err(TcpError::Reset));
}

#[test]
fn blocking_stream_implements_embedded_io() {
    use embedded_io::{Read, Write};
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let l = net.a.listen(PORT, 1).expect("listen");
    let Net {
        now,
        a: server_stack,
        b: client_stack,
    } = &mut net;
    let client = client_stack.connect(endpoint(1, PORT)).expect("connect");
    // The poll closure drives the network: it polls both stacks and runs an upper-casing echo server.
    let mut server_conn = None;
    let mut polls = 0u32;
    let poll = |client_stack: &mut Stack<common::PipeNic>| {
        polls += 1;
        if polls > 100_000 {
            return Err(TcpError::TimedOut);
        }
        client_stack.poll(*now);
        server_stack.poll(*now);
        *now += netstack::Duration::from_millis(1);
        if server_conn.is_none() {
            server_conn = server_stack.accept(l);
        }
        if let Some(s) = server_conn {
            let mut buf = [0u8; 512];
            if let Ok(n @ 1..) = server_stack.read(s, &mut buf) {
                buf[..n].make_ascii_uppercase();
                let mut off = 0;
                while off < n {
                    match server_stack.write(s, &buf[off..n]) {
                        Ok(w) => off += w,
                        Err(TcpError::WouldBlock) => {
                            server_stack.poll(*now);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    };
    let mut stream = client_stack.stream(client, poll);
    stream.wait_connected().expect("connected");
    let msg = b"hello from the blocking side, ".repeat(100);
    stream.write_all(&msg).expect("write_all");
    stream.flush().expect("flush");
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).expect("read_exact");
    assert_eq!(back, msg.to_ascii_uppercase());
}

#[test]
fn blocking_stream_reports_the_poll_closure_error() {
    use embedded_io::Read;
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let (_server, client) = connect(&mut net);
    let mut left = 10;
    let mut stream = net.b.stream(client, |s: &mut Stack<common::PipeNic>| {
        s.poll(netstack::Instant::from_secs(2));
        left -= 1;
        if left == 0 {
            Err(TcpError::TimedOut)
        } else {
            Ok(())
        }
    });
    assert_eq!(stream.read(&mut [0u8; 8]), Err(TcpError::TimedOut));
}

#[test]
fn vanished_peer_is_reset_after_the_idle_timeout_but_quiet_peers_stay() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let (server, client) = connect(&mut net);
    // Both stacks polled: keep-alives keep an idle connection up well past the timeout.
    let start = net.now;
    while net.now < start + netstack::Duration::from_secs(180) {
        net.step();
    }
    assert_eq!(net.a.state(server), Ok(ConnState::Established));
    assert_eq!(net.b.state(client), Ok(ConnState::Established));
    // Now b disappears (never polled again): a resets the connection after the timeout.
    let gone = net.now;
    while net.now < gone + netstack::Duration::from_secs(61) {
        net.a.poll(net.now);
        net.now += netstack::Duration::from_millis(100);
    }
    assert_eq!(net.a.state(server), Ok(ConnState::Reset));
}

#[test]
fn unlisten_refuses_new_connections_and_frees_the_port() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let l = net.a.listen(PORT, 3).expect("listen");
    assert_eq!(net.a.listen(PORT, 1), Err(netstack::StackError::PortInUse));
    assert_eq!(net.a.tcp_sockets(), 3);
    net.a.unlisten(l).expect("unlisten");
    assert_eq!(
        net.a.unlisten(l),
        Err(netstack::StackError::InvalidListener)
    );
    let refused = net.b.connect(endpoint(1, PORT)).expect("connect");
    for _ in 0..100 {
        net.step();
    }
    assert_eq!(net.b.state(refused), Ok(ConnState::Reset));
    assert_eq!(net.a.tcp_sockets(), 0, "the listener's sockets are freed");
    // The port can be listened on again, and the new listener serves.
    let l2 = net.a.listen(PORT, 1).expect("listen again");
    let client = net.b.connect(endpoint(1, PORT)).expect("connect");
    for _ in 0..100 {
        net.step();
    }
    assert!(net.a.accept(l2).is_some());
    assert_eq!(net.b.state(client), Ok(ConnState::Established));
}

#[test]
fn half_open_handshakes_are_reset_after_the_handshake_timeout() {
    let mut net = Net::new(None, Limits::default(), Limits::default());
    let l = net.a.listen(PORT, 2).expect("listen");
    // b sends its SYN and vanishes before completing the handshake.
    let _ghost = net.b.connect(endpoint(1, PORT)).expect("connect");
    // ARP request, ARP reply, SYN; stop as soon as a has answered the SYN.
    for _ in 0..5 {
        net.b.poll(net.now);
        net.a.poll(net.now);
        if net.a.listener_stats(l).expect("stats").handshaking == 1 {
            break;
        }
    }
    let stats = net.a.listener_stats(l).expect("stats");
    assert_eq!((stats.handshaking, stats.listening), (1, 2), "{stats:?}");
    let start = net.now;
    let mut at_9s = None;
    while net.now < start + netstack::Duration::from_secs(11) {
        net.a.poll(net.now);
        if at_9s.is_none() && net.now >= start + netstack::Duration::from_secs(9) {
            at_9s = net.a.listener_stats(l);
        }
        net.now += netstack::Duration::from_millis(100);
    }
    assert_eq!(
        at_9s.map(|s| s.handshaking),
        Some(1),
        "reset too early: {at_9s:?}"
    );
    let stats = net.a.listener_stats(l).expect("stats");
    assert_eq!(
        stats,
        netstack::ListenerStats {
            listening: 3,
            handshaking: 0,
            ready: 0,
            closing: 0
        }
    );
    assert_eq!(
        net.a.tcp_sockets(),
        3,
        "no socket leaked or added beyond the freed one"
    );
}
