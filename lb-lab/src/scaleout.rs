//! The scale-out topology's fixed facts, shared by its kernel test
//! (`tests/scale_out.rs`) and the lab (`lb-lab up --scale-out`,
//! `lb-lab scale-bench`): the addresses `examples/bird/router.conf` peers
//! with, and the router's view of the VIP.

/// The router on the nodes' LAN (`examples/bird/lb-node.conf`'s neighbour).
pub const ROUTER: &str = "198.18.0.1";
/// The lb nodes: name and address (`examples/bird/router.conf`'s peers).
pub const NODES: [(&str, &str); 3] = [
    ("lb1", "198.18.0.2"),
    ("lb2", "198.18.0.3"),
    ("lb3", "198.18.0.4"),
];
/// The VIP the nodes announce (outside every LAN of the topology).
pub const VIP: &str = "198.18.100.1";

/// The next hops of `ip route show VIP`'s output, sorted: one `via`
/// for a single path, one `nexthop via` line per path for ECMP, none
/// when there is no route.
#[must_use]
pub fn next_hops(ip_route_output: &str) -> Vec<String> {
    let words: Vec<&str> = ip_route_output.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect();
    hops.sort();
    hops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_of_single_ecmp_and_no_route() {
        assert_eq!(
            next_hops("198.18.100.1 via 198.18.0.3 dev eth0 proto bird metric 32 \n"),
            ["198.18.0.3"]
        );
        let ecmp = "198.18.100.1 proto bird metric 32 \n\tnexthop via 198.18.0.4 dev eth0 weight 1 \n\tnexthop via 198.18.0.2 dev eth0 weight 1 \n";
        assert_eq!(next_hops(ecmp), ["198.18.0.2", "198.18.0.4"]);
        assert!(next_hops("").is_empty());
    }
}
