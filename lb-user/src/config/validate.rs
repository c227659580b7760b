//! The checks serde cannot do: names unique and referred to, VRRP ranges
//! (from [`crate::vrrp::machine`]'s checks), address families, services
//! and their backends, the data plane's values. Errors name the field
//! (`vrrp_instance[0].priority`), not the line: that is the reader's job
//! (the TOML file's spans, or keepalived's source map).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use super::{
    Announce, Bgp, Config, ConfigError, Dataplane, Dur, Health, HealthKind, Mode, Service,
    TrackScript, VrrpInstance, VrrpScript, VrrpTrackFile, VrrpTrackProcess, check_backend_pairs,
    check_flow_entries, parse_cidr,
};
use crate::vrrp::machine;
use crate::vrrp::wire::Version;

/// Where a validation error is: `table[index].field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldPath {
    /// `vrrp_instance`, `vrrp_script`, `service` or `dataplane`.
    pub(crate) table: &'static str,
    /// The entry of an array of tables; `None` for `[dataplane]`, and for
    /// `service` as a whole.
    pub(crate) index: Option<usize>,
    /// The field; empty for the table itself.
    pub(crate) field: &'static str,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        if !self.field.is_empty() {
            write!(f, ".{}", self.field)?;
        }
        Ok(())
    }
}

/// A configuration that fails validation: the field, and what is wrong
/// with it and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) at: FieldPath,
    pub(crate) message: String,
}

impl Invalid {
    /// The error naming `file` and, when known, the `line`.
    pub(crate) fn into_error(self, file: &Path, line: Option<usize>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line,
            field: self.at.to_string(),
            message: self.message,
        }
    }

    fn new(
        table: &'static str,
        index: Option<usize>,
        field: &'static str,
        message: String,
    ) -> Self {
        Self {
            at: FieldPath {
                table,
                index,
                field,
            },
            message,
        }
    }
}

impl Config {
    /// The checks serde cannot do, on a configuration read from TOML or
    /// built by keepalived's reader.
    ///
    /// # Errors
    /// The first field that fails, in the order of the file's sections:
    /// scripts, tracked processes and files, instances, sync groups,
    /// services, data plane.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        for (i, s) in self.vrrp_script.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                let message = format!("duplicate script name {:?}", s.name);
                return Err(Invalid::new("vrrp_script", Some(i), "name", message));
            }
            check_script(i, s)?;
        }
        let mut names = HashSet::new();
        for (i, p) in self.vrrp_track_process.iter().enumerate() {
            if !names.insert(p.name.as_str()) {
                let message = format!("duplicate track process name {:?}", p.name);
                return Err(Invalid::new("vrrp_track_process", Some(i), "name", message));
            }
            check_track_process(i, p)?;
        }
        let mut names = HashSet::new();
        for (i, f) in self.vrrp_track_file.iter().enumerate() {
            if !names.insert(f.name.as_str()) {
                let message = format!("duplicate track file name {:?}", f.name);
                return Err(Invalid::new("vrrp_track_file", Some(i), "name", message));
            }
            check_track_file(i, f)?;
        }
        let scripts: HashSet<&str> = self.vrrp_script.iter().map(|s| s.name.as_str()).collect();
        let mut names = HashSet::new();
        let mut vrids = HashSet::new();
        for (i, v) in self.vrrp_instance.iter().enumerate() {
            if !names.insert(v.name.as_str()) {
                let message = format!("duplicate instance name {:?}", v.name);
                return Err(Invalid::new("vrrp_instance", Some(i), "name", message));
            }
            let v6 = check_instance(i, v, &mut vrids)?;
            check_instance_peers(i, v, v6, &scripts)?;
            self.check_instance_tracking(i, v)?;
        }
        self.check_sync_groups()?;
        self.validate_services()?;
        self.check_bgp()?;
        if let Some(dp) = &self.dataplane {
            check_dataplane(dp)?;
        }
        if let Some(sync) = &self.sync {
            self.check_sync(sync)?;
        }
        check_nat(&self.nat)
    }

    /// The `i`-th instance's `track_process` and `track_file`: each names
    /// a `[[vrrp_track_process]]` / `[[vrrp_track_file]]`, with a weight
    /// in range.
    fn check_instance_tracking(&self, i: usize, v: &VrrpInstance) -> Result<(), Invalid> {
        let lists: [(&'static str, &[TrackScript], &'static str, Vec<&str>); 2] = [
            (
                "track_process",
                &v.track_process,
                "vrrp_track_process",
                self.vrrp_track_process
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect(),
            ),
            (
                "track_file",
                &v.track_file,
                "vrrp_track_file",
                self.vrrp_track_file
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect(),
            ),
        ];
        for (field, tracks, table, known) in lists {
            let err = |message| Invalid::new("vrrp_instance", Some(i), field, message);
            for t in tracks {
                if !known.contains(&t.name.as_str()) {
                    return Err(err(format!("no [[{table}]] named {:?}", t.name)));
                }
                if let Some(w) = t.weight
                    && let Err(e) = machine::check_weight(&t.name, w)
                {
                    return Err(err(format!("{}: {}", t.name, vrrp_message(&e).1)));
                }
            }
        }
        Ok(())
    }

    /// `[[vrrp_sync_group]]`s: unique names, some instances, each an
    /// existing instance in one group at most.
    fn check_sync_groups(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        let mut member_of: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for (i, g) in self.vrrp_sync_group.iter().enumerate() {
            let err = |field, message| Invalid::new("vrrp_sync_group", Some(i), field, message);
            if !names.insert(g.name.as_str()) {
                return Err(err(
                    "name",
                    format!("duplicate sync group name {:?}", g.name),
                ));
            }
            if g.instances.is_empty() {
                return Err(err(
                    "instances",
                    "list the [[vrrp_instance]] names that change state together".into(),
                ));
            }
            for name in &g.instances {
                if !self.vrrp_instance.iter().any(|v| v.name == *name) {
                    return Err(err(
                        "instances",
                        format!("no [[vrrp_instance]] named {name:?}"),
                    ));
                }
                if let Some(other) = member_of.insert(name, &g.name) {
                    let message = if other == g.name {
                        format!("{name:?} is listed twice")
                    } else {
                        format!(
                            "{name:?} is already in sync group {other:?}: an instance is in one group at most"
                        )
                    };
                    return Err(err("instances", message));
                }
            }
        }
        Ok(())
    }

    /// The peers `[sync]` sends to: its own list, else every VRRP
    /// instance's `unicast_peer` (each once).
    #[must_use]
    pub fn sync_peers(&self) -> Vec<std::net::IpAddr> {
        let Some(sync) = &self.sync else {
            return Vec::new();
        };
        if !sync.peers.is_empty() {
            return sync.peers.clone();
        }
        let mut peers = Vec::new();
        for p in self.vrrp_instance.iter().flat_map(|i| &i.unicast_peer) {
            if !peers.contains(p) {
                peers.push(*p);
            }
        }
        peers
    }

    /// `[sync]`: a secret, some peers, a data plane to sync.
    fn check_sync(&self, sync: &crate::config::model::Sync) -> Result<(), Invalid> {
        let err = |field, message: &str| Invalid::new("sync", None, field, message.to_owned());
        match (&sync.secret, &sync.secret_file) {
            (Some(_), Some(_)) => {
                return Err(err("secret_file", "give secret or secret_file, not both"));
            }
            (None, None) => {
                return Err(err(
                    "secret",
                    "missing: sync writes forwarding state, so its datagrams are authenticated \
                     with a secret shared by the nodes (secret = \"...\" or secret_file = \"/etc/lb/sync.key\")",
                ));
            }
            (Some(s), None) if s.chars().count() < 16 => {
                return Err(err("secret", "too short: at least 16 characters"));
            }
            _ => {}
        }
        if self.dataplane.is_none() {
            return Err(err(
                "",
                "sync needs a [dataplane] table: it syncs the connection table",
            ));
        }
        if sync.port == 0 {
            return Err(err("port", "0 is not a port"));
        }
        if self.sync_peers().is_empty() {
            return Err(err(
                "peers",
                "no peers: list them (peers = [\"198.18.0.3\"]) or give the VRRP instances unicast_peer",
            ));
        }
        Ok(())
    }

    /// `[[service]]`s: a data plane to run on, one service per VIP, port
    /// and protocol, and each service's own checks.
    fn validate_services(&self) -> Result<(), Invalid> {
        if !self.service.is_empty() && self.dataplane.is_none() {
            return Err(Invalid::new(
                "service",
                None,
                "",
                "services need a [dataplane] table (interface = ...)".into(),
            ));
        }
        let mut keys = HashSet::new();
        for (i, svc) in self.service.iter().enumerate() {
            let err = |field, message| Invalid::new("service", Some(i), field, message);
            if !is_prime(svc.ring_size) || svc.ring_size < 3 {
                return Err(err(
                    "ring_size",
                    format!(
                        "{} is not a prime: use 65537 (default), 131071, 251, ...",
                        svc.ring_size
                    ),
                ));
            }
            if !keys.insert((svc.vip, svc.port, svc.protocol)) {
                return Err(err(
                    "vip",
                    format!(
                        "duplicate service {}:{}/{}",
                        svc.vip, svc.port, svc.protocol
                    ),
                ));
            }
            if let Some(name) = &svc.vrrp_instance
                && !self.vrrp_instance.iter().any(|v| &v.name == name)
            {
                let message = format!("no [[vrrp_instance]] named {name:?}");
                return Err(err("vrrp_instance", message));
            }
            check_health(i, &svc.health, svc.vip.is_ipv6())?;
            check_backends(i, svc)?;
            check_backends_from(i, svc)?;
            check_persistence(i, svc)?;
            check_quorum_and_hooks(i, svc)?;
        }
        Ok(())
    }
}

impl Config {
    /// `[bgp]` and the services it announces: a table of lbd's own; a
    /// BGP service needs `[bgp]`, is gated by no VRRP instance, shares
    /// its VIP with BGP services only, and (`fullnat`) translates from
    /// each node's own address.
    fn check_bgp(&self) -> Result<(), Invalid> {
        if let Some(bgp) = &self.bgp {
            check_bgp_table(bgp)?;
        }
        for (i, svc) in self.service.iter().enumerate() {
            let err = |field, message: String| Invalid::new("service", Some(i), field, message);
            let bgp = svc.announce == Announce::Bgp;
            if let Some(other) = self
                .service
                .iter()
                .find(|o| o.vip == svc.vip && (o.announce == Announce::Bgp) != bgp)
            {
                return Err(err(
                    "announce",
                    format!(
                        "{}:{}/{} is announced by {}, this service on the same VIP by {}: one VIP, one way",
                        other.vip, other.port, other.protocol, other.announce, svc.announce
                    ),
                ));
            }
            if !bgp {
                continue;
            }
            if self.bgp.is_none() {
                return Err(err(
                    "announce",
                    "\"bgp\" needs a [bgp] table (the speaker lbd announces through)".into(),
                ));
            }
            if svc.vrrp_instance.is_some() || svc.active_active {
                let field = if svc.active_active {
                    "active_active"
                } else {
                    "vrrp_instance"
                };
                return Err(err(
                    field,
                    "a service announced by BGP forwards on every node: no VRRP instance gates it"
                        .into(),
                ));
            }
            if let Some(v) = self.vrrp_instance.iter().find(|v| {
                v.vips()
                    .is_ok_and(|vips| vips.iter().any(|a| a.addr == svc.vip))
            }) {
                return Err(err(
                    "announce",
                    format!(
                        "VIP {} is a virtual_ipaddress of [[vrrp_instance]] {:?}: announce it by BGP or by VRRP, not both",
                        svc.vip, v.name
                    ),
                ));
            }
            if svc.mode == Mode::Fullnat
                && (svc.snat_address.is_some() || self.nat.snat_address.is_some())
            {
                let field = if svc.snat_address.is_some() {
                    "snat_address"
                } else {
                    "mode"
                };
                return Err(err(
                    field,
                    "a fullnat service announced by BGP translates from each node's own address (the default: the route's source towards each backend), so replies return to the node that translated; drop snat_address (and [nat] snat_address)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `[bgp] table`: one of lbd's own, not one the kernel routes by.
fn check_bgp_table(bgp: &Bgp) -> Result<(), Invalid> {
    // 0: unspecified; 253 default, 254 main, 255 local.
    if matches!(bgp.table, 0 | 253..=255) {
        return Err(Invalid::new(
            "bgp",
            None,
            "table",
            format!(
                "{} is a table the kernel routes by (0 unspecified, 253 default, 254 main, 255 local): give lbd a table of its own, e.g. 100",
                bgp.table
            ),
        ));
    }
    if bgp.withdraw_grace.0 > std::time::Duration::from_mins(1) {
        return Err(Invalid::new(
            "bgp",
            None,
            "withdraw_grace",
            format!("{} is out of range: up to 60s", bgp.withdraw_grace),
        ));
    }
    Ok(())
}

/// The `i`-th service's `quorum`, and its notify commands and its
/// backends'.
fn check_quorum_and_hooks(i: usize, svc: &Service) -> Result<(), Invalid> {
    let empty = |cmd: &Option<String>| cmd.as_ref().is_some_and(|c| c.trim().is_empty());
    if let Some(q) = &svc.quorum {
        let err = |message: &str| Invalid::new("service", Some(i), "quorum", message.to_owned());
        if q.weight == 0 {
            return Err(err(
                "weight 0 is out of range: from 1 (the up backends' weights add up to at least it)",
            ));
        }
        if empty(&q.notify_up) || empty(&q.notify_down) {
            return Err(err("a notify command is empty"));
        }
    }
    if let Some(b) = svc
        .backend
        .iter()
        .find(|b| empty(&b.notify_up) || empty(&b.notify_down))
    {
        return Err(Invalid::new(
            "service",
            Some(i),
            "backend",
            format!("{}: a notify command is empty", b.address),
        ));
    }
    Ok(())
}

/// The `i`-th service's `persistence_timeout` and `persistence_prefix`.
fn check_persistence(i: usize, svc: &Service) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("service", Some(i), field, message);
    if let Some(Dur(t)) = svc.persistence_timeout
        && (t < std::time::Duration::from_secs(1) || t.as_secs() > u64::from(u32::MAX))
    {
        return Err(err(
            "persistence_timeout",
            format!("{} is out of range: from 1s", crate::config::Dur(t)),
        ));
    }
    if let Some(p) = svc.persistence_prefix {
        let max = if svc.vip.is_ipv4() { 32 } else { 128 };
        if svc.persistence_timeout.is_none() {
            return Err(err(
                "persistence_prefix",
                "needs persistence_timeout (it says which clients share a template)".into(),
            ));
        }
        if p > max {
            return Err(err(
                "persistence_prefix",
                format!("{p} is longer than a client address of this service ({max} bits)"),
            ));
        }
    }
    Ok(())
}

/// The `i`-th `[[vrrp_script]]`'s values.
fn check_script(i: usize, s: &VrrpScript) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("vrrp_script", Some(i), field, message);
    if let Err(e) = machine::check_weight(&s.name, s.weight) {
        let (field, message) = vrrp_message(&e);
        return Err(err(field, message));
    }
    if s.rise == 0 || s.fall == 0 {
        let f = if s.rise == 0 { "rise" } else { "fall" };
        return Err(err(f, "must be at least 1".into()));
    }
    if s.interval.is_some_and(|d| d.0.is_zero()) {
        return Err(err("interval", "must be more than 0".into()));
    }
    Ok(())
}

/// The `i`-th `[[vrrp_track_process]]`'s values.
fn check_track_process(i: usize, p: &VrrpTrackProcess) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("vrrp_track_process", Some(i), field, message);
    if let Err(e) = machine::check_weight(&p.name, p.weight) {
        let (field, message) = vrrp_message(&e);
        return Err(err(field, message));
    }
    if p.process.is_empty() {
        return Err(err("process", "name the process (e.g. \"nginx\")".into()));
    }
    if p.quorum_max.is_some_and(|max| max < p.quorum) {
        return Err(err(
            "quorum_max",
            format!("must be at least quorum ({})", p.quorum),
        ));
    }
    if p.delay.is_some() && (p.fork_delay.is_some() || p.terminate_delay.is_some()) {
        return Err(err(
            "delay",
            "delay sets fork_delay and terminate_delay: give delay, or those two".into(),
        ));
    }
    Ok(())
}

/// The `i`-th `[[vrrp_track_file]]`'s values.
fn check_track_file(i: usize, f: &VrrpTrackFile) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("vrrp_track_file", Some(i), field, message);
    if let Err(e) = machine::check_weight(&f.name, f.weight) {
        let (field, message) = vrrp_message(&e);
        return Err(err(field, message));
    }
    if f.file.as_os_str().is_empty() {
        return Err(err("file", "name the file (e.g. \"/run/lb/prio\")".into()));
    }
    if f.init_overwrite && f.init_file.is_none() {
        return Err(err(
            "init_overwrite",
            "needs init_file (the value to write)".into(),
        ));
    }
    Ok(())
}

/// The `i`-th `[[vrrp_instance]]`'s VRRP values and addresses; `vrids`
/// collects (interface, VRID, IPv6) to find a VRID used twice. Whether
/// its addresses are IPv6.
fn check_instance<'c>(
    i: usize,
    v: &'c VrrpInstance,
    vrids: &mut HashSet<(&'c str, u8, bool)>,
) -> Result<bool, Invalid> {
    let err = |field, message| Invalid::new("vrrp_instance", Some(i), field, message);
    let vrrp = |e: &machine::ConfigError| {
        let (field, message) = vrrp_message(e);
        err(field, message)
    };
    let version = Version::from(v.version);
    machine::check_vrid(v.virtual_router_id)
        .and(machine::check_priority(v.priority))
        .and(machine::check_version(version))
        .map_err(|e| vrrp(&e))?;
    if v.virtual_ipaddress.is_empty() {
        return Err(err(
            "virtual_ipaddress",
            "at least one address is required".into(),
        ));
    }
    let vips = v
        .vips()
        .map_err(|e| err("virtual_ipaddress", e.to_string()))?;
    let v6 = vips[0].addr.is_ipv6();
    if !vrids.insert((v.interface.as_str(), v.virtual_router_id, v6)) {
        return Err(err(
            "virtual_router_id",
            format!(
                "{} is already used on {} by another instance",
                v.virtual_router_id, v.interface
            ),
        ));
    }
    machine::check_version_family(version, v6).map_err(|e| vrrp(&e))?;
    if v.auth_pass.is_some() && v.version == 3 {
        return Err(err(
            "auth_pass",
            "VRRPv3 has no authentication: remove it, or use version = 2".into(),
        ));
    }
    machine::check_advert_interval(version, v.advert_interval.0).map_err(|e| vrrp(&e))?;
    Ok(v6)
}

/// What the `i`-th `[[vrrp_instance]]` refers to: tracked scripts (of
/// `scripts`), and unicast addresses of its VIPs' family (`v6`).
fn check_instance_peers(
    i: usize,
    v: &VrrpInstance,
    v6: bool,
    scripts: &HashSet<&str>,
) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("vrrp_instance", Some(i), field, message);
    if let Some(t) = v
        .track_script
        .iter()
        .find(|t| !scripts.contains(t.name.as_str()))
    {
        let message = format!("no [[vrrp_script]] named {:?}", t.name);
        return Err(err("track_script", message));
    }
    if v.unicast_src_ip.is_some_and(|src| src.is_ipv6() != v6) {
        return Err(err(
            "unicast_src_ip",
            "must be of the VIPs' address family".into(),
        ));
    }
    if v.unicast_peer.iter().any(|p| p.is_ipv6() != v6) {
        return Err(err(
            "unicast_peer",
            "peers must be of the VIPs' address family".into(),
        ));
    }
    Ok(())
}

/// The `i`-th service's `health` (of a service whose VIP is IPv6 when
/// `v6`).
fn check_health(i: usize, h: &Health, v6: bool) -> Result<(), Invalid> {
    health_problem(h, v6).map_or(Ok(()), |m| {
        Err(Invalid::new("service", Some(i), "health", m))
    })
}

/// What is wrong with a `health` table, if anything (`v6`: the
/// service's family).
fn health_problem(h: &Health, v6: bool) -> Option<String> {
    use crate::services::health::{dns, http};
    let web = matches!(h.kind, HealthKind::Http | HealthKind::Https);
    let only = |field: &str, kinds: &str| Some(format!("{field} is for kind = {kinds} only"));
    if h.kind == HealthKind::Exec && h.command.is_none() {
        return Some("kind = \"exec\" needs command = \"...\"".into());
    }
    if h.rise == 0 || h.fall == 0 {
        return Some("rise and fall must be at least 1".into());
    }
    if h.interval.0.is_zero() || h.timeout.0.is_zero() {
        return Some("interval and timeout must be more than 0".into());
    }
    if h.retry_interval.is_some_and(|d| d.0.is_zero()) {
        return Some("retry_interval must be more than 0".into());
    }
    if !web && (!h.urls.is_empty() || h.digest.is_some() || h.virtualhost.is_some()) {
        return only("urls, digest and virtualhost", "\"http\" and \"https\"");
    }
    if h.kind != HealthKind::Https && h.tls_ca.is_some() {
        return only("tls_ca", "\"https\"");
    }
    if h.kind != HealthKind::Dns && (h.dns_name.is_some() || h.dns_type.is_some()) {
        return only("dns_name and dns_type", "\"dns\"");
    }
    if h.kind != HealthKind::Smtp && h.smtp_helo.is_some() {
        return only("smtp_helo", "\"smtp\"");
    }
    if let Some(helo) = &h.smtp_helo
        && (helo.is_empty() || helo.len() > 255 || !helo.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Some(format!(
            "smtp_helo {helo:?} is not a name (printable ASCII, no spaces, up to 255 bytes)"
        ));
    }
    if h.kind != HealthKind::Exec && h.dynamic_weight {
        return only("dynamic_weight", "\"exec\"");
    }
    if !matches!(h.kind, HealthKind::Exec | HealthKind::None)
        && h.bind.is_some_and(|b| b.is_ipv6() != v6)
    {
        return Some("bind must be of the VIP's address family".into());
    }
    if !h.urls.is_empty() && h.path != "/" {
        return Some("give the paths in urls = [...] or path, not both".into());
    }
    let digests = h
        .digest
        .iter()
        .chain(h.urls.iter().filter_map(|u| u.digest.as_ref()));
    for d in digests {
        if let Err(e) = http::parse_digest(d) {
            return Some(format!("digest: {e}"));
        }
    }
    if let Some(u) = h.urls.iter().find(|u| !u.path.starts_with('/')) {
        return Some(format!("urls: path {:?} must start with /", u.path));
    }
    if web && h.urls.is_empty() && !h.path.starts_with('/') {
        return Some(format!("path {:?} must start with /", h.path));
    }
    if let Some(t) = &h.dns_type
        && dns::type_code(t).is_none()
    {
        let known: Vec<&str> = dns::TYPES.iter().map(|(n, _)| *n).collect();
        return Some(format!("dns_type {t:?} is not one of {}", known.join(", ")));
    }
    if let Some(n) = &h.dns_name
        && let Err(e) = dns::encode_name(n)
    {
        return Some(format!("dns_name: {e}"));
    }
    None
}

/// The `i`-th service's backends.
fn check_backends(i: usize, svc: &Service) -> Result<(), Invalid> {
    if let Some(a) = svc.snat_address {
        let err = |message| Invalid::new("service", Some(i), "snat_address", message);
        if svc.mode != Mode::Fullnat {
            return Err(err(format!(
                "only fullnat translates the source; this service is {}",
                svc.mode
            )));
        }
        if a.is_ipv6() != svc.vip.is_ipv6() {
            return Err(err(format!("{a} is not of the VIP's address family")));
        }
    }
    let err = |message| Invalid::new("service", Some(i), "backend", message);
    let mut seen = HashSet::new();
    for b in &svc.backend {
        if b.address.is_ipv6() != svc.vip.is_ipv6() {
            return Err(err(format!(
                "{} is not of the VIP's address family",
                b.address
            )));
        }
        if !seen.insert(b.address) {
            return Err(err(format!("{} is listed twice", b.address)));
        }
        if let Some(m) = b
            .health
            .iter()
            .find_map(|h| health_problem(h, svc.vip.is_ipv6()))
        {
            return Err(err(format!("{}: health: {m}", b.address)));
        }
        if let Some(p) = b.port
            && p != svc.port
            && svc.port != 0
            && !matches!(svc.mode, Mode::Nat | Mode::Fullnat)
        {
            return Err(err(format!(
                "{}: port {p} differs from the service's {}: dsr and ipip forward to the same port (nat and fullnat may change it)",
                b.address, svc.port
            )));
        }
        if b.port == Some(0) {
            return Err(err(format!("{}: port 0 is not a port", b.address)));
        }
    }
    if let Some(s) = &svc.sorry_server {
        let err = |message| Invalid::new("service", Some(i), "sorry_server", message);
        if s.address.is_ipv6() != svc.vip.is_ipv6() {
            return Err(err(format!(
                "{} is not of the VIP's address family",
                s.address
            )));
        }
        if seen.contains(&s.address) {
            return Err(err(format!(
                "{} is also a backend: a sorry server stands in for all of them",
                s.address
            )));
        }
        match s.port {
            Some(0) => return Err(err("port 0 is not a port".into())),
            Some(p)
                if p != svc.port
                    && svc.port != 0
                    && !matches!(svc.mode, Mode::Nat | Mode::Fullnat) =>
            {
                return Err(err(format!(
                    "port {p} differs from the service's {}: dsr and ipip forward to the same port (nat and fullnat may change it)",
                    svc.port
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `i`-th service's `backends_from`: some etcd URLs, each
/// `http://HOST:PORT`; a prefix; a port dsr and ipip can forward to.
fn check_backends_from(i: usize, svc: &Service) -> Result<(), Invalid> {
    let Some(from) = &svc.backends_from else {
        return Ok(());
    };
    let err = |message| Invalid::new("service", Some(i), "backends_from", message);
    if from.etcd.is_empty() {
        return Err(err(
            "etcd: list etcd's client URLs, e.g. etcd = [\"http://198.18.0.50:2379\"]".into(),
        ));
    }
    for url in &from.etcd {
        if let Some(m) = etcd_url_problem(url) {
            return Err(err(format!("etcd: {url:?} {m}")));
        }
    }
    if from.prefix.is_empty() {
        return Err(err(
            "prefix: missing: the key prefix the backends register under, e.g. prefix = \"/lb/web/\""
                .into(),
        ));
    }
    match from.port {
        Some(0) => Err(err("port: 0 is not a port".into())),
        Some(p)
            if p != svc.port && svc.port != 0 && !matches!(svc.mode, Mode::Nat | Mode::Fullnat) =>
        {
            Err(err(format!(
                "port: {p} differs from the service's {}: dsr and ipip forward to the same port (nat and fullnat may change it)",
                svc.port
            )))
        }
        _ => Ok(()),
    }
}

/// What is wrong with an etcd client URL, if anything: lbd speaks plain
/// `http://HOST:PORT` to etcd (its client is built without TLS).
#[must_use]
pub fn etcd_url_problem(url: &str) -> Option<String> {
    if url.starts_with("https://") {
        return Some("is https: lbd's etcd client is built without TLS; use http://".into());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Some("is not a URL: write http://HOST:PORT".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let port = authority
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(p))) if !host.is_empty() && !host.contains('/') && p != 0 => None,
        _ => Some("is not a URL: write http://HOST:PORT (no path)".into()),
    }
}

/// `[nat]`'s values.
fn check_nat(nat: &crate::config::model::Nat) -> Result<(), Invalid> {
    use lb_common::nat::{MAX_NAT_FLOWS, MIN_NAT_FLOWS};
    let err = |field, message| Invalid::new("nat", None, field, message);
    if !(MIN_NAT_FLOWS..=MAX_NAT_FLOWS).contains(&nat.flows) {
        return Err(err(
            "flows",
            format!(
                "{} is out of range: {MIN_NAT_FLOWS} to {MAX_NAT_FLOWS}",
                nat.flows
            ),
        ));
    }
    crate::config::model::parse_port_range(&nat.snat_ports).map_err(|m| err("snat_ports", m))?;
    for (field, d) in [
        ("tcp_syn", nat.tcp_syn),
        ("tcp_established", nat.tcp_established),
        ("tcp_fin", nat.tcp_fin),
        ("tcp_close", nat.tcp_close),
        ("udp", nat.udp),
    ] {
        if d.0 < std::time::Duration::from_secs(1) {
            return Err(err(field, format!("{d} is too short: at least 1s")));
        }
    }
    Ok(())
}

/// `[dataplane]`'s values.
fn check_dataplane(dp: &Dataplane) -> Result<(), Invalid> {
    let err = |field, message| Invalid::new("dataplane", None, field, message);
    for (field, value, v6) in [
        ("ipip_source_v4", &dp.ipip_source_v4, false),
        ("ipip_source_v6", &dp.ipip_source_v6, true),
    ] {
        if let Some(v) = value {
            let bad = match parse_cidr(v) {
                Ok((a, p)) if a.is_ipv6() == v6 && (!v6 || p >= 96) => None,
                Ok(_) if v6 => Some(format!("{v:?}: an IPv6 prefix of /96 or longer")),
                Ok(_) => Some(format!("{v:?}: an IPv4 address")),
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = bad {
                return Err(err(field, message));
            }
        }
    }
    if dp.mtu < 1280 {
        return Err(err(
            "mtu",
            format!("{} is too small: at least 1280", dp.mtu),
        ));
    }
    if dp.backend_interface.as_ref() == Some(&dp.interface) {
        return Err(err(
            "backend_interface",
            format!(
                "{:?} is the interface itself: name the second interface the backends sit \
                 behind, or leave backend_interface out",
                dp.interface
            ),
        ));
    }
    check_flow_entries(dp.conntrack_entries)
        .map_err(|e| err("conntrack_entries", e.to_string()))?;
    check_backend_pairs(dp.backend_pairs).map_err(|e| err("backend_pairs", e.to_string()))
}

/// A range error of [`crate::vrrp::machine`]'s checks as the field of
/// `[[vrrp_instance]]` (or `[[vrrp_script]]`, for a weight) it is about,
/// and the message: the value, and what is allowed.
fn vrrp_message(e: &machine::ConfigError) -> (&'static str, String) {
    use machine::ConfigError as E;
    match e {
        E::Vrid => ("virtual_router_id", "0 is not allowed: 1..=255".into()),
        E::Priority => (
            "priority",
            "0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner".into(),
        ),
        E::Version { version } => (
            "version",
            format!("{version} is not a VRRP version: 2 or 3"),
        ),
        E::V2Ipv6 => (
            "version",
            "VRRPv2 is IPv4 only: use version = 3 for IPv6".into(),
        ),
        E::Interval { interval, version } => {
            let allowed = if *version == 2 {
                "whole seconds from 1s to 255s for version 2"
            } else {
                "a multiple of 10ms from 10ms to 40.95s for version 3"
            };
            (
                "advert_interval",
                format!("{} is not allowed: {allowed}", Dur(*interval)),
            )
        }
        E::Weight { weight, .. } => (
            "weight",
            format!(
                "{weight} is out of range: -{max}..={max}",
                max = machine::MAX_WEIGHT
            ),
        ),
        E::MixedFamilies { .. } | E::TooManyVips { .. } | E::DuplicateVip { .. } => {
            ("virtual_ipaddress", e.to_string())
        }
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..=n.isqrt()).all(|d| !n.is_multiple_of(d))
}
