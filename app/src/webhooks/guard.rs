//! Where the node may send a webhook: public addresses, and the networks the operator allows
//! (`GEVULOT_WEBHOOK_ALLOW_NETS`). Loopback, private, link-local, shared, multicast and reserved
//! ranges are refused unless allowed, so a hook cannot make the node reach its own network.
//! Names are checked on every connection (a resolver that drops refused addresses), not only at
//! registration, so a name that later resolves inward is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The networks a hook may reach besides the public internet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowed(Vec<IpNet>);

impl Allowed {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Parses `10.0.0.0/8,fd00::/8` (an address alone is a single host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{part:?} is not a network like 10.0.0.0/8 or an address"))?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether a hook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xc0) == 64)
        // IETF protocol assignments, 192.0.0.0/24; benchmarking, 198.18.0.0/15.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation 2001:db8::/32, NAT64 64:ff9b::/96 (reaches IPv4 behind it).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
        // IPv4-compatible (deprecated) ::a.b.c.d.
        || ip.segments()[..6].iter().all(|s| *s == 0))
}

/// A resolver that hands the HTTP client only permitted addresses.
#[derive(Clone, Debug)]
pub(super) struct Resolver {
    pub(super) allowed: Arc<Allowed>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to addresses hooks may not reach ({}); allow them with \
                     GEVULOT_WEBHOOK_ALLOW_NETS",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

/// Checks where `host` leads now: every address it resolves to must be permitted.
pub(super) async fn check_host(allowed: &Allowed, host: &url::Host<&str>) -> Result<(), String> {
    let addrs: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
        url::Host::Domain(name) => {
            let lookup = tokio::net::lookup_host((*name, 0));
            match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                Ok(Err(e)) => return Err(format!("cannot resolve {name}: {e}")),
                Err(_) => return Err(format!("resolving {name} took longer than 5 s")),
            }
        }
    };
    if addrs.is_empty() {
        return Err("the host resolves to no address".into());
    }
    match addrs.iter().find(|ip| !allowed.permits(**ip)) {
        Some(ip) => Err(format!(
            "{ip} is a loopback, private or reserved address, which hooks may not reach unless \
             the operator allows its network (GEVULOT_WEBHOOK_ALLOW_NETS)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn inward_addresses_are_refused_unless_allowed() {
        let none = Allowed::default();
        for inward in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!none.permits(ip(inward)), "{inward} must be refused");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(none.permits(ip(public)), "{public} is public");
        }
        let lab = Allowed::parse("127.0.0.0/8, 10.0.0.5").expect("parse");
        assert!(lab.permits(ip("127.0.0.1")));
        assert!(lab.permits(ip("::ffff:127.0.0.1")));
        assert!(lab.permits(ip("10.0.0.5")));
        assert!(!lab.permits(ip("10.0.0.6")));
        assert!(Allowed::parse("10.0.0.0/33").is_err());
        assert!(Allowed::parse("localhost").is_err());
        assert_eq!(Allowed::parse(" ").expect("empty"), Allowed::default());
    }

    #[tokio::test]
    async fn a_name_is_checked_by_what_it_resolves_to() {
        let none = Allowed::default();
        let localhost = url::Host::Domain("localhost");
        let refused = check_host(&none, &localhost).await.expect_err("loopback");
        assert!(refused.contains("GEVULOT_WEBHOOK_ALLOW_NETS"), "{refused}");
        let lab = Allowed::parse("127.0.0.0/8,::1").expect("parse");
        check_host(&lab, &localhost).await.expect("allowed");
        let literal = url::Host::Ipv4(Ipv4Addr::new(192, 168, 0, 1));
        assert!(check_host(&lab, &literal).await.is_err());
    }
}
