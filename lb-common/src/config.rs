//! Global settings: map `config` (array with one [`Config`]).

/// Name of the config map.
pub const CONFIG_MAP: &str = "config";
/// Default largest IP packet (outer header included) the program sends
/// after encapsulation.
pub const DEFAULT_MTU: u16 = 1500;

/// Data-plane settings user space writes at start and on reload, and the
/// live half of the VIP index, which it flips whenever the VIPs change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    /// Outer IPv6 source for `ipip`: the low 32 bits are replaced by the
    /// flow hash masked with `ipip_src_v6_mask_be`.
    pub ipip_src_v6: [u8; 16],
    /// Outer IPv4 source base for `ipip` (network order).
    pub ipip_src_v4_be: u32,
    /// Host bits of the outer IPv4 source taken from the flow hash, so a
    /// backend's RSS spreads flows across queues (network order mask).
    pub ipip_src_v4_mask_be: u32,
    /// Low-32-bit mask for the IPv6 outer source (network order).
    pub ipip_src_v6_mask_be: u32,
    /// Largest IP packet after encapsulation; bigger ones get ICMP
    /// "fragmentation needed" / "packet too big" back.
    pub mtu: u16,
    /// Which half of `vip_index` is live (0 or 1); the balancer flips it
    /// after writing the other half whole.
    pub vip_index: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
    /// First SNAT source port of `fullnat` flows (host order).
    pub snat_port_min: u16,
    /// Number of SNAT source ports from `snat_port_min` (0: no fullnat
    /// flow can start).
    pub snat_ports: u16,
    /// The MACs of the program's interfaces, by arm: 0 the one clients
    /// arrive on (`[dataplane] interface`), 1 the one backends sit behind
    /// (`backend_interface`, if any). A frame leaving by the arm it came
    /// in on goes out with `XDP_TX` from the MAC it was sent to; by the
    /// other, with `XDP_REDIRECT` through map `arms` (a devmap indexed by
    /// arm) from that interface's MAC, taken from here.
    pub arm_mac: [[u8; 6]; 2],
}

/// Name of the devmap of the program's interfaces, indexed by arm.
pub const ARMS_MAP: &str = "arms";
/// The program's read-only global holding arm 1's ifindex (0: one arm),
/// set at load.
pub const ARM1_IFINDEX_SYMBOL: &str = "ARM1_IFINDEX";

crate::pod!(Config);
