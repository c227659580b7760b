//! Kernel test: the traffic harness (`lb_lab::traffic`) counts right, with
//! no load balancer in the way. A client and two servers on one LAN, an
//! `EchoServer` on each, `Traffic` straight at a server's address:
//! - undisturbed, over IPv4 and IPv6 at once: every long-lived connection
//!   kept, every new connection answered, at the configured pace;
//! - the server stopped mid-run: every long-lived connection broken, new
//!   connections failing from the stop on and never before it;
//! - the address moved to the other server (as a failover without
//!   connection state would): the old connections are reset by the new
//!   owner, new connections land on it. A server cannot answer for another
//!   one's TCP connection, so "moved" cannot happen here; the unit tests
//!   in `traffic.rs` cover that classification.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_lab::{
    netns::{Lan, wait_for},
    traffic::{EchoServer, FailKind, Options, Outcome, Report, Traffic},
};

const PORT: u16 = 9000;

/// `client` 198.18.0.1, `<tag>1` 198.18.0.11 and `<tag>2` 198.18.0.12
/// (2001:db8::1, ::11, ::12), an echo server named after its host on each.
fn lan(tag: &str) -> (Lan, EchoServer, EchoServer) {
    let mut lan = Lan::new().expect("create LAN (run as root)");
    lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
        .unwrap();
    for (i, n) in [(11, 1), (12, 2)] {
        lan.add_host(
            &format!("{tag}{n}"),
            &format!("198.18.0.{i}/24"),
            &format!("2001:db8::{i}/64"),
        )
        .unwrap();
    }
    let s1 = EchoServer::start(&lan.host(&format!("{tag}1")).ns, &format!("{tag}1"), PORT).unwrap();
    let s2 = EchoServer::start(&lan.host(&format!("{tag}2")).ns, &format!("{tag}2"), PORT).unwrap();
    (lan, s1, s2)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

fn check_undisturbed(r: &Report, server: &str, run: Duration) {
    assert_eq!((r.kept(), r.moved(), r.broken()), (40, 0, 0), "{r}");
    assert_eq!(r.new_failed(), 0, "{r}");
    for l in &r.long_lived {
        assert_eq!(l.first_server, server);
        // A line every 100 ms for `run`, give or take scheduling.
        assert!(l.lines >= 10, "#{} exchanged only {} lines", l.id, l.lines);
    }
    // 20/s, paced: never more than the rate allows, not far below it.
    let most = 20 * run.as_millis() / 1000 + 2;
    let n = r.new.len() as u128;
    assert!(n >= 20 && n <= most, "{n} new connections in {run:?}: {r}");
    assert_eq!(r.new_per_server().keys().collect::<Vec<_>>(), [server]);
}

#[test]
fn undisturbed_traffic_is_all_kept_over_ipv4_and_ipv6() {
    let (lan, s1, s2) = lan("a");
    let client = &lan.host("client").ns;
    let v4 = Traffic::start(client, addr("198.18.0.11:9000"), Options::default()).unwrap();
    let v6 = Traffic::start(client, addr("[2001:db8::12]:9000"), Options::default()).unwrap();
    let begin = Instant::now();
    assert!(s1.open_connections() >= 40 && s2.open_connections() >= 40);
    std::thread::sleep(Duration::from_millis(1500));
    let (r4, r6) = (v4.stop(), v6.stop());
    let run = begin.elapsed();
    println!("IPv4: {r4}\nIPv6: {r6}");
    check_undisturbed(&r4, "a1", run);
    check_undisturbed(&r6, "a2", run);
    assert!(
        r4.to_string()
            .starts_with("long-lived 40: 40 kept, 0 moved, 0 broken; new ")
    );
    // The clients closed: the servers' connections end too.
    let closed = wait_for(Duration::from_secs(2), || {
        (s1.open_connections() == 0 && s2.open_connections() == 0).then_some(())
    });
    assert!(closed.is_some(), "server connections left open");
}

#[test]
fn a_stopped_server_breaks_every_connection_and_fails_new_ones_only_after() {
    let (lan, mut s1, _s2) = lan("b");
    let client = &lan.host("client").ns;
    let traffic = Traffic::start(client, addr("198.18.0.11:9000"), Options::default()).unwrap();
    traffic.wait_lines(3, Duration::from_secs(5)).unwrap();
    assert!(threads_named("echo-b1") > 40, "a thread per connection");
    let stop = Instant::now();
    s1.stop();
    let stopped = Instant::now();
    assert_eq!(threads_named("echo-b1"), 0, "stop joined every thread");
    let all_broken = wait_for(Duration::from_secs(5), || {
        (traffic.snapshot().broken() == 40).then_some(())
    });
    assert!(all_broken.is_some(), "{}", traffic.snapshot());
    std::thread::sleep(Duration::from_millis(500));
    let r = traffic.stop();
    println!("{r}");
    println!(
        "server stopped at +{} ms, within {} ms",
        r.ms(stop),
        (stopped - stop).as_millis()
    );

    assert_eq!((r.kept(), r.moved(), r.broken()), (0, 0, 40), "{r}");
    for l in &r.long_lived {
        let f = l.failure().unwrap();
        assert!(f.at >= stop, "#{} broke before the stop: {f}", l.id);
        assert!(
            matches!(f.kind, FailKind::Closed | FailKind::Reset),
            "#{}: {f}",
            l.id
        );
        assert!(l.lines >= 4, "#{} exchanged 3 more lines first", l.id);
    }
    // New connections: answered before the stop, failed from it on.
    assert!(r.new_ok() > 0, "{r}");
    assert!(r.new_failed() >= 5, "{r}");
    assert!(r.failures_outside(stop..r.end).is_empty(), "{r}");
    for c in &r.new {
        match &c.result {
            Err(f) => assert!(f.at >= stop, "failed before the stop: {f}"),
            Ok(server) => assert!(c.started < stopped, "{server} answered after the stop"),
        }
        if c.started > stopped {
            let f = c.result.as_ref().unwrap_err();
            assert_eq!(f.kind, FailKind::Refused, "{f}");
        }
    }
}

#[test]
fn an_address_moved_to_another_host_resets_old_connections_and_takes_new_ones() {
    let (lan, _s1, _s2) = lan("c");
    let client = &lan.host("client").ns;
    let opts = Options {
        long_lived: 20,
        ..Options::default()
    };
    let traffic = Traffic::start(client, addr("198.18.0.11:9000"), opts).unwrap();
    traffic.wait_lines(3, Duration::from_secs(5)).unwrap();
    let moving = Instant::now();
    lan.host("c1")
        .ns
        .ip(&["addr", "del", "198.18.0.11/24", "dev", "eth0"])
        .unwrap();
    lan.host("c2")
        .ns
        .ip(&["addr", "add", "198.18.0.11/24", "dev", "eth0"])
        .unwrap();
    // What the new owner's gratuitous ARP would do.
    client
        .ip(&["neigh", "del", "198.18.0.11", "dev", "eth0"])
        .unwrap();
    let moved = Instant::now();
    let all_broken = wait_for(Duration::from_secs(5), || {
        (traffic.snapshot().broken() == 20).then_some(())
    });
    assert!(all_broken.is_some(), "{}", traffic.snapshot());
    std::thread::sleep(Duration::from_secs(1));
    let r = traffic.stop();
    println!("{r}");
    println!(
        "address moved at +{} ms, within {} ms; new connections per server: {:?}",
        r.ms(moving),
        (moved - moving).as_millis(),
        r.new_per_server()
    );

    assert_eq!((r.kept(), r.moved(), r.broken()), (0, 0, 20), "{r}");
    for l in &r.long_lived {
        assert_eq!(l.first_server, "c1");
        let f = l.failure().unwrap();
        assert!(f.at >= moving, "#{}: {f}", l.id);
        assert_eq!(
            f.kind,
            FailKind::Reset,
            "c2 resets what it does not know: {f}"
        );
        assert!(!matches!(l.outcome, Outcome::Moved { .. }));
    }
    // New connections: c1 before the move, c2 after it; failures only for
    // attempts under way during the move.
    assert!(r.failures_outside(moving..moved).is_empty(), "{r}");
    for c in &r.new {
        if c.started < moving {
            assert_eq!(c.result.as_deref(), Ok("c1"));
        } else if c.started > moved {
            assert_eq!(c.result.as_deref(), Ok("c2"));
        }
    }
    let per_server = r.new_per_server();
    assert!(
        per_server["c1"] > 0 && per_server["c2"] >= 10,
        "{per_server:?}"
    );
}
